"""Consensus over several agents' answers: parse, normalise, vote, and stop fanning out early.

Voting is on normalised answer values (exact agreement is what a user checks); the consensus
dynamics of :mod:`rapo.theory` run on the answers' embeddings alongside, as diagnostics and as the
tie-break, so every vote also checks the step-size theorem.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from functools import lru_cache
import unicodedata
from decimal import Decimal, InvalidOperation
from typing import Awaitable, Callable, Generic, Protocol, Sequence, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from rapo.backends.dispatch import Dispatch, track
from rapo.theory import DynamicsResult, _run_checked, check_alpha, default_alpha, step_bound
from rapo.tokens import count_message_tokens
from rapo.types import Completion, Message, RapoError, trusted

__all__ = [
    "ABSTENTIONS",
    "Ask",
    "Deliberation",
    "FanOutResult",
    "VoteResult",
    "ballot",
    "consensus_weights",
    "deliberate",
    "extract_answer",
    "fan_out",
    "normalise_answer",
    "vote",
]

T = TypeVar("T")

# --- answers -----------------------------------------------------------------------------------

_ANSWER_LINE = re.compile(r"^\s*[*_#>\s]*answer[*_\s]*:[*_\s]*(.*?)[*_\s]*$", re.IGNORECASE)


def extract_answer(text: str) -> str:
    """The value after the last ``Answer:`` line; failing that the last non-empty line.

    Markdown emphasis around the label (``**Answer:**``) is tolerated because real models add it.
    """
    lines = text.splitlines()
    for line in reversed(lines):
        match = _ANSWER_LINE.match(line)
        if match:
            return match.group(1).strip()
    for line in reversed(lines):
        if line.strip():
            return line.strip()
    return ""


_NUM_TOKEN = re.compile(r"(?<![\w.,])([+-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[+-]?\.\d+)(?![\w]|[.,]\d)")
_DOLLAR = re.compile(r"(?<!\w)([+-]?)(?:us)?\$\s*([0-9][0-9,]*(?:\.[0-9]+)?|\.[0-9]+)")
_PERCENT = re.compile(r"([0-9])\s*%")
_UNIT_ALIASES = {"usd": "dollars", "dollar": "dollars", "percents": "percent", "pct": "percent"}
_ARTICLES = frozenset({"a", "an", "the"})
_EDGE = "".join(
    [".,;:!?\"'`*()[]{}<>_~|\\/", "\u2018\u2019\u201c\u201d\u00ab\u00bb\u2026\u2013\u2014"]
)
_DOT_DIGITS = frozenset(f".{d}" for d in "0123456789")
_YES_NO = re.compile(r"^(yes|no)(?:\s*[,.;:!\u2014\u2013-]|\s*$|\s+(?:it|that|this|they|he|she)\b)")
_BOOL_WORDS = {"true": "yes", "correct": "yes", "false": "no", "incorrect": "no"}


def _canonical_number(token: str) -> str:
    """One spelling per number: no separators, no trailing zeros, no '+', no '-0'."""
    try:
        value = Decimal(token.replace(",", ""))
    except InvalidOperation:  # pragma: no cover - the regex only passes valid numbers
        return token
    if value == 0:
        return "0"
    text = format(value.normalize(), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def _strip_edges(text: str) -> str:
    """Drop punctuation around the value, but keep a sign that belongs to a leading number."""
    text = text.strip().rstrip(_EDGE + "+-").strip()
    while text:
        head = text[0]
        starts_number = len(text) > 1 and (text[1] in "0123456789" or text[1:3] in _DOT_DIGITS)
        if head == "." and len(text) > 1 and text[1] in "0123456789":
            break  # ".5"
        if head.isspace() or head in _EDGE or (head in "+-" and not starts_number):
            text = text[1:]
        else:
            break
    return text.strip()


def _normalise_once(value: str) -> str:
    text = unicodedata.normalize("NFKC", value).lower()
    text = _DOLLAR.sub(lambda m: f"{m.group(1)}{m.group(2)} dollars", text)
    text = _PERCENT.sub(r"\1 percent", text)
    text = _strip_edges(" ".join(text.split()))
    match = _YES_NO.match(text)
    if match:
        return match.group(1)
    text = _NUM_TOKEN.sub(lambda m: _canonical_number(m.group(1)), text)
    words = [_UNIT_ALIASES.get(word, word) for word in text.split()]
    kept = [word for word in words if word not in _ARTICLES]
    text = " ".join(kept if kept else words)  # "A" as a multiple-choice answer survives
    text = _strip_edges(text)
    return _BOOL_WORDS.get(text, text)


@lru_cache(maxsize=262_144)
def normalise_answer(value: str) -> str:
    """Canonical form for voting, so "$1,200.00", "1200 dollars" and "1200.0 Dollars." agree.

    Lowercase; "$150" -> "150 dollars", "12%" -> "12 percent"; numbers without thousands
    separators or trailing zeros; "Yes." / "yes, it is" -> "yes" (and "true"/"false" -> yes/no);
    articles and surrounding punctuation dropped; whitespace collapsed. Idempotent.
    """
    text = value
    for _ in range(64):  # each pass only removes or canonicalises; it settles in a few
        nxt = _normalise_once(text)
        if nxt == text:
            break
        text = nxt
    return text


# --- voting -------------------------------------------------------------------------------------


def consensus_weights(vectors: np.ndarray, capabilities: np.ndarray) -> np.ndarray:
    """w_ij = sqrt(c_i c_j) * max(0, cos_ij), zero diagonal: capable agents that agree pull hardest."""
    vec = np.asarray(vectors, dtype=np.float64)
    cap = np.asarray(capabilities, dtype=np.float64)
    if vec.ndim != 2:
        raise RapoError(f"vectors must be an (m, d) array of answer embeddings, got shape {vec.shape}")
    if cap.shape != (vec.shape[0],):
        raise RapoError(
            f"capabilities must have one entry per answer ({vec.shape[0]}), got shape {cap.shape}"
        )
    caps = cap.tolist()  # one per answer: a few numbers, checked faster in Python than by ufuncs
    if not (np.isfinite(vec).all() and all(math.isfinite(c) for c in caps)):
        raise RapoError("vectors and capabilities must be finite numbers")
    if not all(c >= 0 for c in caps):
        raise RapoError("capabilities must be >= 0 (they are success probabilities)")
    norms = np.sqrt(np.add.reduce(vec * vec, axis=1))  # np.linalg.norm(vec, axis=1), minus its overhead
    if (norms > 0).all():  # the same quotients as the masked divide below, without its mask and buffer
        unit = vec / norms[:, None]
    else:
        unit = np.divide(vec, norms[:, None], out=np.zeros_like(vec), where=norms[:, None] > 0)
    cos = np.clip(unit @ unit.T, 0.0, None)
    root = np.sqrt(cap)
    w = np.outer(root, root) * cos
    w = 0.5 * (w + w.T)  # exact symmetry, whatever the rounding of the product
    np.fill_diagonal(w, 0.0)
    return w


class VoteResult(BaseModel):
    """The winning answer, how strongly it was backed, and the dynamics that ran alongside."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    winner: int  # representative agent: the most capable member of the winning cluster
    value: str  # normalised
    agreement: float  # winner support / total support
    support: dict[str, float]
    clusters: dict[str, list[int]]
    dynamics: DynamicsResult


