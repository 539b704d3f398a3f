"""What every peer shares: one fake chat model behind each framework's own model interface, the
team it plays, the supervisor prompt, and the session shape the benchmark runner already scores.

The fake model is a rapo `Backend` too, so rapo and the peers can be driven by the very same object:
it answers at once (`instant`), after awaiting a set delay (`delay`, so many conversations are in
flight at once for the memory test), or by delegating to rapo's `SimBackend` (`sim`, the benchmark's
simulated model on the virtual clock), so a peer runs the benchmark conversations as they are.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
import zlib
from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field

from rapo.bench.systems import (  # noqa: F401 - supervisor_prompt is re-exported for the peers
    SUPERVISOR_PROMPT,
    TurnOutcome,
    _agent_system_prompt,
    parse_agent_choice,
    supervisor_prompt,
)
from rapo.team import TeamSpec, bench_team  # noqa: F401 - re-exported for the benchmark scripts
from rapo.timing import TurnTimer
from rapo.types import Backend, Completion, Message, RapoError

PEER_NAMES: tuple[str, ...] = ("langgraph", "autogen", "openai-agents")
"""The peers, by the name the benchmarks and `rapo bench --systems` use."""

PEER_PACKAGES: dict[str, str] = {
    "langgraph": "langgraph",
    "autogen": "autogen_agentchat",
    "openai-agents": "agents",
}
"""The module each peer imports, so callers can say which package is missing."""

Mode = Literal["instant", "delay", "sim"]


class FakeModelConfig(BaseModel):
    """How the fake model answers; checked at the boundary so a typo fails with the choices."""

    model_config = ConfigDict(frozen=True)

    mode: Mode = "instant"
    delay_s: float = Field(0.0, ge=0.0)


@dataclass
class CallRecord:
    """One model call as a session saw it: what was sent and what came back."""

    messages: Sequence[Message]
    completion: Completion
    waited: tuple[float, float] = (0.0, 0.0)  # perf_counter at the call's start and end


_SINK: contextvars.ContextVar[list[CallRecord] | None] = contextvars.ContextVar("rapo_peer_sink", default=None)


def is_supervisor_prompt(messages: Sequence[Message]) -> bool:
    return bool(messages) and messages[0].role == "system" and messages[0].content.startswith(
        SUPERVISOR_PROMPT[:40])


def _last_user(messages: Sequence[Message]) -> str:
    return next((m.content for m in reversed(messages) if m.role == "user"), "")


class FakeModel:
    """The one chat model every system under test calls (a rapo `Backend`).

    Calls made while a session's step is running are recorded into that step's sink (a context
    variable, so concurrent conversations never mix); `calls` counts every call for checks.
    """

    def __init__(self, config: FakeModelConfig | None = None, *, sim: Backend | None = None,
                 agent_names: Sequence[str] = ()) -> None:
        self.config = config or FakeModelConfig()
        if self.config.mode == "sim" and sim is None:
            from rapo.backends.sim import SimBackend

            sim = SimBackend(profile="default", seed=0, clock="virtual")
        self.sim = sim
        self.agent_names = list(agent_names)
        self.calls = 0

    async def complete(self, messages: Sequence[Message], *, model: str, max_tokens: int | None = None,
                       sample: int = 0) -> Completion:
        self.calls += 1
        started = time.perf_counter()
        if self.config.mode == "sim":
            assert self.sim is not None
            completion = await self.sim.complete(messages, model=model, max_tokens=max_tokens, sample=sample)
        else:
            if self.config.mode == "delay" and self.config.delay_s > 0:
                await asyncio.sleep(self.config.delay_s)
            text = self._instant_reply(messages)
            completion = Completion.model_construct(text=text, prompt_tokens=0, output_tokens=0, latency_s=0.0,
                                                    model=model)
        sink = _SINK.get()
        if sink is not None:
            sink.append(CallRecord(messages, completion, (started, time.perf_counter())))
        return completion

    def _instant_reply(self, messages: Sequence[Message]) -> str:
        last = _last_user(messages)
        if is_supervisor_prompt(messages) and self.agent_names:
            # A stable pick that still moves between agents, as a supervisor would.
            name = self.agent_names[zlib.crc32(last.encode()) % len(self.agent_names)]
            return f"Agent: {name}"
        return f"Noted.\nAnswer: {' '.join(last.split())[:40]}"

    async def aclose(self) -> None:
        if self.sim is not None:
            await self.sim.aclose()


class Recorder:
    """Collects the model calls of one step (used by sessions around a framework call)."""

    def __init__(self) -> None:
        self.calls: list[CallRecord] = []
        self._token: contextvars.Token[list[CallRecord] | None] | None = None

    def __enter__(self) -> "Recorder":
        self._token = _SINK.set(self.calls)
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self._token is not None
        _SINK.reset(self._token)


def outcome(agent: str | None, reply: str, calls: Sequence[CallRecord], elapsed_s: float = 0.0) -> TurnOutcome:
    """A step's outcome in the benchmark's terms; the answering call is the last one. Latency: the
    framework's own work (the step's wall time `elapsed_s` less the union of its calls' waits) plus
    the model time, as `rapo.timing.TurnTimer.latency` computes it for every system."""
    answering = calls[-1] if calls else None
    timer = TurnTimer(start=0.0, end=elapsed_s)
    if calls:
        base = min(c.waited[0] for c in calls)
        timer.intervals = [(lo - base, min(hi - base, elapsed_s)) for lo, hi in (c.waited for c in calls)]
    prompt_parts = tuple(m.content for m in answering.messages) if answering else ()
    return TurnOutcome(
        agent=agent,
        reply=reply,
        prompt_parts=prompt_parts,
        prompt_tokens=sum(c.completion.prompt_tokens for c in calls),
        output_tokens=sum(c.completion.output_tokens for c in calls),
        calls=len(calls),
        latency_s=timer.latency(sum(c.completion.latency_s for c in calls)),
    )


def agent_prompt(team: TeamSpec, name: str) -> str:
    spec = team.agent(name)
    return _agent_system_prompt(spec.role, spec.description)


def choose(reply: str, team: TeamSpec) -> str:
    return parse_agent_choice(reply, [a.name for a in team.agents])


def peer_available(name: str) -> str | None:
    """None when the peer's package imports; otherwise why not (for skips and messages)."""
    import importlib.util

    module = PEER_PACKAGES.get(name)
    if module is None:
        raise RapoError(f"unknown peer {name!r}; choose from {', '.join(PEER_NAMES)}")
    if importlib.util.find_spec(module) is None:
        extra = {"langgraph": "langgraph", "autogen": "autogen-agentchat", "openai-agents": "openai-agents"}[name]
        return f"{name}: package {extra!r} is not installed (pip install 'rapo[peers]')"
    return None


