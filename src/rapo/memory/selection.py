"""One question per step: which facts and passages a prompt carries, under a token budget.

Sources, fused: the ledger's facts the step names and their dependencies at any distance (always);
the previous turn verbatim, so an elliptical "and the other one?" has its referent; passages ranked
by lexical and embedding retrieval together (reciprocal-rank fusion), each passage's score lifted a
little by the turns around it (an answer usually follows the question that names its subject, and a
stretch of conversation keeps to its topic), by a speaker or a date the step names.
A passage that the ledger read is shown as its current facts, so a corrected value never appears
as current and the same statement is never paid for twice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import BaseModel

from rapo.extract import normalise_word
from rapo.memory.index import analyse, fuse
from rapo.memory.ledger import names_an_id
from rapo.tokens import count_tokens
from rapo.types import RapoError, trusted

if TYPE_CHECKING:
    from rapo.memory.ledger import Fact
    from rapo.memory.memory import Memory
    from rapo.memory.passages import Passage

__all__ = ["ContextItem", "SelectionConfig", "select_context"]

Reason = Literal["named", "dependency", "recent", "retrieved", "relevant", "window", "referent"]


class ContextItem(BaseModel):
    """One line of a prompt's context: a ledger fact or a passage as said, with where it came from."""

    kind: Literal["fact", "passage"] = "fact"
    text: str
    turn: int
    speaker: str | None = None
    when: str | None = None
    reason: Reason
    score: float = 0.0
    source: str = "user"
    fact_id: int | None = None
    passage_id: int | None = None


@dataclass(frozen=True, slots=True)
class SelectionConfig:
    budget_tokens: int = 1000
    k_retrieved: int = 64  # retrieved items at most, beyond the named facts and the recent turn
    # When the ledger's named facts already hold this share of the query's terms, the ledger has
    # understood the question: retrieval then adds only `k_answered` items, not the whole budget.
    answered_share: float = 0.8
    k_answered: int = 6
    recent_turns: int = 1
    min_relevance: float = 0.0  # a passage's lexical score as a share of the best, below which it is left out
    # a passage's score borrows from the best passage of each turn up to `neighbour_span` turns away,
    # `neighbour_decay` times less per turn further: what a stretch of the conversation is about
    neighbour_weight: float = 0.5
    neighbour_span: int = 5
    neighbour_decay: float = 0.7
    exchange_weight: float = 0.5  # how much a passage's score adds of its exchange's (it and the turn before)
    per_turn: int = 1  # verbatim passages of one turn at most (facts not counted): the budget spreads over more turns
    speaker_boost: float = 2.0  # a passage by a speaker the query names ranks this much higher
    question_weight: float = 1.0  # below 1, a question (it states nothing) ranks below statements that match as well
    date_boost: float = 2.0  # a passage whose date (`when`) matches the query's words ranks up to 1 + this higher
    covered: float = 0.6  # a passage whose facts quote this share of it is shown as its facts
    lexical_weight: float = 1.0
    embedding_weight: float = 0.25
    exclude_origin: frozenset[str] = frozenset({"agent"})
    hop_entities: int = 4  # things the named facts point at whose own facts join, within budget
    hop_facts: int = 8  # facts of each, the latest first


def _fact_item(fact: "Fact", reason: Reason, score: float, memory: "Memory") -> ContextItem:
    p = memory.passage_of_fact(fact.id)
    return trusted(ContextItem, kind="fact", text=fact.text, turn=fact.turn, speaker=p.speaker if p else None,
                   when=p.when if p else None, reason=reason, score=round(float(score), 4), source=fact.source,
                   fact_id=fact.id, passage_id=None)


def item_tokens(item: ContextItem) -> int:
    """What the line costs in the prompt: its text and its speaker label (the template's form)."""
    return count_tokens(item.text) + (count_tokens(item.speaker) + 1 if item.speaker else 0) + 1


class _Picker:
    """Items in the order they are chosen, with the budget they use; one item per fact or passage."""

    def __init__(self, budget: int) -> None:
        self.items: list[ContextItem] = []
        self.facts: set[int] = set()
        self.passages: set[int] = set()
        self.whens: set[str] = set()
        self.used = 0
        self.budget = budget

    def cost(self, item: ContextItem) -> int:
        header = count_tokens(item.when) + 2 if item.when and item.when not in self.whens else 0
        return item_tokens(item) + header

    def take(self, item: ContextItem, *, force: bool = False) -> bool:
        if item.fact_id is not None and item.fact_id in self.facts:
            return True
        if item.passage_id is not None and item.passage_id in self.passages:
            return True
        cost = self.cost(item)
        if not force and self.used + cost > self.budget:
            return False
        self.used += cost
        self.items.append(item)
        if item.fact_id is not None:
            self.facts.add(item.fact_id)
        if item.passage_id is not None:
            self.passages.add(item.passage_id)
        if item.when:
            self.whens.add(item.when)
        return True


