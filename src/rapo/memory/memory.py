"""A conversation's memory: every turn's passages, their indexes, and the facts ledger over them."""

from __future__ import annotations

import re
from typing import Iterable, Sequence

import numpy as np

from rapo.extract import Statement, extract_statements, split_sentences
from rapo.numbers import find_quantities, may_hold_two
from rapo.memory.index import EmbeddingIndex, LexicalIndex, analyse
from rapo.memory.ledger import Fact, Ledger
from rapo.memory.passages import Passage, split_passages, split_speakers
from rapo.memory.selection import ContextItem, SelectionConfig, rank_passages, select_context
from rapo.tokens import count_tokens
from rapo.types import Embedder, RapoError

__all__ = ["Memory"]

_ORIGINS = ("user", "agent", "observed", "api")
_WORDS = re.compile(r"[a-z0-9]+")
_PRONOUN = re.compile(r"(?i)\b(?:it|its|this|that|they|these|those|same)\b")


class Memory:
    """Passages (verbatim, indexed as they arrive) and the ledger (what is current)."""

    def __init__(self, embedder: Embedder, *, max_passage_tokens: int = 24) -> None:
        self.embedder = embedder
        self.ledger = Ledger(embedder)
        self.passages: list[Passage] = []
        self.lexical = LexicalIndex()
        self.semantic = EmbeddingIndex(embedder)
        self.max_passage_tokens = max_passage_tokens
        self._turn = np.zeros(0, dtype=np.int64)
        self._origin = np.zeros(0, dtype=np.int8)
        self._of_fact: dict[int, int] = {}  # fact id -> the passage it was read from
        self._by_turn: dict[int, list[int]] = {}
        self._antecedent: Statement | None = None  # the last thing a user turn named, for "it"
        self._speakers: dict[str, int] = {}  # lowercased speaker name -> its code
        self._speaker = np.zeros(0, dtype=np.int32)  # per passage: its speaker's code + 1 (0: none)
        self._question = np.zeros(0, dtype=bool)  # per passage: does it ask rather than state?
        self._segments: tuple[np.ndarray, np.ndarray] | None = None
        self.exchanges = LexicalIndex()  # a piece with the one before it (see _add_exchange)
        self._exch = np.zeros(0, dtype=np.int64)  # per passage: its exchange document (-1: none)
        self._last_terms: list[str] = []  # the last stated piece's words, for the next exchange
        self.refers_back: dict[tuple[str, int], bool] = {}  # selection's cache: does a line need its referent?
        self._dates = LexicalIndex()  # one document per distinct `when` (a session's date), built on demand
        self._date_of: dict[str, int] = {}
        self._date_code = np.zeros(0, dtype=np.int64)  # per passage: its date's document (-1: none)

    # --- adding ------------------------------------------------------------------------------

    def add_turn(
        self,
        text: str,
        *,
        turn: int,
        speaker: str | None = None,
        when: str | None = None,
        origin: str = "user",
        extra_statements: Sequence[Statement] = (),
        extract: bool = True,
    ) -> tuple[list[Fact], list[Passage]]:
        """Keep the turn verbatim and read its facts into the ledger. A pasted chat log's "Name:"
        lines become passages of those speakers, never facts about a "Name"."""
        if origin not in _ORIGINS:
            raise RapoError(f"origin must be one of {_ORIGINS}, got {origin!r}")
        ledger_origin = "agent" if origin == "agent" else ("api" if origin == "api" else "user")
        source = speaker or origin
        facts: list[Fact] = []
        added: list[Passage] = []
        for who, piece in split_speakers(text):
            who = who or speaker
            ante = self._antecedent if origin != "agent" and _PRONOUN.search(piece) else None  # keeps the cache hot
            statements = extract_statements(piece, antecedent=ante) if extract else []
            if extract and origin != "agent":
                statements = self._value_corrections(piece, statements)
            if extra_statements:
                keys = {s.key for s in statements}
                statements = statements + [s for s in extra_statements if s.key not in keys]
                extra_statements = ()
            new = self.ledger.add_statements(statements, turn=turn, source=who or source,
                                                          origin=ledger_origin)  # type: ignore[arg-type]
            passages = self._add_passages(piece, turn=turn, speaker=who, when=when, origin=origin)
            self._cover(passages, statements, new)
            facts += new
            added += passages
            if origin != "agent":
                named = [s for s in statements if s.entity_ids or s.attribute]
                if named:
                    self._antecedent = named[-1]
        return facts, added

    def _value_corrections(self, piece: str, statements: list[Statement]) -> list[Statement]:
        """A sentence that corrects a value without naming its subject ("the 120 dollars I gave
        should have been 150") updates the fact that held the old value. What the rules read in such
        a sentence is dropped when its only "identifier" is one of the numbers themselves."""
        if not may_hold_two(piece):
            return statements
        out = list(statements)
        for sentence in split_sentences(piece):
            found = self.ledger.corrections_by_value(sentence)
            if not found:
                continue
            numbers = {t for q in find_quantities(sentence) for t in _WORDS.findall(q.text.lower())}
            here = [s for s in out if s.text.rstrip(" .") in sentence]
            if any(not set(s.entity_ids) <= numbers for s in here):
                continue  # the sentence names its own subject: the rules' reading stands
            out = [s for s in out if s not in here] + found
        return out

    def _add_passages(self, text: str, *, turn: int, speaker: str | None, when: str | None,
                      origin: str) -> list[Passage]:
        pieces = split_passages(text, self.max_passage_tokens)
        if not pieces:
            return []
        start = len(self.passages)
        first_part = len(self._by_turn.get(turn, ()))
        out = [Passage(id=start + i, turn=turn, part=first_part + i, text=t, speaker=speaker, when=when,
                       origin=origin, tokens=count_tokens(t)) for i, t in enumerate(pieces)]
        self.passages += out
        self._by_turn.setdefault(turn, []).extend(p.id for p in out)
        n = len(self.passages)
        if n > self._turn.shape[0]:
            grow = max(8, n + n // 2)
            self._turn = np.concatenate([self._turn, np.zeros(grow - self._turn.shape[0], np.int64)])
            self._origin = np.concatenate([self._origin, np.zeros(grow - self._origin.shape[0], np.int8)])
            self._speaker = np.concatenate([self._speaker, np.zeros(grow - self._speaker.shape[0], np.int32)])
            self._question = np.concatenate([self._question, np.zeros(grow - self._question.shape[0], bool)])
            self._exch = np.concatenate([self._exch, np.full(grow - self._exch.shape[0], -1, np.int64)])
        self._turn[start:n] = turn
        self._origin[start:n] = _ORIGINS.index(origin)
        self._speaker[start:n] = self._speaker_code(speaker)
        self._question[start:n] = [t.rstrip().endswith("?") for t in pieces]
        # the speaker's name is part of what a passage says: "what did Tom decide?" finds Tom's lines
        labelled = [f"{speaker}: {t}" if speaker else t for t in pieces]
        terms = [analyse(t) for t in labelled]  # once, for both lexical indexes
        self.lexical.add_terms(terms)
        self.semantic.add(labelled)
        if origin != "agent":
            self._exch[start:n] = self._add_exchange([t for ts in terms for t in ts])
        return out

    def _add_exchange(self, terms: list[str]) -> int:
        """One document per stated piece, holding it and the piece before it: a reply is found by
        the words of what it answers ("How was the meteor shower?" / "I felt tiny and in awe")."""
        doc = len(self.exchanges)
        self.exchanges.add_terms([self._last_terms + terms])
        self._last_terms = terms
        return doc

    def _cover(self, passages: list[Passage], statements: Sequence[Statement], facts: Sequence[Fact]) -> None:
        """Which passage each fact was read from, and how much of that passage the facts quote."""
        if not passages:
            return
        words = [set(_WORDS.findall(p.text.lower())) for p in passages]
        for st, fact in zip(statements, facts):
            quote = set(_WORDS.findall(st.text.lower()))
            if not quote:
                continue
            for p, have in zip(passages, words):
                shared = len(quote & have)
                if not have or shared < 0.6 * len(quote):
                    continue  # the fact's clause is not (mostly) in this passage
                if fact.id not in p.covered_by:
                    p.covered_by.append(fact.id)
                p.coverage = min(1.0, p.coverage + shared / len(have))
                self._of_fact.setdefault(fact.id, p.id)

    def _speaker_code(self, speaker: str | None) -> int:
        if not speaker:
            return 0
        return self._speakers.setdefault(speaker.lower(), len(self._speakers)) + 1

    # --- reading -----------------------------------------------------------------------------

    def speakers_named(self, query: str) -> set[int]:
        """Codes of the speakers whose name the query uses ("What did Tom decide?")."""
        if not self._speakers:
            return set()
        words = set(re.findall(r"[a-z][a-z'-]*", query.lower()))
        words |= {w[:-2] for w in words if w.endswith("'s")}
        return {code + 1 for name, code in self._speakers.items() if name in words or
                (" " in name and name in query.lower())}

    def speaker_mask(self, codes: set[int]) -> np.ndarray:
        return np.isin(self._speaker[: len(self.passages)], list(codes))

    def passage_of_fact(self, fact_id: int) -> Passage | None:
        pid = self._of_fact.get(fact_id)
        return None if pid is None else self.passages[pid]

    def turn_segments(self) -> tuple[np.ndarray, np.ndarray]:
        """Where each turn's run of passages starts, and each passage's run number (passages arrive
        in turn order, so a turn's passages are contiguous)."""
        n = len(self.passages)
        if self._segments is None or self._segments[1].size != n:
            turns = self._turn[:n]
            starts = np.flatnonzero(np.r_[True, turns[1:] != turns[:-1]]) if n else np.zeros(0, np.int64)
            self._segments = (starts, np.cumsum(np.r_[True, turns[1:] != turns[:-1]]) - 1 if n else starts)
        return self._segments

    def exchange_array(self) -> np.ndarray:
        return self._exch[: len(self.passages)]

    def date_scores(self, query: str) -> np.ndarray:
        """Per passage: BM25 of the query against the passage's `when` (its session's date), so a
        step that names a date ("on 31 July") finds what was said then."""
        n = len(self.passages)
        done = self._date_code.shape[0]
        if done < n:
            codes = np.full(n - done, -1, dtype=np.int64)
            for i, p in enumerate(self.passages[done:n]):
                if p.when:
                    code = self._date_of.get(p.when)
                    if code is None:
                        code = self._date_of[p.when] = len(self._dates)
                        self._dates.add([p.when])
                    codes[i] = code
            self._date_code = np.concatenate([self._date_code, codes])
        if not len(self._dates):
            return np.zeros(n)
        per_date = self._dates.scores(query)
        code = self._date_code[:n]
        return np.where(code >= 0, per_date[np.maximum(code, 0)], 0.0)

    def turn_array(self) -> np.ndarray:
        return self._turn[: len(self.passages)]

    def allowed_mask(self, exclude_origin: Iterable[str]) -> np.ndarray:
        n = len(self.passages)
        mask = np.ones(n, dtype=bool)
        for name in exclude_origin:
            if name in _ORIGINS:
                mask &= self._origin[:n] != _ORIGINS.index(name)
        return mask

    def recent_passages(self, turns: int, *, before_turn: int | None, exclude_origin: Iterable[str]) -> list[Passage]:
        """The passages of the last `turns` turns before `before_turn` (not agent answers by default)."""
        if turns <= 0:
            return []
        excluded = set(exclude_origin)
        seen: list[int] = []
        for turn in sorted(self._by_turn, reverse=True):
            if before_turn is not None and turn >= before_turn:
                continue
            ids = [i for i in self._by_turn[turn] if self.passages[i].origin not in excluded]
            if ids:
                seen.append(turn)
                if len(seen) >= turns:
                    break
        return [self.passages[i] for t in sorted(seen) for i in self._by_turn[t]
                if self.passages[i].origin not in excluded]

    def rank(self, query: str, cfg: SelectionConfig, *, now_turn: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        return rank_passages(self, query, cfg, now_turn=now_turn)

    def question_mask(self) -> np.ndarray:
        return self._question[: len(self.passages)]

    def select(self, query: str, cfg: SelectionConfig | None = None, *, now_turn: int | None = None) -> list[ContextItem]:
        """The context a step with this text gets (see `rapo.memory.selection`)."""
        return select_context(self, query, cfg or SelectionConfig(), now_turn=now_turn)

    # --- checkpoints -------------------------------------------------------------------------

    def snapshot(self) -> dict[str, object]:
        return {
            "ledger": self.ledger.snapshot(),
            "passages": [[p.turn, p.part, p.text, p.speaker, p.when, p.origin, p.covered_by, round(p.coverage, 4),
                          int(self._exch[p.id])] for p in self.passages],
            "of_fact": [[f, p] for f, p in self._of_fact.items()],
            "antecedent": None if self._antecedent is None else self._antecedent.model_dump(),
        }

    @classmethod
    def restore(cls, embedder: Embedder, snap: dict[str, object]) -> "Memory":
        """The inverse of `snapshot`; the indexes are rebuilt from the passages' text."""
        mem = cls(embedder)
        mem.ledger = Ledger.restore(embedder, snap["ledger"])  # type: ignore[arg-type]
        rows = snap.get("passages", [])
        exch: list[int] = []
        for turn, part, text, speaker, when, origin, covered, coverage, *rest in rows:  # type: ignore[union-attr,misc]
            exch.append(int(rest[0]) if rest else -1)
            p = Passage(id=len(mem.passages), turn=int(turn), part=int(part), text=str(text), speaker=speaker,
                        when=when, origin=str(origin), tokens=count_tokens(str(text)), covered_by=list(covered),
                        coverage=float(coverage))
            mem.passages.append(p)
            mem._by_turn.setdefault(p.turn, []).append(p.id)
        n = len(mem.passages)
        mem._turn = np.array([p.turn for p in mem.passages], dtype=np.int64)
        mem._origin = np.array([_ORIGINS.index(p.origin) for p in mem.passages], dtype=np.int8)
        mem._speaker = np.array([mem._speaker_code(p.speaker) for p in mem.passages], dtype=np.int32)
        mem._question = np.array([p.text.rstrip().endswith("?") for p in mem.passages], dtype=bool)
        labelled = [f"{p.speaker}: {p.text}" if p.speaker else p.text for p in mem.passages]
        if n:
            mem.lexical.add(labelled)
            mem.semantic.add(labelled)
        mem._exch = np.array(exch, dtype=np.int64)
        pieces: dict[int, list[str]] = {}
        for text, doc in zip(labelled, exch):
            if doc >= 0:
                pieces.setdefault(doc, []).append(text)
        for doc in sorted(pieces):
            mem._add_exchange([t for text in pieces[doc] for t in analyse(text)])
        mem._of_fact = {int(f): int(p) for f, p in snap.get("of_fact", [])}  # type: ignore[union-attr]
        ante = snap.get("antecedent")
        mem._antecedent = Statement.model_validate(ante) if ante else None
        return mem