def _closeness(final: np.ndarray, cap: np.ndarray) -> np.ndarray:
    """Cosine of each final dynamics vector to the capability-weighted centroid."""
    centroid = cap @ final / cap.sum()
    norms = np.linalg.norm(final, axis=1) * np.linalg.norm(centroid)
    dots = final @ centroid
    return np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)


def vote(
    values: list[str], vectors: np.ndarray, capabilities: np.ndarray, lam: float = 1.0,
    alpha: float | None = None,
) -> VoteResult:
    """Capability-weighted vote over normalised values; ties go to the cluster nearest the consensus.

    Empty answers count in the total (an agent that said nothing did not agree) but cannot win
    unless every answer is empty. If every capability is 0, each agent counts 1.
    """
    if not values:
        raise RapoError("vote needs at least one answer")
    vec = np.asarray(vectors, dtype=np.float64)
    cap = np.asarray(capabilities, dtype=np.float64)
    if vec.ndim != 2 or vec.shape[0] != len(values):
        raise RapoError(
            f"vectors must have one row per answer: {len(values)} answers, shape {vec.shape}"
        )
    w = consensus_weights(vec, cap)  # validates capabilities
    if cap.sum() == 0:
        cap = np.ones_like(cap)
    # The dynamics only move vectors within the span of the answers: run them in coordinates of an
    # orthonormal basis of that span (m x m instead of m x d; norms, residuals and energies equal).
    lam_v = float(lam)
    if not (math.isfinite(lam_v) and lam_v >= 0):
        raise RapoError(f"lambda must be a finite number >= 0, got {lam!r}")
    lap = np.diag(w.sum(axis=1)) - w
    if bool((vec == vec[0]).all()):
        # Identical answers are already at the fixed point: the first step moves nothing.
        L = lam_v + float(np.linalg.eigvalsh(lap)[-1]) if len(values) > 1 else lam_v
        L = max(L, lam_v)
        if alpha is not None:
            check_alpha(alpha, L)
        dynamics = trusted(DynamicsResult, x=vec.copy(), alpha=alpha or default_alpha(L), L=L, bound=step_bound(L),
                           residuals=[0.0], energies=[0.0, 0.0], iterations=1, converged=True)
    else:
        basis, coords = np.linalg.qr(vec.T)  # vec.T = basis @ coords
        small = _run_checked(lap, coords.T.copy(), coords.T.copy(), lam_v, alpha, 200, 1e-6)
        dynamics = small.model_copy(update={"x": small.x @ basis.T})
    normalised = [normalise_answer(v) for v in values]
    clusters: dict[str, list[int]] = {}
    for i, key in enumerate(normalised):
        clusters.setdefault(key, []).append(i)
    total = float(cap.sum())
    support = {key: float(cap[idx].sum()) for key, idx in clusters.items()}
    candidates = [key for key in clusters if key] or list(clusters)
    top = max(support[key] for key in candidates)
    tied = [key for key in candidates if math.isclose(support[key], top, rel_tol=1e-12, abs_tol=1e-12)]
    value = tied[0]
    if len(tied) > 1:  # the tie-break is the only use of the dynamics' closeness
        closeness = _closeness(dynamics.x, cap)
        # max() keeps the first maximum, and clusters are in first-appearance order: lowest index wins.
        value = max(tied, key=lambda key: float(closeness[clusters[key]].mean()))
    members = clusters[value]
    winner = members[int(np.argmax(cap[members]))]
    return trusted(
        VoteResult,
        winner=winner,
        value=value,
        agreement=support[value] / total,
        support=support,
        clusters=clusters,
        dynamics=dynamics,
    )