def _passage_items(p: "Passage", memory: "Memory", reason: Reason, score: float, cfg: SelectionConfig,
                   skip: set[int] | frozenset[int] = frozenset()) -> list[ContextItem]:
    """A passage as the prompt should see it: as its current facts (those not in `skip`) when the
    ledger read it whole; as said otherwise, with the correction of any value it states that was
    superseded since."""
    ledger = memory.ledger
    if p.covered_by and p.coverage >= cfg.covered:
        out = []
        for fid in p.covered_by:
            current = ledger.current_of(fid)
            if current is not None and current.id not in skip and current.origin not in cfg.exclude_origin:
                out.append(_fact_item(current, reason if reason != "retrieved" else "relevant", score, memory))
        return out
    text = p.text
    later = [ledger.current_of(fid) for fid in p.covered_by if not ledger.get(fid).current]
    corrections = [f.text for f in later if f is not None]
    if corrections:
        text += " [since corrected: " + " ".join(corrections) + "]"
    return [trusted(ContextItem, kind="passage", text=text, turn=p.turn, speaker=p.speaker, when=p.when,
                    reason=reason, score=round(float(score), 4), source=p.origin, fact_id=None, passage_id=p.id)]


def select_context(memory: "Memory", query: str, cfg: SelectionConfig, *, now_turn: int | None = None) -> list[ContextItem]:
    """The context for a step whose text is `query`, oldest first. Named and dependency facts are
    always in (they may exceed the budget); the rest fills what the budget leaves."""
    if cfg.budget_tokens < 0 or cfg.k_retrieved < 0 or cfg.recent_turns < 0:
        raise RapoError("budget_tokens, k_retrieved and recent_turns must be >= 0")
    pick = _Picker(cfg.budget_tokens)
    for s in memory.ledger.select(query, budget_tokens=0, k_relevant=0, exclude_origin=set(cfg.exclude_origin)):
        pick.take(_fact_item(s.fact, s.reason, s.score, memory), force=True)
    k_retrieved = cfg.k_retrieved
    asked = {normalise_word(w) for w in re.findall(r"[A-Za-z]+", query)}
    answers = [i for i in pick.items if _answers(i, memory, asked)]
    if answers and cfg.answered_share <= 1.0:
        terms = set(analyse(query))
        held = set(analyse(" ".join(i.text for i in answers)))
        if terms and len(terms & held) >= cfg.answered_share * len(terms):
            k_retrieved = min(k_retrieved, cfg.k_answered)

    for p in memory.recent_passages(cfg.recent_turns, before_turn=now_turn, exclude_origin=cfg.exclude_origin):
        for item in _passage_items(p, memory, "recent", 0.0, cfg):
            pick.take(item)

    # a second hop: what the named facts point at ("L735's applicant" is P24), the latest first.
    # Its facts come before retrieval (they are short, and the step's answer is often among them,
    # said with words the step does not use); then it is searched for too.
    named = sorted((i for i in pick.items if i.fact_id is not None and i.reason == "named"),
                   key=lambda i: -(i.fact_id or 0))
    lowered = query.lower()
    hops = list(dict.fromkeys(v for i in named for v in memory.ledger.get(i.fact_id).value_ids  # type: ignore[arg-type]
                              if v not in lowered))
    for v in hops[: cfg.hop_entities]:
        for f in memory.ledger.about(v)[: cfg.hop_facts]:
            if f.origin not in cfg.exclude_origin:
                pick.take(_fact_item(f, "dependency", 0.0, memory))

    if k_retrieved > 0 and len(memory.passages):
        ranked, scores = memory.rank(" ".join([query, *hops]), cfg, now_turn=now_turn)
        taken = 0
        per_turn: dict[int, int] = {}
        for pid, score in zip(ranked.tolist(), scores.tolist()):
            p = memory.passages[pid]
            if p.id in pick.passages or per_turn.get(p.turn, 0) >= cfg.per_turn:
                continue
            fresh = _passage_items(p, memory, "retrieved", score, cfg, pick.facts)
            if not fresh:
                continue
            if not all(pick.take(i) for i in fresh):
                if pick.used >= pick.budget - 4:
                    break
                continue
            if any(i.kind == "passage" for i in fresh):  # facts are short and exact: a turn may state several
                per_turn[p.turn] = per_turn.get(p.turn, 0) + 1
            taken += 1
            if taken >= k_retrieved:
                break

    _add_referents(pick, memory, cfg)
    return sorted(pick.items, key=lambda i: _position(i, memory))


def _answers(item: ContextItem, memory: "Memory", asked: set[str]) -> bool:
    """A named fact whose attribute the step asks about (`asked`: the step's words, normalised),
    not only a link between things it names ("M7 is built around K4" answers nothing about M7's cost)."""
    if item.fact_id is None:
        return False
    words = memory.ledger.get(item.fact_id).attribute.split()
    return bool(words) and all(w in asked for w in words)


_REFERRING = re.compile(r"(?i)^\s*(?:[-*\u2022]\s|(?:it|its|they|their|this|these|those|he|she|his|her)\b)")