def make_peer(name: str, team: TeamSpec, model: FakeModel, *, persist: bool = False) -> Any:
    """A peer system (name, session(conversation_id) -> session with async step(text) -> TurnOutcome)."""
    why = peer_available(name)
    if why:
        raise RapoError(why)
    if name == "langgraph":
        from rapo.bench.peers.langgraph_peer import LangGraphPeer

        return LangGraphPeer(team, model, persist=persist)
    if name == "autogen":
        from rapo.bench.peers.autogen_peer import AutoGenPeer

        return AutoGenPeer(team, model)
    from rapo.bench.peers.openai_agents_peer import OpenAIAgentsPeer

    return OpenAIAgentsPeer(team, model, persist=persist)


@dataclass
class RapoPeer:
    """rapo in the same session shape as the peers (records kept or dropped per turn)."""

    team: TeamSpec
    model: Backend
    keep_records: bool = True
    name: str = "rapo"
    orchestrator: Any = field(init=False)

    def __post_init__(self) -> None:
        from rapo.orchestrator import Orchestrator

        self.orchestrator = Orchestrator(self.team, self.model)

    def session(self, conversation_id: str, truth: Any = None) -> "_RapoPeerSession":
        return _RapoPeerSession(self, self.orchestrator.new_conversation(conversation_id))

    async def aclose(self) -> None:
        return None


@dataclass
class _RapoPeerSession:
    system: RapoPeer
    conv: Any

    async def step(self, text: str) -> TurnOutcome:
        rec = await self.system.orchestrator.astep(self.conv, text)
        if not self.system.keep_records:
            self.conv.records.clear()
        return TurnOutcome(rec.agent, rec.answer, tuple(m.content for m in rec.prompt), rec.prompt_tokens,
                           rec.output_tokens, rec.calls, rec.latency_s + rec.overhead_s)


def build_system(name: str, team: TeamSpec, model: FakeModel, *, persist: bool = False,
                 keep_records: bool = True) -> Any:
    """rapo or a peer, by name."""
    if name == "rapo":
        return RapoPeer(team, model, keep_records=keep_records)
    return make_peer(name, team, model, persist=persist)

