"""Scoring a turn against the truth, and summarising systems with bootstrap intervals.

Only this module and the oracle see the truth; systems get text. Every system is scored by the same
code: the answer is the reply's `Answer:` value, normalised; context loss is a needed fact that the
prompt the answering agent got does not hold, judged from the ground truth's own strings (never by
reading the prompt with the generator's parser, which would hide a sentence a system failed to read).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Iterable, Sequence

import numpy as np
from dataclasses import dataclass, fields
from rouge_score import rouge_scorer, tokenizers

from rapo.bench.language import KINDS
from rapo.consensus import extract_answer, normalise_answer

_SCORER = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
_TOKENIZER = tokenizers.DefaultTokenizer(use_stemmer=False)  # rouge-score's own tokenisation


@dataclass(slots=True)
class TurnScore:
    """One per-turn record of results.json (there are hundreds of thousands: a slotted dataclass)."""

    system: str
    conv: str
    scenario: str
    T: int  # agent transitions (turns) in the conversation
    turn: int
    q: bool  # a question turn
    lat: float  # seconds
    ptok: int
    otok: int
    calls: int
    agent: str | None = None
    type: str | None = None
    value: str | None = None
    expected: str | None = None
    correct: bool | None = None
    loss: bool | None = None  # context loss
    rouge: float | None = None


FIELDS = [f.name for f in fields(TurnScore)]


def as_rows(records: Sequence[TurnScore]) -> list[tuple]:
    return [astuple_fast(r) for r in records]


def astuple_fast(r: TurnScore) -> tuple:
    return tuple(getattr(r, f) for f in FIELDS)


@lru_cache(maxsize=16_384)
def _word(text: str) -> re.Pattern[str]:
    return re.compile(r"(?<![\w.])" + re.escape(text) + r"(?![\w])", re.IGNORECASE)


def fact_present(prompt: str, need: Any) -> bool:
    """The prompt holds the fact: the sentence that stated it, as written, or a line naming the
    fact's subject (its identifier or name, whole word) beside its current value (canonical, or as
    the sentence wrote it). A superseded value, or the value of a near-duplicate subject (A71 for
    A17), is not the fact."""
    if need.sentence and need.sentence in prompt:
        return True
    first, _, rest = need.entity.partition(" ")
    named = rest in KINDS and KINDS[rest].named  # "gold tier" -> Gold; "order a17" -> A17
    subject = _word(first if named or not rest else rest)
    values = [_word(v) for v in dict.fromkeys([need.value, getattr(need, "written", "") or need.value]) if v]
    for line in prompt.splitlines():
        if subject.search(line) and any(v.search(line) for v in values):
            return True
    return False


def context_lost(prompt_parts: Sequence[str], needed: Iterable[Any]) -> bool:
    """True if any needed fact is not held by the prompt (all its messages, joined)."""
    prompt = "\n".join(prompt_parts)
    return any(not fact_present(prompt, n) for n in needed)


@lru_cache(maxsize=65_536)
def rouge_l(reply: str, reference: str) -> float:
    """ROUGE-L F1 as rouge-score computes it (`rouge_l_reference`), with the LCS found bit-parallel.

    rouge-score tokenises; its Python LCS table was most of the benchmark's scoring time, so the LCS
    length comes from Hyyro's bit-vector algorithm instead. tests/test_metrics.py checks the two agree.
    """
    pred, ref = _tokens(reply), _tokens(reference)
    if not pred or not ref:
        return 0.0
    lcs = _lcs_length(pred, ref)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(pred), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


def rouge_l_reference(reply: str, reference: str) -> float:
    return float(_SCORER.score(reference, reply)["rougeL"].fmeasure)


@lru_cache(maxsize=131_072)
def _tokens(text: str) -> tuple[str, ...]:
    return tuple(_TOKENIZER.tokenize(text))


def _lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence (Hyyro 2004): one pass over b, a's positions as bits."""
    masks: dict[str, int] = {}
    for i, tok in enumerate(a):
        masks[tok] = masks.get(tok, 0) | (1 << i)
    full = (1 << len(a)) - 1
    v = full
    for tok in b:
        u = v & masks.get(tok, 0)
        v = ((v + u) | (v - u)) & full
    return len(a) - bin(v).count("1")