# --- fan-out with early stop ----------------------------------------------------------------------


class FanOutResult(BaseModel, Generic[T]):
    """What a fan-out counted; `latency_s` is the time the caller waited on the virtual timeline."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    results: list[T | None]  # aligned with calls; None when cancelled, failed or not counted
    used: list[int]  # indices counted: latency <= the deciding latency
    stopped_early: bool  # agreement reached before every call was counted
    decided: bool  # agreement reached at all
    value: str | None  # the leading normalised value (None if nothing answered)
    agreement: float  # its weight / the weight of all calls
    latency_s: float
    cancelled: list[int]
    errors: dict[int, str]


def _decide(
    order: list[tuple[float, int, str]], weights: Sequence[float], need: float
) -> tuple[int, str | None, float]:
    """Walk finished results in latency order; return (prefix length, leading value, its weight).

    Prefix length is 0 when no prefix reaches `need`; then value/weight describe all of `order`.
    Leading value: most weight, ties to the value that got its first vote earlier.
    """
    tally: dict[str, float] = {}
    lead: str | None = None
    for pos, (_, idx, value) in enumerate(order, start=1):
        if not value:
            continue
        tally[value] = tally.get(value, 0.0) + float(weights[idx])
        if lead is None or tally[value] > tally[lead]:
            lead = value
        if tally[lead] >= need:
            return pos, lead, tally[lead]
    return 0, lead, tally.get(lead, 0.0) if lead is not None else 0.0


async def fan_out(
    calls: Sequence[Callable[[], Awaitable[T]]],
    *,
    value_of: Callable[[T], str],
    latency_of: Callable[[T], float],
    weights: Sequence[float],
    threshold: float,
) -> FanOutResult[T]:
    """Run calls concurrently and stop as soon as one normalised answer carries `threshold` of the weight.

    The total is the weight of *all* calls, finished or not, so an early decision cannot be
    overturned by the calls it cancels. Results are ordered by `latency_of`, not by completion in
    the event loop, because a simulated backend reports virtual latency and returns instantly.
    A call that raises is recorded in `errors` and casts no vote; if every call raises, the first
    (lowest index) exception is raised.
    """
    n = len(calls)
    if n == 0:
        raise RapoError("fan_out needs at least one call")
    w = np.asarray(weights, dtype=np.float64)
    weight = w.tolist() if w.ndim == 1 else []  # Python floats: _decide reads them one by one
    if w.shape != (n,) or not all(math.isfinite(x) and x >= 0 for x in weight):
        raise RapoError(f"weights must be {n} finite numbers >= 0, one per call, got {list(weights)!r}")
    if not (math.isfinite(threshold) and 0 <= threshold <= 1):
        raise RapoError(f"threshold is a fraction of the total weight in [0, 1], got {threshold!r}")
    total = float(w.sum())
    need = threshold * total

    async def invoke(call: Callable[[], Awaitable[T]]) -> T:
        return await call()

    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    tasks = [loop.create_task(invoke(call)) for call in calls]
    index = {task: i for i, task in enumerate(tasks)}
    finished: dict[int, T] = {}
    order: list[tuple[float, int, str]] = []
    failures: dict[int, BaseException] = {}
    pending: set[asyncio.Future[T]] = set(tasks)
    prefix, lead, lead_weight = 0, None, 0.0
    try:
        while pending and not prefix:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in sorted(done, key=index.__getitem__):
                i = index[task]
                if task.cancelled():
                    failures[i] = asyncio.CancelledError(f"call {i} was cancelled from outside")
                    continue
                exc = task.exception()
                if exc is not None:
                    failures[i] = exc
                    continue
                result = task.result()
                latency = float(latency_of(result))
                if not math.isfinite(latency) or latency < 0:
                    raise RapoError(f"latency_of gave {latency!r} for call {i}: need seconds >= 0")
                finished[i] = result
                order.append((latency, i, normalise_answer(value_of(result))))
            order.sort(key=lambda item: (item[0], item[1]))
            prefix, lead, lead_weight = _decide(order, weight, need)
            # A decision at latency t stands only if no call still running can report less than t.
            # A running call has taken at least the elapsed wall time, which bounds real latencies;
            # latencies reported by a server (a simulated model behind HTTP) carry no such bound
            # until every call is back, so the decision then waits, as the in-process run does.
            if prefix and pending and order[prefix - 1][0] > time.perf_counter() - started + 1e-3:
                prefix = 0
    finally:
        still_running = [task for task in tasks if not task.done()]
        for task in still_running:
            task.cancel()
        if still_running:
            await asyncio.gather(*still_running, return_exceptions=True)

    errors = {i: (str(exc) or type(exc).__name__) for i, exc in sorted(failures.items())}
    if not finished:
        raise failures[min(failures)]
    cancelled = sorted(index[task] for task in still_running)
    decided = prefix > 0
    counted = order[:prefix] if decided else order
    used = sorted(i for _, i, _ in counted)
    results: list[T | None] = [finished[i] if i in used else None for i in range(n)]
    return trusted(
        FanOutResult,
        results=results,
        used=used,
        stopped_early=decided and len(used) + len(errors) < n,
        decided=decided,
        value=lead,
        agreement=lead_weight / total if total > 0 else 0.0,
        latency_s=max(item[0] for item in counted),
        cancelled=cancelled,
        errors=errors,
    )


# --- deliberation: who is asked, in which order, and when to stop ---------------------------------

ABSTENTIONS = frozenset({"unknown", "i don't know", "i do not know", "not given", "n/a", "none"})


def ballot(value: str) -> str:
    """The answer an agent votes for, normalised; an abstention ("unknown", "I don't know") casts none."""
    norm = normalise_answer(value)
    return "" if norm in ABSTENTIONS else norm


class Ask(Protocol):
    """How a deliberation reaches one candidate: its prompt for a round, and the call itself."""

    def prompt(self, candidate: int, round_no: int, peers: str | None) -> list[Message]: ...

    async def call(self, candidate: int, messages: list[Message], round_no: int) -> Completion: ...


class DeliberationRound(BaseModel):
    """One round: who was asked, what each said (None: cancelled or not counted), and the vote."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    asked: list[int]
    values: dict[int, str | None]
    vote: VoteResult
    stopped_early: bool
    latency_s: float


