"""The systems under test. Each gets a conversation as text turns and nothing else, except the oracle.

A system makes sessions; a session takes one user turn at a time and reports what it sent and got,
so the runner can score the turn (with the truth it keeps to itself) and drop the prompt.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, ContextManager, Protocol, Sequence

from rapo.consensus import Deliberation, deliberate
from rapo.prompts import OUTPUT_FORMAT
from rapo.team import AgentSpec, TeamSpec
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


# -- the equal-budget vote: what rapo's consensus does, given to a baseline -------------------------


class _VoteAsk:
    """A baseline's candidates, each with its own system prompt over the same user messages; a
    split round's peers note goes into the last user message, as rapo's prompt puts it under the task."""

    def __init__(self, backend: Backend, agents: Sequence[AgentSpec], messages: Sequence[Message]) -> None:
        self.backend, self.agents, self.messages = backend, list(agents), list(messages)

    def prompt(self, i: int, round_no: int, peers: str | None) -> list[Message]:
        a = self.agents[i]
        rest = self.messages
        if peers:
            last = rest[-1]
            rest = [*rest[:-1], last.model_copy(update={"content": f"{last.content}\n{peers}"})]
        return [Message(role="system", content=_agent_system_prompt(a.role, a.description)), *rest]

    async def call(self, i: int, messages: list[Message], round_no: int) -> Completion:
        return await self.backend.complete(messages, model=self.agents[i].model, sample=round_no)


async def team_vote(team: TeamSpec, backend: Backend, agents: Sequence[AgentSpec], weights: Sequence[float],
                    messages: Sequence[Message]) -> Deliberation:
    """The vote rapo's `consensus.mode: always` runs (same threshold, early stop by latency order,
    bounded extra round with the peers' answers), over `agents` best first."""
    from rapo.embed import make_embedder

    cfg = team.consensus
    return await deliberate(_VoteAsk(backend, agents, messages), weights, threshold=cfg.threshold,
                            max_rounds=cfg.max_rounds, embed=_embedder(team.embedder, make_embedder).embed,
                            names=[a.name for a in agents], lam=cfg.lam, alpha=cfg.alpha)


_EMBEDDERS: dict[str, Any] = {}


def _embedder(name: str, make: Callable[[str], Any]) -> Any:
    if name not in _EMBEDDERS:
        _EMBEDDERS[name] = make(name)
    return _EMBEDDERS[name]


def declared_rank(team: TeamSpec, first: AgentSpec, m: int) -> tuple[list[AgentSpec], list[float]]:
    """`first`, then the other agents by mean declared capability over the team's reasoning types
    (a type an agent does not declare counts 0); weights are those means. Ranking by what `first` is
    declared best at instead scored lower (90.2% against 91.3% success on the 1,000 conversations),
    so the stronger rule is the baseline."""
    focus = list(team.reasoning_types)

    def score(a: AgentSpec) -> float:
        return sum(a.capabilities.get(t, 0.0) for t in focus) / len(focus)

    rest = sorted((a for a in team.agents if a.name != first.name), key=lambda a: -score(a))
    chosen = [first, *rest][: max(1, m)]
    return chosen, [max(score(a), 1e-6) for a in chosen]


def asks(text: str) -> bool:
    """A turn the vote is for: one that asks something (rapo's own test of a request)."""
    from rapo.orchestrator import is_request

    return is_request(text)


def _voted(d: Deliberation, agents: Sequence[AgentSpec], timer: TurnTimer,
           extra: Completion | None = None) -> TurnOutcome:
    """A vote's outcome as a turn: the winner's reply and prompt, every call's tokens, and the turn's
    latency from its timer over the critical path (a routing call before the vote adds its own)."""
    return TurnOutcome(agents[d.winner].name, d.answers[d.winner].text, _joined(d.prompts[d.winner]),
                       d.prompt_tokens + (extra.prompt_tokens if extra else 0),
                       d.output_tokens + (extra.output_tokens if extra else 0),
                       d.calls + (1 if extra else 0),
                       timer.latency(d.latency_s + (extra.latency_s if extra else 0.0)))


# -- group chat: agents in turn, full history ----------------------------------------------------


