"""The facts ledger: what is current among the values a conversation stated.

Facts come from the conversation's own text (`add_text`) or from a caller (`add`). A later value
for the same key supersedes the earlier one; both are kept for audit. `select` picks what a step's
prompt must carry: every fact the step names, every fact those depend on (however old), then the
most similar others under a token budget. That is what keeps far-back facts in view without
sending the whole transcript.
"""

from __future__ import annotations

import base64
import re
from typing import Literal, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from rapo.extract import (
    STOP_ATTRIBUTE,
    TYPE_NOUNS,
    Statement,
    extract_statements,
    find_value_ids,
    make_key,
    normalise_value,
    normalise_word,
    parse_subject,
)
from rapo.numbers import Quantity, find_quantities, same_quantity
from rapo.tokens import count_tokens
from rapo.types import Embedder, RapoError, trusted

__all__ = ["Fact", "Selection", "Ledger", "segment_query"]

Origin = Literal["user", "agent", "api"]
_ORIGINS: tuple[str, ...] = ("user", "agent", "api")


class Fact(BaseModel):
    """One keyed value with provenance. `superseded_by` points at the fact that replaced it (or, for
    an agent claim that contradicted a user fact, at the user fact that overrides it)."""

    model_config = ConfigDict(frozen=False)

    id: int = Field(ge=0)
    key: str
    subject: str
    attribute: str
    entity_ids: tuple[str, ...]
    value: str
    value_ids: tuple[str, ...]
    text: str
    turn: int = Field(ge=0)
    source: str
    origin: Origin
    superseded_by: int | None = None
    supersedes: int | None = None
    said: str | None = None  # the words as written, where `text` restates a correction that named no subject

    @property
    def current(self) -> bool:
        return self.superseded_by is None


_ALNUM = re.compile(r"[a-z0-9]+")


def names_an_id(text: str, entity_ids: Sequence[str]) -> bool:
    """Does `text` name one of these identifiers (every word of it, whole)?"""
    words = set(_ALNUM.findall(text.lower()))
    return any(set(_ALNUM.findall(e)) <= words for e in entity_ids)


def _names_subject(st: Statement) -> bool:
    """Does the statement's own text name what it is about (an identifier, else its attribute)?"""
    if st.entity_ids:
        return names_an_id(st.text, st.entity_ids)
    words = _ALNUM.findall(st.text.lower())
    return bool(st.attribute) and set(st.attribute.split()) <= {normalise_word(w) for w in words}


def _restate(prev: Fact, value: str) -> str | None:
    """The earlier fact's sentence with its value replaced: a correction that named no subject
    ("We raised it to 150 dollars.") becomes a line that says what it is about. None where the
    old value cannot be found once in that sentence."""
    old = find_quantities(prev.value)
    if len(old) == 1:
        spans = [q for q in find_quantities(prev.text) if same_quantity(q, old[0])]
        if len(spans) == 1:
            q = spans[0]
            return prev.text[: q.start] + value + prev.text[q.end:]
    if prev.text.count(prev.value) == 1:
        return prev.text.replace(prev.value, value)
    return None


class Selection(BaseModel):
    model_config = ConfigDict(frozen=True)

    fact: Fact
    reason: Literal["named", "dependency", "relevant", "window"]
    score: float


# Where a question changes subject: "A17's limit plus B22's fee", "across A17, B22 and C30".
_SEGMENT_RE = re.compile(
    r"\s+(?:and|plus|minus|or|than|versus|vs\.?|times|multiplied by|divided by|compared (?:to|with)|"
    r"between|among|amongst|across|over|together with|as well as|along with|against)\s+|[,;:]\s*|\s+-\s+",
    re.IGNORECASE,
)
_DIGIT = re.compile(r"\d")
_WORD_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-./]*[A-Za-z0-9]|[A-Za-z0-9]")
_QUERY_STOP = STOP_ATTRIBUTE | frozenset(
    """what which whose how is are was were does do did can could would will should tell me remind
    give show please value currently right now""".split()
)


class _Segment(BaseModel):
    words: frozenset[str]
    tokens: frozenset[str]


