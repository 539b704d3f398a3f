"""The systems under test. Each gets a conversation as text turns and nothing else, except the oracle.

A system makes sessions; a session takes one user turn at a time and reports what it sent and got,
so the runner can score the turn (with the truth it keeps to itself) and drop the prompt.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, ContextManager, Protocol, Sequence

from rapo.prompts import OUTPUT_FORMAT
from rapo.team import TeamSpec
from rapo.timing import CallClock, TurnTimer
from rapo.types import Backend, Completion, Message

_CLOCK = CallClock("rapo_bench_turn")  # the benchmark's own timer of each system's turn


@dataclass
class TurnOutcome:
    """What one system did for one user turn."""

    agent: str | None
    reply: str
    prompt_parts: tuple[str, ...]  # every message the answering agent got (for the context-loss check)
    prompt_tokens: int
    output_tokens: int
    calls: int
    latency_s: float  # model time on the turn's critical path plus the system's own work


class Session(Protocol):
    async def step(self, text: str) -> TurnOutcome: ...

    def snapshot(self) -> dict[str, Any]: ...  # JSON-able: enough to continue after a crash

    def restore(self, state: dict[str, Any]) -> None: ...


class System(Protocol):
    name: str

    def session(self, conversation_id: str, truth: Any = None) -> Session: ...


class TimedBackend:
    """Notes each call's wait interval on the turn that made it (see `rapo.timing`), so a system's
    own work can be measured apart from the model's, per turn, however many conversations share it."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner

    def turn(self) -> ContextManager[TurnTimer]:
        """Time one turn: calls made inside the block (and in tasks it starts) are counted on it."""
        return _CLOCK.turn()

    async def complete(self, messages: Sequence[Message], *, model: str, max_tokens: int | None = None,
                       sample: int = 0) -> Completion:
        t = time.perf_counter()
        try:
            return await self.inner.complete(messages, model=model, max_tokens=max_tokens, sample=sample)
        finally:
            _CLOCK.note(t)

    async def aclose(self) -> None:
        await self.inner.aclose()


def _joined(messages: Sequence[Message]) -> tuple[str, ...]:
    return tuple(m.content for m in messages)


def _agent_system_prompt(role: str, description: str) -> str:
    return f"{role} {description}\n{OUTPUT_FORMAT}"


# -- group chat: agents in turn, full history ----------------------------------------------------


class RoundRobin:
    """The group-chat pattern (AutoGen's RoundRobinGroupChat): agents speak in turn, all see everything."""

    name = "round-robin"

    def __init__(self, team: TeamSpec, backend: TimedBackend) -> None:
        self.team, self.backend = team, backend

    def session(self, conversation_id: str, truth: Any = None) -> "_RoundRobinSession":
        return _RoundRobinSession(self)


@dataclass
class _RoundRobinSession:
    system: RoundRobin
    history: list[Message] = field(default_factory=list)
    turn: int = 0

    def snapshot(self) -> dict[str, Any]:
        return {"turn": self.turn, "history": [m.model_dump() for m in self.history]}

    def restore(self, state: dict[str, Any]) -> None:
        self.turn = int(state["turn"])
        self.history = [Message.model_validate(m) for m in state["history"]]

    async def step(self, text: str) -> TurnOutcome:
        with self.system.backend.turn() as timer:
            agent = self.system.team.agents[self.turn % len(self.system.team.agents)]
            self.turn += 1
            self.history.append(Message(role="user", content=text))
            messages = [Message(role="system", content=_agent_system_prompt(agent.role, agent.description)),
                        *self.history]
            c = await self.system.backend.complete(messages, model=agent.model)
            self.history.append(Message(role="assistant", content=c.text, name=agent.name))
        return TurnOutcome(agent.name, c.text, _joined(messages), c.prompt_tokens, c.output_tokens, 1,
                           timer.latency(c.latency_s))