def score_turn(system: str, conv: Any, index: int, outcome: Any) -> TurnScore:
    turn = conv.turns[index]
    q = turn.question
    base = dict(system=system, conv=conv.id, scenario=conv.scenario, T=len(conv.turns), turn=index + 1,
                agent=outcome.agent, lat=round(outcome.latency_s, 6), ptok=outcome.prompt_tokens,
                otok=outcome.output_tokens, calls=outcome.calls)
    if q is None:
        return TurnScore(q=False, **base)
    value = normalise_answer(extract_answer(outcome.reply))
    expected = normalise_answer(q.answer)
    return TurnScore(q=True, type=q.type, value=value, expected=expected, correct=value == expected,
                     loss=context_lost(outcome.prompt_parts, q.needed), rouge=round(rouge_l(outcome.reply, q.reference), 4),
                     **base)


# -- summaries -----------------------------------------------------------------------------------


class _Table:
    """Per-conversation sums for one system, as numpy arrays aligned on conversation order."""

    def __init__(self, records: Sequence[TurnScore]) -> None:
        convs: dict[str, int] = {}
        for r in records:
            convs.setdefault(r.conv, len(convs))
        n = len(convs)
        self.ids = list(convs)
        idx = np.fromiter((convs[r.conv] for r in records), dtype=np.int64, count=len(records))
        q = np.fromiter((r.q for r in records), dtype=bool, count=len(records))

        def add(values: Iterable[float], mask: np.ndarray | None = None) -> np.ndarray:
            v = np.fromiter(values, dtype=np.float64, count=len(records))
            if mask is not None:
                v = np.where(mask, v, 0.0)
            return np.bincount(idx, weights=v, minlength=n)

        self.turns = np.bincount(idx, minlength=n).astype(np.float64)
        self.questions = add((1.0 for _ in records), q)
        self.correct = add(((r.correct or False) * 1.0 for r in records), q)
        self.loss = add(((r.loss or False) * 1.0 for r in records), q)
        self.rouge = add(((r.rouge or 0.0) for r in records), q)
        self.latency = add(r.lat for r in records)
        self.q_latency = add((r.lat for r in records), q)
        self.q_calls = add((r.calls for r in records), q)
        self.ptok = add(r.ptok for r in records)
        self.otok = add(r.otok for r in records)
        self.calls = add(r.calls for r in records)
        T = np.zeros(n, dtype=np.int64)
        scen = [""] * n
        for r in records:
            T[convs[r.conv]] = r.T
            scen[convs[r.conv]] = r.scenario
        self.T, self.scenario = T, np.asarray(scen)
        self.success = (self.correct == self.questions) & (self.loss == 0)
        self.turn_latency = np.fromiter((r.lat for r in records), dtype=np.float64, count=len(records))

    def metrics(self, rows: np.ndarray | slice = slice(None)) -> dict[str, np.ndarray | float]:
        """Point estimates over the given conversations (rows may be a (B, n) bootstrap index)."""
        s = lambda a: a[rows].sum(axis=-1)  # noqa: E731
        m = lambda a: a[rows].mean(axis=-1)  # noqa: E731
        qs = np.maximum(s(self.questions), 1)
        turns = np.maximum(s(self.turns), 1)
        return {
            "success_rate": m(self.success.astype(np.float64)),
            "context_loss_rate": s(self.loss) / qs,
            "accuracy": s(self.correct) / qs,
            "rouge_l": s(self.rouge) / qs,
            "latency_mean_s": m(self.latency),
            "latency_turn_mean_s": s(self.latency) / turns,
            # question turns only: statement turns may cost no call (rapo's default), so this is the
            # like-for-like figure; per conversation (the sum) and per question
            "latency_question_turns_mean_s": m(self.q_latency),
            "latency_per_question_s": s(self.q_latency) / qs,
            "calls_per_question": s(self.q_calls) / qs,
            "prompt_tokens_per_turn": s(self.ptok) / turns,
            "output_tokens_per_turn": s(self.otok) / turns,
            "calls_per_turn": s(self.calls) / turns,
        }