def _position(item: ContextItem, memory: "Memory") -> tuple[int, float, int]:
    """Where a line goes: in turn order, and within a turn where its words were said (a fact just
    after the passage it was read from's predecessors), so a line follows the line it refers to."""
    if item.passage_id is not None:
        return (item.turn, float(item.passage_id), -1)
    p = memory.passage_of_fact(item.fact_id) if item.fact_id is not None else None
    at = float(p.id) if p is not None and p.turn == item.turn else -1.0
    return (item.turn, at, item.fact_id if item.fact_id is not None else -1)


def _refers_back(item: ContextItem, memory: "Memory") -> bool:
    """A line that does not say what it is about: a bullet under a heading, a sentence on "it"."""
    key = ("f", item.fact_id) if item.fact_id is not None else ("p", item.passage_id)
    known = memory.refers_back.get(key)  # a fact's or passage's text never changes: judged once
    if known is None:
        if item.fact_id is not None:
            fact = memory.ledger.get(item.fact_id)
            known = bool(fact.entity_ids) and not names_an_id(item.text, fact.entity_ids)
        else:
            known = bool(_REFERRING.match(item.text))
        if key[1] is not None:
            memory.refers_back[key] = known
    return known


def _add_referents(pick: "_Picker", memory: "Memory", cfg: SelectionConfig) -> None:
    """Every line that refers back gets the line it refers to: the nearest earlier passage of its
    turn that does not itself refer back (a report's heading, the sentence that named "it"). A named
    or dependency fact's referent is always taken, as the fact is; any other's only within budget."""
    for item in list(pick.items):
        if not _refers_back(item, memory):
            continue
        own = memory.passages[item.passage_id] if item.passage_id is not None else (
            memory.passage_of_fact(item.fact_id) if item.fact_id is not None else None)
        if own is None or own.turn != item.turn:
            continue
        pid = own.id - 1
        while pid >= 0 and memory.passages[pid].turn == own.turn:
            prev = memory.passages[pid]
            if not _REFERRING.match(prev.text):
                must = item.reason in ("named", "dependency")  # a few words, without which the line misleads
                for ref in _passage_items(prev, memory, "referent", 0.0, cfg, pick.facts):
                    pick.take(ref, force=must)
                break
            pid -= 1


def _lexical(memory: "Memory", query: str, cfg: SelectionConfig) -> np.ndarray:
    """BM25 of each passage, with its exchange's and its neighbouring turns' share."""
    n = len(memory.passages)
    terms = analyse(query)
    lexical = memory.lexical.scores_of_terms(terms)
    if cfg.exchange_weight > 0 and n and len(memory.exchanges):
        exch = memory.exchange_array()
        per_doc = memory.exchanges.scores_of_terms(terms)
        lexical = lexical + cfg.exchange_weight * np.where(exch >= 0, per_doc[np.maximum(exch, 0)], 0.0)
    if cfg.neighbour_weight > 0 and n:
        # the best score of each turn (a turn's passages are contiguous), shared with the turns beside it
        starts, seg = memory.turn_segments()
        best = np.maximum.reduceat(lexical, starts)
        beside = np.zeros(best.size)
        for d in range(1, max(1, cfg.neighbour_span) + 1):
            if d >= best.size:
                break
            f = cfg.neighbour_decay ** (d - 1)
            beside[d:] += f * best[:-d]
            beside[:-d] += f * best[d:]
        lexical = lexical + cfg.neighbour_weight * 0.5 * beside[seg]
    return lexical


def rank_passages(memory: "Memory", query: str, cfg: SelectionConfig, *, now_turn: int | None = None,
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Passages (numbers, best first) and their fused scores, the allowed origins only."""
    n = len(memory.passages)
    turn_of = memory.turn_array()
    allowed = memory.allowed_mask(cfg.exclude_origin)
    if now_turn is not None:
        allowed &= turn_of < now_turn  # the step's own text is its task, not its context
    lexical = _lexical(memory, query, cfg)
    if cfg.min_relevance > 0 and lexical.size:
        top = float(lexical[allowed].max()) if allowed.any() else 0.0
        allowed &= lexical >= cfg.min_relevance * top
    rankings: list[np.ndarray] = []
    weights: list[float] = []

    lex = np.where(allowed, lexical, 0.0)
    order = np.flatnonzero(lex > 0)
    rankings.append(order[np.lexsort((order, -lex[order]))])
    weights.append(cfg.lexical_weight)
    if cfg.embedding_weight > 0:
        emb = np.where(allowed, memory.semantic.scores(query), 0.0)
        order = np.flatnonzero(emb > 0)
        rankings.append(order[np.lexsort((order, -emb[order]))])
        weights.append(cfg.embedding_weight)
    fused = fuse(rankings, n, weights)
    fused = fused * np.where(memory.question_mask(), cfg.question_weight, 1.0)
    if cfg.date_boost > 0:
        dates = memory.date_scores(query)
        top = float(dates.max()) if dates.size else 0.0
        if top > 0:
            fused = fused * (1.0 + cfg.date_boost * dates / top)
    if cfg.speaker_boost != 1.0:
        named = memory.speakers_named(query)
        if named:
            fused = fused * np.where(memory.speaker_mask(named), cfg.speaker_boost, 1.0)
    order = np.flatnonzero(fused > 0)
    order = order[np.lexsort((order, -fused[order]))]
    return order, fused[order]