def segment_query(query: str) -> list[_Segment]:
    """Split a question into subject mentions. A mention with ids but no attribute words ("order
    B22" in "the total refund limit across order A17, order B22") borrows the attribute words of
    the nearest mention before it (or after it), so a distributed attribute still names each fact."""
    raw = [p for p in _SEGMENT_RE.split(query) if p and p.strip()]
    parts: list[tuple[set[str], set[str]]] = []
    for p in raw:
        toks = [t.lower() for t in _WORD_RE.findall(p)]
        words = {normalise_word(t) for t in toks} - _QUERY_STOP
        # A type noun is only a type noun right before an identifier ("order A17"); elsewhere it
        # is part of the attribute ("item count", "unit cost", "account credit").
        typed = {normalise_word(a) for a, b in zip(toks, toks[1:]) if a in TYPE_NOUNS and _DIGIT.search(b)}
        attr_words = {w for w in words if w not in typed and not _DIGIT.search(w)}
        parts.append((attr_words, set(toks) | words))
    segments: list[_Segment] = []
    for i, (attr, toks) in enumerate(parts):
        words = set(attr)
        if not attr:
            donor = next((parts[j][0] for j in range(i - 1, -1, -1) if parts[j][0]), None)
            if donor is None:
                donor = next((parts[j][0] for j in range(i + 1, len(parts)) if parts[j][0]), set())
            words |= donor
        segments.append(trusted(_Segment, words=frozenset(words | toks), tokens=frozenset(toks)))
    return segments