# -- supervisor / handoff: an LLM picks the agent, the agent gets the full history ---------------

SUPERVISOR_PROMPT = (
    "You are the supervisor of a team of agents. Read the conversation and decide which agent should "
    "handle the user's latest message.\nAgents:\n{agents}\n"
    "Reply with the name of exactly one agent, as 'Agent: <name>'."
)

_AGENT_LINE = re.compile(r"agent\s*:\s*([A-Za-z][\w-]*)", re.IGNORECASE)


def supervisor_prompt(team: TeamSpec) -> str:
    """The supervisor's system prompt: the agents as declared, and the reply it must give."""
    return SUPERVISOR_PROMPT.format(agents="\n".join(f"- {a.name}: {a.description}" for a in team.agents))


def parse_agent_choice(reply: str, names: Sequence[str]) -> str:
    """The agent the supervisor named: 'Agent: x', else the first known name in the text."""
    m = _AGENT_LINE.search(reply)
    if m and m.group(1).lower() in {n.lower() for n in names}:
        return next(n for n in names if n.lower() == m.group(1).lower())
    lowered = reply.lower()
    hits = [(lowered.find(n.lower()), n) for n in names if n.lower() in lowered]
    return min(hits)[1] if hits else names[0]


class Handoff:
    """The supervisor/handoff pattern (LangGraph supervisor, OpenAI Agents SDK handoffs)."""

    name = "handoff"

    def __init__(self, team: TeamSpec, backend: TimedBackend, supervisor_model: str | None = None) -> None:
        self.team, self.backend = team, backend
        self.supervisor_model = supervisor_model or team.agents[-1].model
        self.supervisor_prompt = supervisor_prompt(team)

    def session(self, conversation_id: str, truth: Any = None) -> "_HandoffSession":
        return _HandoffSession(self)


@dataclass
class _HandoffSession:
    system: Handoff
    history: list[Message] = field(default_factory=list)

    def snapshot(self) -> dict[str, Any]:
        return {"history": [m.model_dump() for m in self.history]}

    def restore(self, state: dict[str, Any]) -> None:
        self.history = [Message.model_validate(m) for m in state["history"]]

    async def step(self, text: str) -> TurnOutcome:
        sys_ = self.system
        with sys_.backend.turn() as timer:
            self.history.append(Message(role="user", content=text))
            route_msgs = [Message(role="system", content=sys_.supervisor_prompt), *self.history]
            route = await sys_.backend.complete(route_msgs, model=sys_.supervisor_model)
            name = parse_agent_choice(route.text, [a.name for a in sys_.team.agents])
            agent = sys_.team.agent(name)
            messages = [Message(role="system", content=_agent_system_prompt(agent.role, agent.description)),
                        *self.history]
            c = await sys_.backend.complete(messages, model=agent.model)
            self.history.append(Message(role="assistant", content=c.text, name=agent.name))
        return TurnOutcome(agent.name, c.text, _joined(messages), route.prompt_tokens + c.prompt_tokens,
                           route.output_tokens + c.output_tokens, 2, timer.latency(route.latency_s + c.latency_s))


# -- rapo and its ablations -----------------------------------------------------------------------

ABLATIONS: dict[str, Callable[[TeamSpec], TeamSpec]] = {
    "rapo": lambda t: t,
    "rapo-no-consensus": lambda t: t.model_copy(
        update={"consensus": t.consensus.model_copy(update={"mode": "never"})}),
    "rapo-static-prompts": lambda t: t.model_copy(
        update={"prompts": t.prompts.model_copy(update={"adaptive": False})}),
    "rapo-no-context-vectors": lambda t: t.model_copy(
        update={"prompts": t.prompts.model_copy(update={"relevance": False}),
                "routing": t.routing.model_copy(update={"beta": 0.0})}),
    "rapo-no-learning": lambda t: t.model_copy(
        update={"routing": t.routing.model_copy(update={"learn": False})}),
    "rapo-random-routing": lambda t: t.model_copy(
        update={"routing": t.routing.model_copy(update={"exploration": "random", "learn": False})}),
}