class RoundRobin:
    """The group-chat pattern (AutoGen's RoundRobinGroupChat): agents speak in turn, all see everything."""

    name = "round-robin"

    def __init__(self, team: TeamSpec, backend: TimedBackend, vote: bool = False) -> None:
        self.team, self.backend, self.vote = team, backend, vote
        if vote:
            self.name = "round-robin-vote"

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
        team = self.system.team
        with self.system.backend.turn() as timer:
            k = self.turn % len(team.agents)
            agent = team.agents[k]
            self.turn += 1
            self.history.append(Message(role="user", content=text))
            if self.system.vote and asks(text):  # this turn's agent and the next ones in turn order
                order = [team.agents[(k + j) % len(team.agents)] for j in range(min(team.consensus.m, len(team.agents)))]
                d = await team_vote(team, self.system.backend, order, [1.0] * len(order), self.history)
                self.history.append(Message(role="assistant", content=d.answers[d.winner].text, name=order[d.winner].name))
            else:
                d = None
                messages = [Message(role="system", content=_agent_system_prompt(agent.role, agent.description)),
                            *self.history]
                c = await self.system.backend.complete(messages, model=agent.model)
                self.history.append(Message(role="assistant", content=c.text, name=agent.name))
        if d is not None:
            return _voted(d, order, timer)
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

    def __init__(self, team: TeamSpec, backend: TimedBackend, supervisor_model: str | None = None,
                 vote: bool = False) -> None:
        self.team, self.backend, self.vote = team, backend, vote
        if vote:
            self.name = "handoff-vote"
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
            if sys_.vote and asks(text):  # the supervisor's pick and the next agents by declared capability
                order, weights = declared_rank(sys_.team, agent, sys_.team.consensus.m)
                d = await team_vote(sys_.team, sys_.backend, order, weights, self.history)
                self.history.append(Message(role="assistant", content=d.answers[d.winner].text, name=order[d.winner].name))
            else:
                d = None
                messages = [Message(role="system", content=_agent_system_prompt(agent.role, agent.description)),
                            *self.history]
                c = await sys_.backend.complete(messages, model=agent.model)
                self.history.append(Message(role="assistant", content=c.text, name=agent.name))
        if d is not None:
            return _voted(d, order, timer, extra=route)
        return TurnOutcome(agent.name, c.text, _joined(messages), route.prompt_tokens + c.prompt_tokens,
                           route.output_tokens + c.output_tokens, 2, timer.latency(route.latency_s + c.latency_s))


# -- rapo and its ablations -----------------------------------------------------------------------

ABLATIONS: dict[str, Callable[[TeamSpec], TeamSpec]] = {
    "rapo": lambda t: t,
    "rapo-no-consensus": lambda t: t.model_copy(
        update={"consensus": t.consensus.model_copy(update={"mode": "never"})}),
    "rapo-vote-always": lambda t: t.model_copy(  # the old benchmark setting: all three on every answer
        update={"consensus": t.consensus.model_copy(update={"mode": "always"})}),
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

    def __init__(self, team: TeamSpec, backend: TimedBackend, skill: Callable[[str, str], float],
                 vote: bool = False) -> None:
        self.team, self.backend, self.skill, self.vote = team, backend, skill, vote
        if vote:
            self.name = "oracle-vote"

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
        team, skill = self.system.team, self.system.skill
        ranked = sorted(team.agents, key=lambda a: -skill(a.model, q.type))  # stable: ties keep team order
        agent = ranked[0]
        facts = "\n".join(f"- {n.plain or n.sentence}" for n in q.needed)  # self-contained, in any language
        question = _last_question(text)
        user = Message(role="user", content=f"Facts:\n{facts}\nTask: {question}")
        # Only the calls are timed: the oracle's own work is the generator's, which no system pays for.
        with self.system.backend.turn() as timer:
            if self.system.vote:  # the truly best m agents, weighted by their true skill
                best = ranked[: team.consensus.m]
                d = await team_vote(team, self.system.backend, best, [skill(a.model, q.type) for a in best], [user])
            else:
                messages = [Message(role="system", content=_agent_system_prompt(agent.role, agent.description)), user]
                c = await self.system.backend.complete(messages, model=agent.model)
        if self.system.vote:
            v = _voted(d, best, timer)
            v.latency_s = max(d.latency_s, timer.waited())
            return v
        return TurnOutcome(agent.name, c.text, _joined(messages), c.prompt_tokens, c.output_tokens, 1,
                           max(c.latency_s, timer.waited()))


def _last_question(text: str) -> str:
    """The question sentence of a turn (a one-turn conversation states facts and asks in one message)."""
    parts = [p.strip() for p in re.split(r"(?<=[.?!])\s+", text) if p.strip()]
    questions = [p for p in parts if p.endswith("?")]
    return questions[-1] if questions else text
