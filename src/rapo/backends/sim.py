"""A simulated language model that reads nothing but its prompt.

It exists so the benchmark runs in seconds without a GPU while still punishing what real models
punish: facts missing from the prompt, long prompts ("lost in the middle"), weak agent/skill
matches. It is a Backend like any other and has no channel to the generator's ground truth: every
decision is a function of (run seed, model name, the messages, sample index) only.

Reading rules (the sim's "understanding" is the benchmark's two languages of
docs/conversation-language.md, the controlled one and the everyday one, read with rapo.bench.language
and rapo.bench.natural; it reads nothing else, so a real model is the test of other English):

- the question is the last question sentence of the LAST user message;
- facts are statements found in system and user messages; assistant messages are NOT read for
  facts (the sim trusts what users state, not what earlier replies claimed); for a subject
  stated several times, the latest occurrence in message order wins.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
from pydantic import BaseModel, Field

from rapo.bench.language import (
    ATTRIBUTES,
    KINDS,
    ParsedQuestion,
    entity_display,
    format_number,
    normalise_answer,
    parse_number,
    parse_question,
    parse_statements,
    solve,
    value_entity,
)
from rapo.bench.natural import parse_natural_question, read_facts
from rapo.tokens import _TOKEN, count_message_tokens, count_tokens
from rapo.types import Completion, Message, RapoError


class SimProfile(BaseModel):
    """Latency, memory and routing behaviour of a simulated model.

    Parameters
    ----------
    ttft_s: time to first token (queueing inside the server, scheduling), seconds.
    prefill_tok_s: prompt tokens processed per second.
    decode_tok_s: output tokens generated per second (one sequence).
    slots: concurrent requests one backend instance serves; more wait (real clock only).
    recall_knee_tokens: prompt length up to which every present fact is recalled.
    recall_slope_per_1k: recall lost per 1,000 prompt tokens past the knee, at the prompt's ends.
    recall_middle_dip_per_1k: extra loss per 1,000 tokens past the knee at the middle of the
        prompt, scaled by 4p(1-p) for a fact at relative position p (the U shape of Liu et al. 2023).
    recall_floor: recall never falls below this.
    abstain_prob: when a needed fact is missing or not recalled, the chance the model says it
        lacks the information instead of guessing.
    route_err_base: chance a routing decision picks a wrong agent on a short prompt.
    route_err_per_1k: added routing error per 1,000 prompt tokens past the knee.
    route_err_max: cap on the routing error.
    error_correlation: the chance that an agent's reasoning slip is drawn from a draw shared by every
        agent that reads the same question over the same facts, rather than from its own: then agents
        err on the same questions and give the same wrong value, as real models given the same
        prompt do. 0 keeps every agent's errors independent.
    """

    name: str
    ttft_s: float = Field(0.2, ge=0)
    prefill_tok_s: float = Field(4000.0, gt=0)
    decode_tok_s: float = Field(50.0, gt=0)
    slots: int = Field(16, ge=1)
    recall_knee_tokens: int = Field(1500, ge=0)
    recall_slope_per_1k: float = Field(0.05, ge=0)
    recall_middle_dip_per_1k: float = Field(0.05, ge=0)
    recall_floor: float = Field(0.5, ge=0, le=1)
    abstain_prob: float = Field(0.3, ge=0, le=1)
    route_err_base: float = Field(0.02, ge=0, le=1)
    route_err_per_1k: float = Field(0.03, ge=0)
    route_err_max: float = Field(0.4, ge=0, le=1)
    error_correlation: float = Field(0.0, ge=0, le=1)

    def recall(self, prompt_tokens: int, positions: np.ndarray) -> np.ndarray:
        """Probability of recalling a present fact at relative positions ``positions`` (0..1)."""
        p = np.clip(np.asarray(positions, dtype=float), 0.0, 1.0)
        excess = max(0.0, prompt_tokens - self.recall_knee_tokens) / 1000.0
        loss = excess * (self.recall_slope_per_1k + self.recall_middle_dip_per_1k * 4.0 * p * (1.0 - p))
        return np.where(excess > 0, np.maximum(self.recall_floor, 1.0 - loss), 1.0)

    def routing_error(self, prompt_tokens: int) -> float:
        excess = max(0.0, prompt_tokens - self.recall_knee_tokens) / 1000.0
        return float(min(self.route_err_max, self.route_err_base + self.route_err_per_1k * excess))

    def latency(self, prompt_tokens: int, output_tokens: int) -> float:
        return self.ttft_s + prompt_tokens / self.prefill_tok_s + output_tokens / self.decode_tok_s


PROFILES: dict[str, SimProfile] = {
    # A mid-size open model (7-14B class) served by vLLM on one GPU.
    "default": SimProfile(name="default"),
    # Same serving, but memory and routing never degrade with length: isolates latency effects.
    "no-penalty": SimProfile(
        name="no-penalty",
        recall_slope_per_1k=0.0,
        recall_middle_dip_per_1k=0.0,
        recall_floor=1.0,
        route_err_base=0.02,
        route_err_per_1k=0.0,
    ),
    # A small model on modest hardware: earlier knee, steeper loss, slower decode, fewer slots.
    "small-model": SimProfile(
        name="small-model",
        ttft_s=0.3,
        prefill_tok_s=2500.0,
        decode_tok_s=30.0,
        slots=8,
        recall_knee_tokens=800,
        recall_slope_per_1k=0.08,
        recall_middle_dip_per_1k=0.08,
        recall_floor=0.35,
        abstain_prob=0.2,
        route_err_base=0.05,
        route_err_per_1k=0.06,
        route_err_max=0.6,
    ),
    # The default model, but agents' mistakes on the same question agree half of the time: a vote
    # then gains less, as it does with real models that share training data.
    "correlated": SimProfile(name="correlated", error_correlation=0.5),
    # A hosted API: network and queueing in the first token, fast prefill, long effective context.
    "api": SimProfile(
        name="api",
        ttft_s=0.6,
        prefill_tok_s=20000.0,
        decode_tok_s=80.0,
        slots=64,
        recall_knee_tokens=4000,
        recall_slope_per_1k=0.02,
        recall_middle_dip_per_1k=0.03,
        recall_floor=0.6,
        abstain_prob=0.4,
        route_err_base=0.01,
        route_err_per_1k=0.01,
        route_err_max=0.2,
    ),
}

_TYPES = ("lookup", "arithmetic", "comparison", "aggregation", "deduction", "verification")

DEFAULT_SKILLS: dict[str, dict[str, float]] = {
    # the benchmark team: each agent is best at something, none is perfect, the generalist is flat
    "sim-retriever": {
        "lookup": 0.98, "arithmetic": 0.78, "comparison": 0.88,
        "aggregation": 0.8, "deduction": 0.84, "verification": 0.95,
    },
    "sim-calculator": {
        "lookup": 0.9, "arithmetic": 0.98, "comparison": 0.96,
        "aggregation": 0.97, "deduction": 0.8, "verification": 0.86,
    },
    "sim-reasoner": {
        "lookup": 0.9, "arithmetic": 0.84, "comparison": 0.93,
        "aggregation": 0.85, "deduction": 0.97, "verification": 0.97,
    },
    "sim-generalist": {
        "lookup": 0.93, "arithmetic": 0.9, "comparison": 0.91,
        "aggregation": 0.88, "deduction": 0.88, "verification": 0.9,
    },
}  # fmt: skip

_TYPE_KEYWORDS: dict[str, tuple[str, ...]] = {
    "lookup": ("lookup", "look up", "look-up", "retriev", "recall", "fact", "memory", "remember"),
    "arithmetic": ("arithmetic", "calculat", "math", "numer", "comput"),
    "comparison": ("compar", "rank", "higher", "lower"),
    "aggregation": ("aggregat", "total", "largest", "smallest", "sum "),
    "deduction": ("deduc", "reason", "logic", "infer", "chain", "multi-step", "multi-hop"),
    "verification": ("verif", "check", "confirm", "true", "valid"),
}

_AGENT_LINE = re.compile(r"^\s*[-*]\s*([A-Za-z0-9_.\-]+)\s*:\s*(\S.*)$", re.M)
_ROUTING_ASK = re.compile(r"(?i)which agent|agent name|name of (?:the|one) agent|one agent|agent's name")


def _stable_u64(*parts: object) -> int:
    data = json.dumps(parts, ensure_ascii=False, separators=(",", ":")).encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def hashed_skill(model: str, qtype: str) -> float:
    """A deterministic skill in [0.8, 0.95] for a model the table does not know."""
    return 0.8 + 0.15 * (_stable_u64("skill", model, qtype) / 2.0**64)


@dataclass
class _Fact:
    value: str
    position: float


_REPLIES: dict[tuple, str] = {}
_REPLIES_MAX = 200_000


class SimBackend:
    """The simulated model as a Backend. See the module docstring for what it reads.

    ``clock="virtual"`` returns at once with the computed latency; ``"real"`` holds one of
    ``profile.slots`` slots and sleeps ``latency * time_scale`` seconds, and reports the measured
    time (queueing included) divided by ``time_scale``, i.e. in model seconds.
    """

    def __init__(
        self,
        profile: str | SimProfile = "default",
        seed: int = 0,
        clock: Literal["virtual", "real"] = "virtual",
        time_scale: float = 1.0,
        skills: dict[str, dict[str, float]] | None = None,
    ) -> None:
        if isinstance(profile, str):
            if profile not in PROFILES:
                raise RapoError(f"unknown simulated-model profile {profile!r}; choose from {sorted(PROFILES)}")
            profile = PROFILES[profile]
        if clock not in ("virtual", "real"):
            raise RapoError(f"clock must be 'virtual' or 'real', got {clock!r}")
        if time_scale <= 0:
            raise RapoError(f"time_scale must be > 0, got {time_scale}")
        self.profile = profile
        self.seed = seed
        self.clock = clock
        self.time_scale = time_scale
        self.skills: dict[str, dict[str, float]] = {k: dict(v) for k, v in DEFAULT_SKILLS.items()}
        for agent, table in (skills or {}).items():
            bad = {t: p for t, p in table.items() if not 0.0 <= p <= 1.0}
            if bad:
                raise RapoError(f"skills for {agent!r} must be probabilities in [0, 1], got {bad}")
            self.skills.setdefault(agent, {}).update(table)
        self._slots: asyncio.Semaphore | None = None
        self._identity = (self.seed, self.profile.model_dump_json(), json.dumps(self.skills, sort_keys=True))

    def skill(self, model: str, qtype: str) -> float:
        table = self.skills.get(model, {})
        return table[qtype] if qtype in table else hashed_skill(model, qtype)

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        model: str,
        max_tokens: int | None = None,
        sample: int = 0,
    ) -> Completion:
        if not messages:
            raise RapoError("SimBackend.complete needs at least one message")
        text = self.respond(messages, model=model, sample=sample)
        if max_tokens is not None and count_tokens(text) > max_tokens:
            toks = list(_TOKEN.finditer(text))
            text = text[: toks[max_tokens - 1].end()] if max_tokens > 0 else ""
        prompt_tokens = count_message_tokens(m.content for m in messages)
        output_tokens = count_tokens(text)
        latency = self.profile.latency(prompt_tokens, output_tokens)
        if self.clock == "real":
            if self._slots is None:
                self._slots = asyncio.Semaphore(self.profile.slots)
            start = time.perf_counter()
            async with self._slots:
                await asyncio.sleep(latency * self.time_scale)
            latency = (time.perf_counter() - start) / self.time_scale
        return Completion(
            text=text, prompt_tokens=prompt_tokens, output_tokens=output_tokens, latency_s=latency, model=model
        )

    async def aclose(self) -> None:
        return None

    # ------------------------------------------------------------------ the model

    def rng_for(self, messages: Sequence[Message], model: str, sample: int) -> np.random.Generator:
        h = hashlib.blake2b(digest_size=8)
        h.update(json.dumps(["sim", self.seed, model, sample]).encode())
        for m in messages:  # streamed: no JSON of the whole prompt (the hot path of long prompts)
            h.update(b"\x1e" + m.role.encode() + b"\x1f" + (m.name or "").encode() + b"\x1f")
            h.update(m.content.encode())
        return np.random.default_rng(int.from_bytes(h.digest(), "little"))

    def respond(self, messages: Sequence[Message], *, model: str, sample: int = 0) -> str:
        """The reply text: a pure function of (seed, model, messages, sample), so it is memoised
        process-wide (benchmark ablations send many identical prompts)."""
        key = (self._identity, model, sample, tuple((m.role, m.name, m.content) for m in messages))
        hit = _REPLIES.get(key)
        if hit is None:
            hit = self._respond(messages, model=model, sample=sample)
            if len(_REPLIES) >= _REPLIES_MAX:
                _REPLIES.clear()
            _REPLIES[key] = hit
        return hit

    def _respond(self, messages: Sequence[Message], *, model: str, sample: int = 0) -> str:
        rng = self.rng_for(messages, model, sample)
        users = [m for m in messages if m.role == "user"]
        last_user = users[-1] if users else messages[-1]
        prompt_tokens = count_message_tokens(m.content for m in messages)
        system_text = "\n".join(m.content for m in messages if m.role == "system")
        agents = _routing_agents(system_text + "\n" + last_user.content)
        question = _question(last_user.content)
        if agents:
            if question is None:
                question = next((q for m in reversed(users) if (q := _question(m.content))), None)
            return self._route(agents, question, prompt_tokens, rng)
        if question is None:
            if _asks(last_user.content):  # a question it cannot read: an abstention, not a reply to a statement
                return _cannot_parse(rng)
            return _acknowledge(last_user.content, rng)
        return self._answer(messages, question, model, prompt_tokens, rng)

    def _facts(self, messages: Sequence[Message]) -> dict[tuple[str, str], _Fact]:
        """Facts stated in system and user messages, the latest statement of a subject winning, each at
        its relative position in the prompt."""
        total = sum(len(m.content) + 1 for m in messages) or 1
        read = [m.role in ("system", "user") for m in messages]
        return {(f.attr, f.entity): _Fact(f.value, f.offset / total)
                for f in read_facts([m.content for m in messages], read)}

    def _answer(
        self,
        messages: Sequence[Message],
        q: ParsedQuestion,
        model: str,
        prompt_tokens: int,
        rng: np.random.Generator,
    ) -> str:
        facts = self._facts(messages)
        keys = list(facts)
        positions = np.array([facts[k].position for k in keys])
        recalled = dict(zip(keys, rng.random(len(keys)) < self.profile.recall(prompt_tokens, positions)))
        failed: list[tuple[str, str]] = []
        memo: dict[tuple[str, str], str | None] = {}

        def lookup(attr: str, entity: str) -> str | None:
            key = (attr, entity)
            if key not in memo:
                fact = facts.get(key)
                if fact is not None and recalled[key]:
                    memo[key] = fact.value
                else:
                    failed.append(key)
                    memo[key] = _guess_fact(attr, entity, fact.value if fact else None, facts, rng)
            return memo[key]

        sol = solve(q, lookup)
        if sol is None or (failed and rng.random() < self.profile.abstain_prob):
            attr, entity = failed[0] if failed else q.subjects[0]
            return _abstain(attr, entity, rng)
        answer = sol.answer
        if not failed:
            draw, wrong_rng = rng.random(), rng
            corr = self.profile.error_correlation
            if corr > 0 and rng.random() < corr:  # this slip is the one every agent shares
                wrong_rng = self._shared_rng(q, sol.used)
                draw = float(wrong_rng.random())
            if draw >= self.skill(model, q.type):
                answer = _wrong_answer(answer, q, facts, wrong_rng)
        return _rationale(q, sol.used, answer, rng)

    def _shared_rng(self, q: ParsedQuestion, used: list[tuple[str, str, str]]) -> np.random.Generator:
        """The draw every agent shares on this question over these facts (the correlated profile)."""
        return np.random.default_rng(_stable_u64("shared-slip", self.seed, q.type, q.subjects, q.chain, q.operator,
                                                 q.constant, q.claimed, sorted(used)))

    def _route(
        self,
        agents: list[tuple[str, str]],
        q: ParsedQuestion | None,
        prompt_tokens: int,
        rng: np.random.Generator,
    ) -> str:
        names = [a for a, _ in agents]
        if q is not None:
            words = _TYPE_KEYWORDS[q.type]
            scores = np.array([sum(w in desc.lower() for w in words) for _, desc in agents])
            best = int(np.argmax(scores))
        else:
            best = next((i for i, (_, d) in enumerate(agents) if "general" in d.lower()), 0)
        if len(names) > 1 and rng.random() < self.profile.routing_error(prompt_tokens):
            others = [i for i in range(len(names)) if i != best]
            best = int(others[int(rng.integers(len(others)))])
        return f"Agent: {names[best]}"


# ---------------------------------------------------------------------- helpers (no state)


def _question(text: str) -> ParsedQuestion | None:
    """The last question of a message, in either of the benchmark's languages."""
    return parse_question(text) or parse_natural_question(text)