class Deliberation(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    winner: int
    value: str
    agreement: float
    rounds: list[DeliberationRound]
    answers: dict[int, Completion]  # the last counted reply of each candidate
    prompts: dict[int, list[Message]]  # the last prompt each candidate was sent
    calls: int  # requests that left for an endpoint (one cancelled in rapo's own queue is not one)
    prompt_tokens: int
    output_tokens: int
    latency_s: float
    errors: list[tuple[int, str]]
    unanswered_calls: int = 0  # of `calls`, sent but cancelled or failed before an answer came
    unanswered_prompt_tokens: int = 0  # their prompts, which the endpoint still read


def peers_note(answers: Sequence[tuple[str, str]]) -> str:
    """What each agent of a split vote is shown before the next round."""
    return ("Other agents answered: " + "; ".join(f"{name}: {v}" for name, v in answers)
            + ". Check the facts again and give your own final answer.")


async def deliberate(
    ask: Ask,
    weights: Sequence[float],
    *,
    threshold: float,
    max_rounds: int,
    embed: Callable[[list[str]], np.ndarray],
    names: Sequence[str],
    start: int | None = None,
    lam: float = 1.0,
    alpha: float | None = None,
    on_round: Callable[[DeliberationRound], None] | None = None,
) -> Deliberation:
    """Ask candidates (best first) until enough capability weight agrees; the shared vote of rapo and
    of the equal-budget baselines.

    ``start=None`` asks every candidate at once and stops as soon as `threshold` of the total weight
    agrees (`fan_out`). ``start=k`` asks the first k, then one more at a time while the weight of the
    leading answer among those asked is under `threshold` or (with two or more asked) only one agent
    backs it: a vote costs a third call only where the first two disagree. A round that ends split
    is followed, up to `max_rounds`, by one where every candidate sees the others' answers.
    """
    n = len(weights)
    if n == 0:
        raise RapoError("deliberate needs at least one candidate")
    w = [float(x) for x in weights]
    rounds: list[DeliberationRound] = []
    answers: dict[int, Completion] = {}
    prompts: dict[int, list[Message]] = {}
    errors: list[tuple[int, str]] = []
    calls = ptok = otok = lost_calls = lost_tokens = 0
    latency = 0.0
    peers: str | None = None

    async def tracked(i: int, messages: list[Message], round_no: int, d: Dispatch) -> Completion:
        with track(d):  # the backend says whether the request left its client-side queue
            return await ask.call(i, messages, round_no)

    def unanswered(messages: list[Message], d: Dispatch) -> None:
        nonlocal calls, ptok, lost_calls, lost_tokens
        if d.sent:  # cancelled in flight, or failed: its prompt was still sent and read
            n_tok = count_message_tokens(m.content for m in messages)
            calls, ptok, lost_calls, lost_tokens = calls + 1, ptok + n_tok, lost_calls + 1, lost_tokens + n_tok

    result: VoteResult | None = None
    counted: list[int] = []
    for round_no in range(max_rounds):
        sent = {i: ask.prompt(i, round_no, peers) for i in range(n)} if start is None or round_no else {}
        got: dict[int, Completion] = {}
        if start is None or round_no:  # everyone at once, early stop by latency order
            order = list(range(n))
            left = [Dispatch() for _ in order]
            out = await fan_out([(lambda i=i: tracked(i, sent[i], round_no, left[i])) for i in order],
                                value_of=lambda c: ballot(extract_answer(c.text)), latency_of=lambda c: c.latency_s,
                                weights=w, threshold=threshold)
            errors += [(order[i], msg) for i, msg in out.errors.items()]
            for i in order:
                res = out.results[i]
                if res is not None:
                    got[i] = res
                    calls, ptok, otok = calls + 1, ptok + res.prompt_tokens, otok + res.output_tokens
                else:
                    unanswered(sent[i], left[i])
            round_latency, stopped = out.latency_s, out.stopped_early
        else:  # the first `start`, then one at a time while they disagree
            round_latency, stopped, asked = 0.0, False, 0
            while asked < n:
                batch = list(range(asked, min(n, max(asked + 1, start))))
                asked = batch[-1] + 1
                for i in batch:
                    sent[i] = ask.prompt(i, round_no, peers)
                left = {i: Dispatch() for i in batch}
                outs = await asyncio.gather(*(tracked(i, sent[i], round_no, left[i]) for i in batch),
                                            return_exceptions=True)
                for i, res in zip(batch, outs):
                    if isinstance(res, BaseException):
                        if not isinstance(res, Exception):
                            raise res
                        errors.append((i, str(res) or type(res).__name__))
                        unanswered(sent[i], left[i])
                        continue
                    got[i] = res
                    calls, ptok, otok = calls + 1, ptok + res.prompt_tokens, otok + res.output_tokens
                ok = [res for res in outs if not isinstance(res, BaseException)]
                round_latency += max((c.latency_s for c in ok), default=0.0)
                if not got and asked >= n:
                    raise next(r for r in outs if isinstance(r, BaseException))  # type: ignore[misc]
                tally: dict[str, float] = {}
                for i, c in got.items():
                    if (b := ballot(extract_answer(c.text))):
                        tally[b] = tally.get(b, 0.0) + w[i]
                asked_weight = sum(w[:asked]) or 1.0
                lead = max(tally, key=tally.__getitem__) if tally else None
                backers = sum(1 for c in got.values() if lead and ballot(extract_answer(c.text)) == lead)
                if lead is not None and tally[lead] >= threshold * asked_weight and (asked == 1 or backers >= 2):
                    stopped = asked < n
                    break
        counted = sorted(got)
        if not counted:
            raise RapoError("no candidate answered")
        values = [ballot(extract_answer(got[i].text)) for i in counted]
        result = vote(values, embed(values), np.asarray([w[i] for i in counted]), lam=lam, alpha=alpha)
        answers.update(got)
        prompts.update({i: sent[i] for i in counted})
        latency += round_latency
        rnd = DeliberationRound(asked=sorted(sent), values={i: (values[counted.index(i)] if i in got else None)
                                                            for i in sorted(sent)},
                                vote=result, stopped_early=stopped, latency_s=round_latency)
        rounds.append(rnd)
        if on_round is not None:
            on_round(rnd)
        agreement = result.agreement
        if start is not None and not round_no:  # the incremental round decides on those it asked
            agreement = result.support.get(result.value, 0.0) / (sum(w[i] for i in sorted(sent)) or 1.0)
        if agreement >= threshold:
            break
        peers = peers_note([(names[i], v) for i, v in zip(counted, values)])
    assert result is not None
    winner = counted[result.winner]
    return Deliberation(winner=winner, value=result.value, agreement=float(agreement), rounds=rounds,
                        answers=answers, prompts=prompts, calls=calls, prompt_tokens=ptok, output_tokens=otok,
                        latency_s=latency, errors=errors, unanswered_calls=lost_calls,
                        unanswered_prompt_tokens=lost_tokens)