def _ci(samples: np.ndarray) -> list[float]:
    lo, hi = np.percentile(samples, [2.5, 97.5])
    return [round(float(lo), 6), round(float(hi), 6)]


def bootstrap_index(n: int, n_boot: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def summarise(records: Sequence[TurnScore], boot: np.ndarray) -> dict[str, Any]:
    """The results.json summary of one system; `boot` (B, n) resamples conversations."""
    t = _Table(records)
    point = t.metrics()
    samples = t.metrics(boot)
    out: dict[str, Any] = {k: round(float(v), 6) for k, v in point.items()}
    out.update({f"{k}_ci": _ci(np.asarray(v)) for k, v in samples.items()})
    out["latency_p95_s"] = round(float(np.percentile(t.latency, 95)), 6)
    out["latency_turn_p95_s"] = round(float(np.percentile(t.turn_latency, 95)), 6)
    out["conversations"] = len(t.ids)
    out["questions"] = int(t.questions.sum())
    out["context_loss_events"] = int(t.loss.sum())
    by_T: dict[str, dict[str, float]] = {}
    for T in np.unique(t.T):
        rows = np.flatnonzero(t.T == T)
        mt = t.metrics(rows)
        by_T[str(int(T))] = {"success_rate": round(float(mt["success_rate"]), 6),
                             "latency_mean_s": round(float(mt["latency_mean_s"]), 6),
                             "conversations": int(rows.size)}
    out["by_transitions"] = by_T
    out["by_scenario"] = {
        str(sc): {k: round(float(v), 6) for k, v in t.metrics(np.flatnonzero(t.scenario == sc)).items()
                  if k in ("success_rate", "accuracy", "context_loss_rate", "latency_mean_s")}
        for sc in np.unique(t.scenario)
    }
    by_type: dict[str, dict[str, float]] = {}
    for typ in sorted({r.type for r in records if r.type}):
        rs = [r for r in records if r.type == typ]
        by_type[typ] = {"accuracy": round(float(np.mean([r.correct for r in rs])), 6),
                        "context_loss_rate": round(float(np.mean([r.loss for r in rs])), 6),
                        "questions": len(rs)}
    out["by_type"] = by_type
    return out


COMPARED = ("handoff", "handoff-vote", "round-robin", "round-robin-vote", "oracle", "oracle-vote")
"""The systems rapo's ratios are computed against, when they ran on the same conversations."""


def ratios(by_system: dict[str, Sequence[TurnScore]], boot: np.ndarray, subject: str = "rapo") -> dict[str, Any]:
    """The paper's headline ratios, with paired bootstrap intervals (same resampled conversations)."""
    if subject not in by_system:
        return {}
    tables = {name: _Table(recs) for name, recs in by_system.items()}
    base = tables[subject]
    out: dict[str, Any] = {}
    for other in COMPARED:
        key = other.replace("-", "_")
        if other not in tables or tables[other].ids != base.ids:
            continue
        ta = tables[other]
        for metric, name, f in (
            ("latency_mean_s", f"latency_reduction_vs_{key}", lambda a, b: 1.0 - a / b),
            ("latency_question_turns_mean_s", f"question_latency_reduction_vs_{key}", lambda a, b: 1.0 - a / b),
            ("calls_per_question", f"calls_per_question_vs_{key}", lambda a, b: a / b),
            ("rouge_l", f"rouge_l_gain_vs_{key}", lambda a, b: a / b - 1.0),
            ("success_rate", f"success_gain_vs_{key}", lambda a, b: a - b),
        ):
            pa, pb = base.metrics()[metric], ta.metrics()[metric]
            sa, sb = base.metrics(boot)[metric], ta.metrics(boot)[metric]
            with np.errstate(divide="ignore", invalid="ignore"):
                out[name] = round(float(f(pa, pb)), 6)
                out[f"{name}_ci"] = _ci(np.nan_to_num(f(np.asarray(sa), np.asarray(sb))))
    if "oracle" in tables and tables["oracle"].ids == base.ids:
        out["latency_vs_oracle"] = round(float(base.metrics()["latency_mean_s"] / tables["oracle"].metrics()["latency_mean_s"]), 6)
    return out