class Rapo:
    """rapo itself (or an ablation): one Orchestrator per system, shared across its conversations."""

    def __init__(self, name: str, team: TeamSpec, backend: TimedBackend) -> None:
        from rapo.orchestrator import Orchestrator

        self.name = name
        self.backend = backend
        self.orchestrator = Orchestrator(ABLATIONS[name](team), backend)

    def team_state(self) -> dict[str, Any] | None:
        return self.orchestrator.team_state()

    def load_team_state(self, state: dict[str, Any]) -> None:
        self.orchestrator.load_team_state(state)

    def session(self, conversation_id: str, truth: Any = None) -> "_RapoSession":
        return _RapoSession(self, self.orchestrator.new_conversation(conversation_id))


@dataclass
class _RapoSession:
    system: Rapo
    conv: Any

    def snapshot(self) -> dict[str, Any]:
        from rapo.checkpoint import conversation_snapshot

        return conversation_snapshot(self.conv)

    def restore(self, state: dict[str, Any]) -> None:
        from rapo.checkpoint import restore_conversation

        self.conv = restore_conversation(state, self.system.orchestrator.embedder)

    async def step(self, text: str) -> TurnOutcome:
        with self.system.backend.turn() as timer:
            rec = await self.system.orchestrator.astep(self.conv, text)
        self.conv.records.clear()  # the runner keeps its own per-turn records; keep memory flat
        return TurnOutcome(rec.agent, rec.answer, _joined(rec.prompt), rec.prompt_tokens, rec.output_tokens,
                           rec.calls, timer.latency(rec.latency_s))


# -- the oracle: the ceiling, handed the truth ------------------------------------------------------


class Oracle:
    """Every question gets exactly the facts it needs, the truly best agent, one call; statements cost nothing."""

    name = "oracle"

    def __init__(self, team: TeamSpec, backend: TimedBackend, skill: Callable[[str, str], float]) -> None:
        self.team, self.backend, self.skill = team, backend, skill

    def session(self, conversation_id: str, truth: Any = None) -> "_OracleSession":
        if truth is None:
            raise ValueError("the oracle needs the conversation's truth")
        return _OracleSession(self, truth)


@dataclass
class _OracleSession:
    system: Oracle
    truth: Any
    turn: int = 0

    def snapshot(self) -> dict[str, Any]:
        return {"turn": self.turn}

    def restore(self, state: dict[str, Any]) -> None:
        self.turn = int(state["turn"])

    async def step(self, text: str) -> TurnOutcome:
        turn = self.truth.turns[self.turn]
        self.turn += 1
        q = turn.question
        if q is None:
            return TurnOutcome(None, "Noted.", (), 0, 0, 0, 0.0)
        agent = max(self.system.team.agents, key=lambda a: self.system.skill(a.model, q.type))
        facts = "\n".join(f"- {n.sentence}" for n in q.needed)
        question = _last_question(text)
        messages = [Message(role="system", content=_agent_system_prompt(agent.role, agent.description)),
                    Message(role="user", content=f"Facts:\n{facts}\nTask: {question}")]
        with self.system.backend.turn() as timer:
            c = await self.system.backend.complete(messages, model=agent.model)
        # Only the call is timed: the oracle's own work is the generator's, which no system pays for.
        return TurnOutcome(agent.name, c.text, _joined(messages), c.prompt_tokens, c.output_tokens, 1,
                           max(c.latency_s, timer.waited()))


def _last_question(text: str) -> str:
    """The question sentence of a turn (a one-turn conversation states facts and asks in one message)."""
    parts = [p.strip() for p in re.split(r"(?<=[.?!])\s+", text) if p.strip()]
    questions = [p for p in parts if p.endswith("?")]
    return questions[-1] if questions else text