def _routing_agents(text: str) -> list[tuple[str, str]]:
    """The agents listed in a routing prompt ('- name: description' lines plus a request for one
    agent name); empty when the text is not a routing prompt."""
    if "agent" not in text.lower() or not _ROUTING_ASK.search(text):  # cheap test first
        return []
    seen: dict[str, str] = {}
    for m in _AGENT_LINE.finditer(text):
        name = m.group(1)
        if name.lower() not in ("answer", "agent", "note", "question", "task") and name not in seen:
            seen[name] = m.group(2)
    return list(seen.items()) if len(seen) >= 2 else []


def _choice(rng: np.random.Generator, items: Sequence[str]) -> str:
    return items[int(rng.integers(len(items)))]


def _near_number(n: int, rng: np.random.Generator) -> int:
    span = max(2, int(abs(n) * 0.25))
    delta = int(rng.integers(1, span + 1)) * (1 if rng.random() < 0.5 else -1)
    out = n + delta
    return out if out > 0 else n + abs(delta)


def _other_entity(kind: str, avoid: set[str], facts: dict[tuple[str, str], _Fact], rng: np.random.Generator) -> str:
    """Another entity of ``kind`` mentioned in the prompt, else a made-up neighbour; display form."""
    mentioned = sorted({e for (_, e) in facts if e.split(" ", 1)[0] == kind} - avoid)
    if mentioned:
        return entity_display(_choice(rng, mentioned))
    spec = KINDS.get(kind)
    letter = _choice(rng, spec.letters) if spec and spec.letters else "X"
    return f"{kind} {letter}{int(rng.integers(10, 999))}"