class Ledger:
    """Facts plus their embeddings (rows of one matrix grown in chunks) and lookup indexes."""

    _CHUNK = 2  # first rows; the arrays grow by half as facts arrive (at most a third unused)

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder
        self._facts: list[Fact] = []
        self._emb = np.zeros((self._CHUNK, embedder.dim), dtype=np.float32)
        self._tokens = np.zeros(self._CHUNK, dtype=np.int64)
        self._is_current = np.zeros(self._CHUNK, dtype=bool)
        self._origin = np.zeros(self._CHUNK, dtype=np.int8)
        self._vocab: set[str] = set()  # attribute words ever seen: what a query can ask for
        self._current_by_key: dict[str, int] = {}
        self._history: dict[str, list[int]] = {}
        self._by_entity: dict[str, set[int]] = {}  # entity id -> current fact ids about it
        self._by_word: dict[str, set[int]] = {}  # attribute word -> current fact ids without ids
        self._quantities: dict[int, Quantity | None] = {}  # fact id -> the quantity its value states

    # --- checkpoints -------------------------------------------------------------------------

    def snapshot(self) -> dict[str, object]:
        """Everything needed to rebuild this ledger exactly: facts in order and their vectors."""
        n = len(self._facts)
        return {
            "facts": [f.model_dump() for f in self._facts],
            "dim": int(self._emb.shape[1]),
            "embeddings": base64.b64encode(np.ascontiguousarray(self._emb[:n], dtype=np.float32).tobytes()).decode(),
        }

    @classmethod
    def restore(cls, embedder: Embedder, snap: dict[str, object]) -> "Ledger":
        """The inverse of `snapshot`. Vectors are reused when the embedder's dimension matches (the
        same embedder wrote them), recomputed from the facts' text otherwise."""
        ledger = cls(embedder)
        facts = [Fact.model_validate(f) for f in snap.get("facts", [])]  # type: ignore[union-attr]
        if int(snap.get("dim", -1)) == embedder.dim:  # type: ignore[call-overload]
            raw = base64.b64decode(str(snap.get("embeddings", "")))
            vecs = np.frombuffer(raw, dtype=np.float32).reshape(len(facts), embedder.dim)
        else:
            vecs = embedder.embed([f.text for f in facts])
        for fact, vec in zip(facts, vecs):
            if fact.id != len(ledger._facts):
                raise RapoError(f"ledger snapshot is corrupt: fact ids must run 0..n-1, got {fact.id} at {len(ledger._facts)}")
            ledger._append(fact, vec)
            if fact.current:
                ledger._current_by_key[fact.key] = fact.id
                ledger._set_current(fact, True)
        return ledger

    # --- size and access ---------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._facts)

    def get(self, fact_id: int) -> Fact:
        if not 0 <= fact_id < len(self._facts):
            raise RapoError(
                f"no fact with id {fact_id}: the ledger holds ids 0..{len(self._facts) - 1}"
            )
        return self._facts[fact_id]

    def current(self) -> list[Fact]:
        return [self._facts[i] for i in np.flatnonzero(self._is_current[: len(self._facts)])]

    def about(self, entity_id: str) -> list[Fact]:
        """The current facts about one entity, latest first."""
        return sorted((self._facts[i] for i in self._by_entity.get(entity_id, ())), key=lambda f: -f.id)

    def history(self, key: str) -> list[Fact]:
        return [self._facts[i] for i in self._history.get(key, [])]

    def current_of(self, fact_id: int) -> Fact | None:
        """The fact that stands for `fact_id` now: itself, or what superseded it (None for an agent
        claim that a user fact overrode: the user's fact is current for that key, not a correction)."""
        fact = self.get(fact_id)
        seen = 0
        while fact.superseded_by is not None and seen < len(self._facts):
            nxt = self._facts[fact.superseded_by]
            if nxt.key != fact.key:
                return None
            fact, seen = nxt, seen + 1
        return fact

    def value(self, key: str) -> str | None:
        fid = self._current_by_key.get(key)
        return None if fid is None else self._facts[fid].value

    # --- adding ------------------------------------------------------------------------------

    def add_text(
        self, text: str, *, turn: int, source: str, origin: Origin = "user"
    ) -> list[Fact]:
        """Facts stated in `text`, as now current (a restated value returns the existing fact)."""
        return self.add_statements(extract_statements(text), turn=turn, source=source, origin=origin)

    def corrections_by_value(self, sentence: str) -> list[Statement]:
        """A correction that names only the old value: "the 120 dollars should have been 150",
        "it's 25 days, not 78 days". It names two quantities in one unit, of which exactly one is the
        value of exactly one current fact (not an agent's); the other is that fact's new value."""
        found = find_quantities(sentence)
        if len(found) != 2 or found[0].value == found[1].value:
            return []
        a, b = found
        if a.unit and b.unit and a.unit != b.unit:
            return []
        holders: list[tuple[Fact, Quantity]] = []
        for fact in self.current():
            if fact.origin == "agent":
                continue
            held = self._quantity_of(fact)
            if held is None:
                continue
            for q, other in ((a, b), (b, a)):
                if same_quantity(q, held) and not same_quantity(other, held):
                    holders.append((fact, other))
        if len(holders) != 1:
            return []  # no fact holds either value, or the words fit more than one: not a correction we can place
        fact, new = holders[0]
        value = new.text
        held = self._quantity_of(fact)
        if held is not None and held.unit and new.unit != held.unit:  # "150, not 120 dollars": the old one's unit
            value = new.number
            if held.number[:1] in "$€£" and new.number[:1] not in "$€£":
                value = held.number[:1] + new.number
            elif held.text != held.number:
                value = f"{new.number} {held.text[len(held.number):].strip()}"
        return [Statement(subject=fact.subject, key=fact.key, entity_ids=fact.entity_ids, attribute=fact.attribute,
                          value=value, value_ids=find_value_ids(value), text=sentence.strip(), is_update=True)]

    def _quantity_of(self, fact: Fact) -> Quantity | None:
        """The one quantity a fact's value states, if it states exactly one."""
        cached = self._quantities.get(fact.id, False)
        if cached is False:
            found = find_quantities(fact.value)
            cached = self._quantities[fact.id] = found[0] if len(found) == 1 else None
        return cached  # type: ignore[return-value]

    def add_statements(
        self, statements: Sequence[Statement], *, turn: int, source: str, origin: Origin = "user"
    ) -> list[Fact]:
        """Statements found by any extractor (rules or a model), with supersession as for text."""
        return [self._add_statement(s, turn=turn, source=source, origin=origin) for s in statements]

    def add(
        self,
        subject: str,
        value: str,
        *,
        text: str | None = None,
        turn: int,
        source: str,
        origin: Origin = "api",
    ) -> Fact:
        """A fact from a caller. `subject` is a phrase ("the refund limit for order A17") or a key
        ("refund limit|a17"); either is normalised as extraction would."""
        if not subject or not subject.strip():
            raise RapoError("add() needs a subject, e.g. 'the refund limit for order A17'")
        if not value or not value.strip():
            raise RapoError(f"add() needs a non-empty value for {subject!r}")
        if "|" in subject:
            attribute, _, ids = subject.partition("|")
            attribute = " ".join(normalise_word(w) for w in attribute.split())
            entity_ids = tuple(sorted({i.lower() for i in ids.split()}))
        else:
            attribute, entity_ids = parse_subject(subject)
        if not attribute and not entity_ids:
            raise RapoError(
                f"subject {subject!r} names nothing: give attribute words and/or identifiers"
            )
        value = value.strip()
        if text is None:
            text = f"{subject.strip()} is {value}." if "|" not in subject else (
                f"The {attribute} for {' '.join(entity_ids)} is {value}."
            )
        st = Statement(
            subject=subject.strip(),
            key=make_key(attribute, entity_ids),
            entity_ids=entity_ids,
            attribute=attribute,
            value=value,
            value_ids=find_value_ids(value),
            text=text,
        )
        return self._add_statement(st, turn=turn, source=source, origin=origin)

    def _add_statement(self, st: Statement, *, turn: int, source: str, origin: Origin) -> Fact:
        """Embeds only what is stored: agents restate current facts in most answers."""
        if isinstance(turn, bool) or not isinstance(turn, int) or turn < 0:
            raise RapoError(f"turn must be a whole number >= 0, got {turn!r}")
        if origin not in _ORIGINS or not isinstance(source, str):
            raise RapoError(f"origin must be one of {_ORIGINS} and source a string, got {origin!r}, {source!r}")
        prev_id = self._current_by_key.get(st.key)
        prev = self._facts[prev_id] if prev_id is not None else None
        if prev is not None and normalise_value(prev.value) == normalise_value(st.value):
            if origin == "agent" or (prev.origin != "agent" and turn <= prev.turn):
                return prev  # a restatement adds nothing
            # a user saying it again later ("K48 now is made of Steel") makes it the latest word on
            # its subject, above anything said in between under another key
        overridden = prev is not None and origin == "agent" and prev.origin != "agent"
        said = None
        text = st.text
        if prev is not None and not overridden and st.is_update and not _names_subject(st):
            restated = _restate(prev, st.value)
            if restated is not None:  # "We raised it to 150 dollars" is shown as its subject's sentence
                text, said = restated, st.text
        fact = trusted(  # the statement is validated and turn/source/origin checked above
            Fact,
            id=len(self._facts),
            key=st.key,
            subject=st.subject,
            attribute=st.attribute,
            entity_ids=st.entity_ids,
            value=st.value,
            value_ids=st.value_ids,
            text=text,
            turn=turn,
            source=source,
            origin=origin,
            superseded_by=prev_id if overridden else None,
            supersedes=None if overridden or prev is None else prev_id,
            said=said,
        )
        self._append(fact, self.embedder.embed([text])[0])
        if overridden:
            return fact  # kept for audit, never current: agents can be wrong
        if prev is not None:
            prev.superseded_by = fact.id
            self._set_current(prev, False)
        self._current_by_key[fact.key] = fact.id
        self._set_current(fact, True)
        return fact

    def _append(self, fact: Fact, vec: np.ndarray) -> None:
        n = len(self._facts)
        if n == self._emb.shape[0]:
            grow = max(self._CHUNK, n // 2)
            self._emb = np.concatenate([self._emb, np.zeros((grow, self._emb.shape[1]), np.float32)])
            self._tokens = np.concatenate([self._tokens, np.zeros(grow, np.int64)])
            self._is_current = np.concatenate([self._is_current, np.zeros(grow, bool)])
            self._origin = np.concatenate([self._origin, np.zeros(grow, np.int8)])
        self._emb[n] = vec
        self._tokens[n] = count_tokens(fact.text)
        self._origin[n] = _ORIGINS.index(fact.origin)
        self._vocab.update(fact.attribute.split())
        self._facts.append(fact)
        self._history.setdefault(fact.key, []).append(fact.id)

    def _set_current(self, fact: Fact, on: bool) -> None:
        self._is_current[fact.id] = on
        if fact.entity_ids:
            for eid in fact.entity_ids:
                bucket = self._by_entity.setdefault(eid, set())
                (bucket.add if on else bucket.discard)(fact.id)
        else:
            for w in fact.attribute.split():
                bucket = self._by_word.setdefault(w, set())
                (bucket.add if on else bucket.discard)(fact.id)

    # --- selection ---------------------------------------------------------------------------

    def select(
        self,
        query: str,
        *,
        budget_tokens: int,
        k_relevant: int = 8,
        exclude_origin: set[str] | None = None,
        max_depth: int = 4,
    ) -> list[Selection]:
        """Named and dependency facts always (they may exceed the budget), then the most similar
        others while the total stays within `budget_tokens`; oldest first."""
        if budget_tokens < 0 or k_relevant < 0 or max_depth < 0:
            raise RapoError("budget_tokens, k_relevant and max_depth must be >= 0")
        n = len(self._facts)
        if n == 0:
            return []
        excluded = exclude_origin or set()
        allowed = self._is_current[:n].copy()
        if excluded:
            for code, name in enumerate(_ORIGINS):
                if name in excluded:
                    allowed &= self._origin[:n] != code

        q = self.embedder.embed([query])[0]
        scores = self._emb[:n] @ q
        segments = segment_query(query)
        all_tokens: set[str] = set().union(*(s.tokens for s in segments)) if segments else set()
        all_words: set[str] = set().union(*(s.words for s in segments)) if segments else set()
        reasons: dict[int, str] = {}

        def attr_in(f: Fact, words: frozenset[str] | set[str]) -> bool:
            aw = f.attribute.split()
            return bool(aw) and all(w in words for w in aw)

        # named: a fact whose attribute and ids share one mention, or a link whose ids are named
        candidates: set[int] = set()
        for tok in all_tokens:
            candidates |= self._by_entity.get(tok, set())
            candidates |= self._by_word.get(tok, set())
        for fid in sorted(candidates):
            f = self._facts[fid]
            if not allowed[fid]:
                continue
            if f.entity_ids:
                ids = set(f.entity_ids)
                hit = any(ids <= seg.tokens and attr_in(f, seg.words) for seg in segments)
                if not hit and f.value_ids and ids <= all_tokens:
                    hit = True
            else:
                hit = any(attr_in(f, seg.words) for seg in segments)
            if hit:
                reasons[fid] = "named"

        # dependency: follow values that name other entities, preferring facts the query asks about
        covered = {w for fid in reasons for w in self._facts[fid].attribute.split()}
        wanted = {w for w in all_words if w in self._vocab} - covered
        frontier = {eid for fid in reasons for eid in self._facts[fid].value_ids}
        seen_ids = {eid for fid in reasons for eid in self._facts[fid].entity_ids}
        for _ in range(max_depth):
            frontier -= seen_ids
            if not frontier:
                break
            seen_ids |= frontier
            cands = {
                fid
                for eid in frontier
                for fid in self._by_entity.get(eid, ())
                if allowed[fid] and fid not in reasons
            }
            if not cands:
                break
            asked = {fid for fid in cands if attr_in(self._facts[fid], all_words)}
            if asked:
                take = asked
            elif wanted:
                ranked = sorted(cands, key=lambda i: -float(scores[i]))
                take = set(ranked[: max(k_relevant, 1)])
            else:
                break
            for fid in take:
                reasons[fid] = "dependency"
                covered |= set(self._facts[fid].attribute.split())
            wanted -= covered
            frontier = {eid for fid in take for eid in self._facts[fid].value_ids}

        # relevant: the rest by cosine, within what the budget leaves
        used = int(self._tokens[list(reasons)].sum()) if reasons else 0
        left = budget_tokens - used
        if k_relevant > 0 and left > 0:
            mask = allowed.copy()
            if reasons:
                mask[list(reasons)] = False
            pool = np.flatnonzero(mask)
            if pool.size:
                m = min(pool.size, 4 * k_relevant + 16)
                top = pool[np.argpartition(-scores[pool], m - 1)[:m]] if m < pool.size else pool
                top = top[np.argsort(-scores[top], kind="stable")]
                picked = 0
                for fid in top.tolist():
                    cost = int(self._tokens[fid])
                    if cost <= left:
                        reasons[fid] = "relevant"
                        left -= cost
                        picked += 1
                        if picked >= k_relevant:
                            break

        order = sorted(reasons, key=lambda i: (self._facts[i].turn, i))
        return [
            trusted(Selection, fact=self._facts[i], reason=reasons[i], score=float(scores[i]))
            for i in order
        ]

    def tokens_of(self, facts: list[Fact]) -> int:
        return int(self._tokens[[f.id for f in facts]].sum()) if facts else 0