def _guess_fact(
    attr: str, entity: str, true_value: str | None, facts: dict[tuple[str, str], _Fact], rng: np.random.Generator
) -> str:
    """A plausible wrong value for a fact the model could not use: a nearby number with the right
    unit, a near-duplicate fact's value, another entity or name."""
    spec = ATTRIBUTES[attr]
    if spec.kind == "number":
        if true_value is not None:
            n = parse_number(true_value)
            if n is not None:
                return format_number(_near_number(n[0], rng), n[1])
        confusable = sorted({f.value for (a, e), f in facts.items() if a == attr and e != entity})
        if confusable and rng.random() < 0.5:
            return _choice(rng, confusable)
        return format_number(int(rng.integers(spec.lo, spec.hi + 1)), spec.unit)
    if spec.kind == "name":
        names = [n for n in KINDS[spec.target].names if true_value is None or n != true_value]
        return _choice(rng, names)
    avoid = {value_entity(attr, true_value) or ""} if true_value else set()
    return _other_entity(spec.target, avoid, facts, rng)


def _wrong_answer(answer: str, q: ParsedQuestion, facts: dict[tuple[str, str], _Fact], rng: np.random.Generator) -> str:
    """A plausible answer that differs from ``answer`` (a reasoning slip with the facts in hand)."""
    norm = normalise_answer(answer)
    if norm in ("yes", "no"):
        return "no" if norm == "yes" else "yes"
    n = parse_number(answer)
    if n is not None:
        return format_number(_near_number(n[0], rng), n[1])
    if q.type in ("comparison", "aggregation"):
        others = [entity_display(e) for _, e in q.subjects if normalise_answer(entity_display(e)) != norm]
        if others:
            return _choice(rng, others)
    if answer in {name for k in KINDS.values() for name in k.names}:
        kind = next(k for k in KINDS.values() if answer in k.names)
        return _choice(rng, [x for x in kind.names if x != answer])
    kind = norm.split(" ", 1)[0]
    return _other_entity(kind, {norm}, facts, rng)


_INTROS = (
    "From the conversation, {facts}.",
    "Based on what you told me, {facts}.",
    "I recall that {facts}.",
    "Looking back at the messages, {facts}.",
    "The relevant details: {facts}.",
)


def _restate(attr: str, entity: str, value: str, rng: np.random.Generator) -> str:
    e = entity_display(entity)
    return _choice(
        rng,
        (
            f"the {attr} for {e} is {value}",
            f"{e} has {'an' if attr[0] in 'aeiou' else 'a'} {attr} of {value}",
            f"{e}'s {attr} is {value}",
        ),
    )


def _rationale(q: ParsedQuestion, used: list[tuple[str, str, str]], answer: str, rng: np.random.Generator) -> str:
    facts = "; ".join(_restate(a, e, v, rng) for a, e, v in used)
    intro = _choice(rng, _INTROS).format(facts=facts)
    step = {
        "lookup": ("That is the value you asked for.", "Nothing else is needed here.", ""),
        "arithmetic": (f"Working it out gives {answer}.", f"Doing the {q.operator} step gives {answer}.", "So the result follows."),
        "comparison": (f"Comparing the two, the {q.operator} one is {answer}.", "Putting them side by side settles it."),
        "aggregation": ("Going through each of them gives the result.", f"Taking the {q.operator} over them gives {answer}."),
        "deduction": ("Following the chain step by step leads to the answer.", "Each link leads to the next one."),
        "verification": ("Checking the claim against this settles it.", "That decides whether the claim holds."),
    }[q.type]
    line = _choice(rng, step)
    return f"{intro} {line}".rstrip() + f"\nAnswer: {answer}"


def _abstain(attr: str, entity: str, rng: np.random.Generator) -> str:
    e = entity_display(entity)
    text = _choice(
        rng,
        (
            f"I don't have the information about the {attr} for {e} in what I was given.",
            f"I can't find the {attr} for {e}; it has not been given to me.",
            f"Sorry, I don't have the {attr} for {e}, so I cannot answer reliably.",
        ),
    )
    return f"{text}\nAnswer: unknown"


_QUESTION_MARK = re.compile(r"\?\s*$", re.M)


def _asks(text: str) -> bool:
    """A message that asks something: a sentence ending in a question mark."""
    return "?" in text and bool(_QUESTION_MARK.search(text) or re.search(r"\?(?=\s)", text))


def _cannot_parse(rng: np.random.Generator) -> str:
    text = _choice(rng, (
        "I don't know; I could not work out what is being asked from the details I have.",
        "I'm not sure what you are asking, so I cannot give a value.",
    ))
    return f"{text}\nAnswer: I don't know"


def _acknowledge(text: str, rng: np.random.Generator) -> str:
    stated = parse_statements(text)
    if not stated:
        return _choice(
            rng,
            (
                "Noted. I have nothing to add yet; let me know what you would like to ask.",
                "Noted, thanks. Tell me when you have a question about these details.",
            ),
        )
    first = stated[0]
    e = entity_display(first.entity)
    more = len(stated) - 1
    extra = f" and {more} more detail{'s' if more > 1 else ''}" if more else ""
    return _choice(
        rng,
        (
            f"Noted. I have recorded the {first.attr} for {e}{extra}.",
            f"Noted, thank you. The {first.attr} for {e}{extra} {'are' if more else 'is'} now on file.",
            f"Noted. I will keep the {first.attr} for {e}{extra} in mind for later questions.",
            f"Noted. Thanks for the details about {e}; I will use them from now on.",
        ),
    )
