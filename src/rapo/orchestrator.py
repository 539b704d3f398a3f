"""The orchestration loop: ingest -> classify -> route -> build prompt -> call (or consensus) -> update.

`Orchestrator.astep` reads top to bottom as one agent transition; `arun` runs a conversation of turns.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
import uuid
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from pydantic import BaseModel, Field

from rapo.classify import RequirementClassifier
from rapo.consensus import ballot, deliberate, extract_answer, normalise_answer
from rapo.embed import make_embedder
from rapo.extract import split_sentences
from rapo.extract_llm import extract_with_model
from rapo.backends import dispatch
from rapo.backends.retry import BackendUnavailable
from rapo.memory import ContextItem, SelectionConfig
from rapo.prompts import PromptBuilder, PromptPlan, estimate_difficulty
from rapo.routing import Router, RoutingDecision
from rapo.state import CapabilityMatrix, ConversationState
from rapo.team import AgentSpec, TeamSpec
from rapo.timing import CallClock
from rapo.tokens import count_message_tokens, count_tokens
from rapo.types import Backend, Completion, Embedder, Message, RapoError, trusted

_REQUEST = re.compile(
    r"\?|^\s*(please\s+)?(tell|compute|calculate|summari[sz]e|plan|list|explain|check|verify|find|give|show|"
    r"write|draft|recommend|decide|compare|estimate|work out|figure out|remind|look up|identify|determine|"
    r"answer|confirm|describe|name|propose|suggest|outline|review|assess|evaluate|choose|pick|select|count|"
    r"sum|total|add|subtract|multiply|divide|convert|rank|sort|classify|translate|prepare|create|design)\b",
    re.IGNORECASE | re.MULTILINE,
)


_log = logging.getLogger("rapo")
_CALLS = CallClock("rapo_turn_calls")


StageHook = Callable[[str, "TurnRecord", "RoundRecord | None"], None]


def _no_stage(name: str, record: "TurnRecord", round_: "RoundRecord | None") -> None:
    return None


def is_request(text: str) -> bool:
    """Does the turn ask for something (a question or an imperative), or only state facts?"""
    return bool(_REQUEST.search(text))


class RoundRecord(BaseModel):
    agents: list[str]
    values: dict[str, str | None]  # agent -> normalised answer (None: cancelled before it counted)
    support: dict[str, float]
    agreement: float
    winner: str
    stopped_early: bool
    residuals: list[float]
    alpha: float
    lipschitz: float
    latency_s: float


class ConsensusRecord(BaseModel):
    triggered_by: str  # critical | low-confidence | always
    rounds: list[RoundRecord]
    agreement: float
    value: str


class TurnRecord(BaseModel):
    """One agent transition, as the trace shows it."""

    conversation: str
    turn: int
    text: str
    needs_answer: bool
    origin: str = "user"  # user | observed
    speaker: str | None = None
    when: str | None = None
    requirement: dict[str, float] = Field(default_factory=dict)
    requirement_source: str = "none"
    difficulty: float | None = None
    strategy: str | None = None
    routing: RoutingDecision | None = None
    agent: str | None = None
    context: list[ContextItem] = Field(default_factory=list)
    handoff: str | None = None
    prompt: list[Message] = Field(default_factory=list)
    answer: str = ""
    value: str = ""
    prompt_tokens: int = 0  # the endpoint's own counts for answered calls, plus unanswered_prompt_tokens
    output_tokens: int = 0
    calls: int = 0  # requests sent to an endpoint; a call cancelled before it left rapo's queue is not one
    unanswered_calls: int = 0  # of those, sent but cancelled or failed before an answer came back
    unanswered_prompt_tokens: int = 0  # their prompts by rapo's own count (the endpoint reported none)
    consensus: ConsensusRecord | None = None
    failovers: list[str] = Field(default_factory=list)  # agents whose backend failed, and why
    latency_s: float = 0.0  # model time on the turn's critical path
    overhead_s: float = 0.0  # rapo's own work in this turn (wall clock)
    error: str | None = None

    @classmethod
    def start(cls, conversation: str, turn: int, text: str, needs_answer: bool, origin: str = "user",
              speaker: str | None = None, when: str | None = None) -> "TurnRecord":
        """A fresh record, built without validation and sharing its field-name set (see `trusted`)."""
        return trusted(cls, conversation=conversation, turn=turn, text=text, needs_answer=needs_answer,
                       origin=origin, speaker=speaker, when=when, requirement={}, requirement_source="none", difficulty=None, strategy=None, routing=None,
                       agent=None, context=[], handoff=None, prompt=[], answer="", value="", prompt_tokens=0,
                       output_tokens=0, calls=0, unanswered_calls=0, unanswered_prompt_tokens=0, consensus=None,
                       failovers=[], latency_s=0.0, overhead_s=0.0, error=None)


class RunResult(BaseModel):
    model_config = {"arbitrary_types_allowed": True}

    conversation: Any  # ConversationState
    records: list[TurnRecord]
    error: str | None = None

    @property
    def answers(self) -> list[str]:
        return [r.answer for r in self.records]


def _resolve_backends(team: TeamSpec, given: Backend | Mapping[str, Backend] | None) -> dict[str, Backend]:
    names = {a.backend or team.backend for a in team.agents}
    if isinstance(given, Backend):
        return {n: given for n in names}
    given = dict(given or {})
    from rapo.backends.registry import make_backend

    for name in sorted(names - set(given)):
        given[name] = make_backend(name, **team.backend_options.get(name, {}))
    return given


class Orchestrator:
    """A team, its learned capability matrix, and the backends its agents call."""

    def __init__(
        self,
        team: TeamSpec,
        backends: Backend | Mapping[str, Backend] | None = None,
        *,
        embedder: Embedder | None = None,
        classifier: RequirementClassifier | None = None,
    ) -> None:
        self.team = team
        self.agents: list[AgentSpec] = list(team.agents)
        self.names = [a.name for a in self.agents]
        self.embedder = embedder or make_embedder(team.embedder)
        self.classifier = classifier or RequirementClassifier(self.embedder, team.reasoning_types)
        self.matrix = CapabilityMatrix.from_team(team)
        self.router = Router(self.names, team.routing)
        self.prompts = PromptBuilder(team.reasoning_types, adaptive=team.prompts.adaptive)
        self.backends = _resolve_backends(team, backends)
        self.in_flight = np.zeros(len(self.agents))
        p = team.prompts
        self._selection = SelectionConfig(
            budget_tokens=p.context_budget_tokens, k_retrieved=p.k_relevant, recent_turns=p.recent_turns,
            min_relevance=p.min_relevance, neighbour_weight=p.neighbour_weight, exchange_weight=p.exchange_weight,
            embedding_weight=p.embedding_weight, per_turn=p.passages_per_turn)
        self._slot_warned: set[str] = set()  # backends whose queueing consensus was warned about
        self._unnamed = 0  # conversations created without an id, for their random streams

    # -- conversations -------------------------------------------------------------------------

    def new_conversation(self, conversation_id: str | None = None) -> ConversationState:
        """A named conversation routes by its name's random stream, wherever and whenever it runs; an
        unnamed one (a random id) by the order it was created in here, so the team's seed still
        reproduces a script's run."""
        key = conversation_id if conversation_id else f"#{self._unnamed}"
        if not conversation_id:
            self._unnamed += 1
        conv = ConversationState.new(conversation_id or uuid.uuid4().hex[:12], len(self.agents), self.embedder)
        conv.rng = self._stream(key)
        return conv

    async def arun(
        self,
        turns: str | Sequence[str],
        conversation: ConversationState | None = None,
        *,
        critical: Sequence[bool] | None = None,
    ) -> RunResult:
        """Run turns in order; on failure keep what was done and say what went wrong."""
        conv = conversation or self.new_conversation()
        texts = [turns] if isinstance(turns, str) else list(turns)
        start = len(conv.records)
        for i, text in enumerate(texts):
            try:
                await self.astep(conv, text, critical=bool(critical and critical[i]))
            except RapoError as err:
                return RunResult(conversation=conv, records=conv.records[start:], error=str(err))
        return RunResult(conversation=conv, records=conv.records[start:])

    def run(self, turns: str | Sequence[str], conversation: ConversationState | None = None, **kw: Any) -> RunResult:
        """Synchronous wrapper of `arun` for scripts and notebooks without a running loop."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self._run_and_close(turns, conversation, **kw))
        raise RapoError("orch.run() cannot start its own event loop inside one that is already running (a "
                        "notebook, an async function): use `await orch.arun(...)` there instead")

    async def _run_and_close(self, turns: Any, conversation: Any, **kw: Any) -> RunResult:
        try:
            return await self.arun(turns, conversation, **kw)
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        for backend in {id(b): b for b in self.backends.values()}.values():
            await backend.aclose()

    def team_state(self) -> dict[str, Any]:
        """What the team has learned: with a conversation's snapshot (which carries its own routing
        random stream), enough to continue exactly."""
        from rapo.checkpoint import matrix_snapshot

        return matrix_snapshot(self.matrix)

    def load_team_state(self, state: dict[str, Any]) -> None:
        from rapo.checkpoint import restore_matrix_counts

        restore_matrix_counts(self.matrix, state)

    def _rng(self, conv: ConversationState) -> np.random.Generator:
        """The conversation's exploration stream (a conversation restored from an older checkpoint
        has none: it gets its id's)."""
        if conv.rng is None:
            conv.rng = self._stream(conv.id)
        return conv.rng

    def _stream(self, key: str) -> np.random.Generator:
        """Seeded by the team's seed and the key: routing never depends on which conversations ran
        before or beside, so shards and resumes agree."""
        digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
        return np.random.default_rng([self.team.routing.seed, int.from_bytes(digest, "little")])

    def checkpoint(self, conv: ConversationState, store: Any, run_id: str) -> None:
        """Save the conversation with the team's learned counts and routing random state, atomically."""
        from rapo.checkpoint import conversation_snapshot

        store.put_many(run_id, {f"conversation/{conv.id}": conversation_snapshot(conv), "team": self.team_state()})

    def restore(self, store: Any, run_id: str, conversation_id: str) -> ConversationState:
        """The conversation as last checkpointed, with the team state it was saved with."""
        from rapo.checkpoint import restore_conversation

        doc = store.get(run_id, f"conversation/{conversation_id}")
        if doc is None:
            known = [k.split("/", 1)[1] for k in store.keys(run_id, "conversation/")]
            raise RapoError(f"no checkpoint of conversation {conversation_id!r} in run {run_id!r}; "
                            f"it has: {', '.join(known) or 'none'}")
        team = store.get(run_id, "team")
        if team is not None:
            self.load_team_state(team)
        conv = restore_conversation(doc, self.embedder)
        if conv.context.shape[0] != len(self.agents):
            raise RapoError(f"checkpoint of {conversation_id!r} has {conv.context.shape[0]} agents, this team "
                            f"{len(self.agents)}: resume it with the team it was run with")
        return conv

    def feedback(self, record: TurnRecord, success: bool) -> None:
        """Outcome feedback from the caller: credit the agent that answered."""
        if record.agent is None or not self.team.routing.learn:
            return
        r = np.array([record.requirement.get(k, 0.0) for k in self.team.reasoning_types])
        self.matrix.update(self.names.index(record.agent), r, success)

    # -- memory without a model call ------------------------------------------------------------

    def observe(self, conv: ConversationState, text: str, *, speaker: str | None = None,
                when: str | None = None) -> TurnRecord:
        """Record a turn that needs no answer (another party's message, a replayed chat log) in the
        conversation's memory. No model call; with model extraction on, use `await aobserve(...)`."""
        if self.team.extraction != "rules":
            raise RapoError("this team reads facts with a model (extraction: "
                            f"{self.team.extraction}); use `await orch.aobserve(conv, text)` instead of observe()")
        return self._observe_rules(conv, text, speaker, when)

    async def aobserve(self, conv: ConversationState, text: str, *, speaker: str | None = None,
                       when: str | None = None) -> TurnRecord:
        """`observe` from async code; reads facts with the model too when the team says so."""
        if self.team.extraction == "rules":
            return self._observe_rules(conv, text, speaker, when)
        t0 = time.perf_counter()
        record = self._open_turn(conv, text, False, "observed", speaker, when)
        _, waited = await self._ingest(conv, text, record)
        record.answer = "Noted."
        record.overhead_s = max(0.0, time.perf_counter() - t0 - waited)
        return record

    def _observe_rules(self, conv: ConversationState, text: str, speaker: str | None, when: str | None) -> TurnRecord:
        t0 = time.perf_counter()
        record = self._open_turn(conv, text, False, "observed", speaker, when)
        conv.memory.add_turn(text, turn=conv.turn, speaker=speaker, when=when, origin="observed")
        record.answer = "Noted."
        record.overhead_s = time.perf_counter() - t0
        return record

    def preview(self, conv: ConversationState, text: str) -> list[ContextItem]:
        """The context items a step with this text would get now, without calling a model or
        changing the conversation."""
        return self._select_context(conv, text, now_turn=conv.turn + 1)

    def _open_turn(self, conv: ConversationState, text: str, asked: bool, origin: str, speaker: str | None,
                   when: str | None) -> TurnRecord:
        if not isinstance(text, str):
            raise RapoError(f"a turn's text must be a string, got {type(text).__name__}")
        conv.turn += 1
        record = TurnRecord.start(conv.id, conv.turn, text, asked, origin, speaker, when)
        conv.records.append(record)
        return record

    # -- one agent transition ------------------------------------------------------------------

    async def astep(
        self,
        conv: ConversationState,
        text: str,
        *,
        requirement: Mapping[str, float] | None = None,
        critical: bool = False,
        on_stage: StageHook | None = None,
        speaker: str | None = None,
        when: str | None = None,
    ) -> TurnRecord:
        """One agent transition. `on_stage(name, record, round)` is called as each stage completes
        (noted | routing | prompt | consensus_round | reply), so a caller can stream them live."""
        t0 = time.perf_counter()
        calls = _CALLS.start()  # the waits of this turn's agent calls, overlapping or not
        stage = on_stage or _no_stage
        model_time = 0.0
        asked = is_request(text) or critical or requirement is not None  # a caller's flags mean "answer this"
        record = self._open_turn(conv, text, asked, "user", speaker, when)
        added, waited = await self._ingest(conv, text, record)

        if not record.needs_answer and self.team.prompts.statement_turns == "ledger":
            noted = "; ".join(f"{f.subject} is {f.value}" for f in added)
            record.answer = f"Noted: {noted}." if noted else "Noted."
            if added:  # the facts' vectors (already embedded by the ledger) stand for the turn
                conv.absorb([], self.embedder.embed([f.text for f in added]).mean(axis=0))
            record.overhead_s = time.perf_counter() - t0 - waited
            stage("noted", record, None)
            return record

        step_vec = self.embedder.embed([text])[0]
        r, record.requirement_source = self._requirement(text, requirement)
        record.requirement = {k: round(float(p), 4) for k, p in zip(self.team.reasoning_types, r)}
        decision, order = self.router.rank(r, step_vec, self.matrix, conv.context, self.in_flight,
                                           conv.previous_agent, rng=self._rng(conv))
        record.routing = decision
        record.context = self._select_context(conv, text, now_turn=conv.turn)
        n_named = sum(s.reason == "named" for s in record.context)
        n_dep = sum(s.reason == "dependency" for s in record.context)
        record.difficulty = estimate_difficulty(r, n_named, n_dep)
        record.handoff = self._handoff(conv)
        stage("routing", record, None)

        trigger = self._consensus_trigger(critical, decision, r, order)
        if trigger is None:
            agent, completion = await self._call_with_failover(order, r, record, conv, text, stage)
            record.answer, record.value = completion.text, normalise_answer(extract_answer(completion.text))
            record.prompt_tokens += completion.prompt_tokens
            record.output_tokens += completion.output_tokens
            record.calls += 1
            model_time = completion.latency_s
        else:
            agent, model_time = await self._consensus(trigger, order, r, record, conv, text, stage)
        waited += calls.waited()
        record.agent = self.names[agent]
        record.latency_s += max(model_time, calls.waited())  # calls queued for a real endpoint: what they took

        conv.absorb([agent], step_vec)
        conv.memory.add_turn(record.answer, turn=conv.turn, speaker=record.agent, origin="agent")
        conv.previous_agent, conv.last_question, conv.last_answer = agent, text, record.value
        record.overhead_s = max(0.0, time.perf_counter() - t0 - waited)
        stage("reply", record, None)
        return record

    # -- the parts -----------------------------------------------------------------------------

    async def _ingest(self, conv: ConversationState, text: str, record: TurnRecord) -> tuple[list, float]:
        """A turn into memory, verbatim, and its statements into the ledger: by rules, and/or by a
        model when configured. Returns the facts and the wall time spent waiting on the model."""
        mode = self.team.extraction
        statements: list = []
        waited = 0.0
        if mode != "rules":
            model = self.team.extraction_model or self.agents[0].model
            backend = self.backends[self.agents[0].backend or self.team.backend]
            t = time.perf_counter()
            found, completion = await extract_with_model(text, backend, model)
            waited = time.perf_counter() - t
            record.calls += 1
            record.prompt_tokens += completion.prompt_tokens
            record.output_tokens += completion.output_tokens
            record.latency_s += completion.latency_s
            statements = list(found)
        facts, _ = conv.memory.add_turn(text, turn=conv.turn, speaker=record.speaker, when=record.when,
                                        origin="observed" if record.origin == "observed" else "user",
                                        extra_statements=statements, extract=mode != "model")
        return facts, waited

    def _requirement(self, text: str, declared: Mapping[str, float] | None) -> tuple[np.ndarray, str]:
        types = self.team.reasoning_types
        if declared:
            unknown = sorted(set(declared) - set(types))
            if unknown:
                raise RapoError(f"declared requirement names unknown reasoning types {unknown}; known: {types}")
            r = np.array([max(0.0, float(declared.get(k, 0.0))) for k in types])
            if r.sum() <= 0:
                raise RapoError("a declared requirement needs at least one positive weight")
            return r / r.sum(), "declared"
        return np.asarray(self.classifier.classify(text), dtype=np.float64), "classifier"

    def _select_context(self, conv: ConversationState, text: str, *, now_turn: int) -> list[ContextItem]:
        cfg = self.team.prompts
        if cfg.relevance:
            return conv.memory.select(text, self._selection, now_turn=now_turn)
        # Ablation: what the last k turns said (as their facts where read), newest kept first under the budget.
        window = SelectionConfig(budget_tokens=cfg.context_budget_tokens, k_retrieved=0, recent_turns=cfg.history_k)
        return [item.model_copy(update={"reason": "window"}) for item in
                conv.memory.select("", window, now_turn=now_turn) if item.reason == "recent"]

    def _handoff(self, conv: ConversationState) -> str | None:
        if conv.previous_agent is None or conv.last_question is None:
            return None
        asked = [s for s in split_sentences(conv.last_question) if is_request(s)]  # not its statements:
        question = (asked[-1] if asked else conv.last_question).strip()  # they may have been corrected since
        if len(question) > 90:
            question = question[:86] + ("...?" if question.endswith("?") else "...")
        # The request is quoted on a line of its own: inside a sentence, a question's claim ("is it
        # 9 items?") reads as a statement of it.
        return (f"{self.names[conv.previous_agent]} handled the previous request and answered: {conv.last_answer}.\n"
                f"The previous request was: {question}")

    def _consensus_trigger(self, critical: bool, decision: RoutingDecision, r: np.ndarray,
                           order: np.ndarray) -> str | None:
        """How an answer step is decided: one call (None), every agent at once ("always"), or, in
        "auto", a deliberation that starts with `consensus.start` agents ("auto", "critical") or with
        the top agent alone when its learned capability for this step is sure enough ("solo")."""
        cfg = self.team.consensus
        if cfg.mode == "never" or len(self.agents) < 2:
            return None
        if cfg.mode == "always":
            return "always"
        if critical:
            return "critical"
        if cfg.solo_confidence is not None:
            top = int(order[0])
            mean = float(self.matrix.mean_row(top) @ r)
            sd = float(np.sqrt(self.matrix.var()[top] @ (r * r)))
            if mean - 2.0 * sd >= cfg.solo_confidence:
                return "solo"
        return "auto"

    def _messages(
        self, agent: int, r: np.ndarray, record: TurnRecord, conv: ConversationState, text: str, peers: str | None = None,
        shared: dict[str, Message] | None = None,
    ) -> tuple[list[Message], PromptPlan]:
        """One agent's prompt; `shared` (one per step and round) lets the agents share one user message."""
        spec = self.agents[agent]
        match = float(self.matrix.mean_row(agent) @ r)
        plan = self.prompts.plan(r, record.difficulty or 0.0, match)
        history: list[Message] = []
        cfg = self.team.prompts
        if cfg.history != "none":
            past = [m for rec in conv.records[:-1] for m in (Message(role="user", content=rec.text),
                                                            Message(role="assistant", content=rec.answer))]
            history = past if cfg.history == "full" else past[-2 * cfg.history_k:]
        messages = self.prompts.render(spec.template, role=spec.role, plan=plan, context=record.context,
                                       task=text, handoff=record.handoff, history=history, peers=peers,
                                       shared=shared)
        return messages, plan

    async def _call_with_failover(
        self, order: np.ndarray, r: np.ndarray, record: TurnRecord, conv: ConversationState, text: str,
        stage: StageHook,
    ) -> tuple[int, Completion]:
        """The chosen agent answers; if its backend is unavailable (retries spent, circuit open), the
        next agent by routing score does, and the trace says who failed and why."""
        shared: dict[str, Message] = {}
        for agent in order.tolist():  # every agent, best first (the trace keeps the first few)
            messages, plan = self._messages(agent, r, record, conv, text, shared=shared)
            record.agent, record.prompt, record.strategy = self.names[agent], messages, plan.strategy_kind
            stage("prompt", record, None)
            try:
                completion = await self._call(agent, messages, sample=0)
            except BackendUnavailable as err:
                record.failovers.append(f"{self.names[agent]}: {err}")
                continue
            record.prompt, record.strategy = messages, plan.strategy_kind
            return agent, completion
        raise BackendUnavailable("no agent of the team could answer; " + " | ".join(record.failovers))

    async def _call(self, agent: int, messages: list[Message], sample: int) -> Completion:
        """One model call, its wait noted on the turn's clock (a consensus also tracks whether it was
        sent: see `deliberate`)."""
        spec = self.agents[agent]
        backend = self.backends[spec.backend or self.team.backend]
        self.in_flight[agent] += 1
        t = time.perf_counter()
        try:
            return await backend.complete(messages, model=spec.model, sample=sample)
        finally:
            _CALLS.note(t)
            self.in_flight[agent] -= 1

    def _fit_to_slots(self, chosen: list[int]) -> list[int]:
        """A consensus asks its agents at once. Where their backend sends fewer requests at a time
        (its max_concurrency: 1 for a llama.cpp server) the calls queue; with consensus.queued 'wait'
        they run in turn, with 'degrade' only as many agents are asked as there are slots. Either way
        a warning says so (once per backend); the turn is answered, not failed."""
        kept: list[int] = []
        load: dict[str, int] = {}
        dropped: dict[str, int] = {}
        for a in chosen:
            name = self.agents[a].backend or self.team.backend
            n_slots = dispatch.slots(self.backends[name])
            load[name] = load.get(name, 0) + 1
            if n_slots is not None and load[name] > n_slots and self.team.consensus.queued == "degrade" and kept:
                dropped[name] = dropped.get(name, 0) + 1
                continue
            kept.append(a)
        for name, n in load.items():
            n_slots = dispatch.slots(self.backends[name])
            if n_slots is None or n <= n_slots or name in self._slot_warned:
                continue
            self._slot_warned.add(name)
            endpoint = dispatch.through(self.backends[name], "endpoint")
            shown = f"{name} ({endpoint})" if endpoint else name
            if name in dropped:
                _log.warning("consensus asks %d of %d agents on backend %s: it sends %d request(s) at a time "
                             "(max_concurrency) and consensus.queued is 'degrade'", n - dropped[name], n, shown,
                             n_slots)
            else:
                _log.warning("consensus asks %d agents at once but backend %s sends %d request(s) at a time "
                             "(max_concurrency): their calls run in turn, so a consensus takes about %d calls' "
                             "time. Set consensus.queued: degrade to ask fewer agents, or raise max_concurrency "
                             "if the server runs requests in parallel.", n, shown, n_slots, n)
        return kept

    async def _consensus(
        self, trigger: str, order: np.ndarray, r: np.ndarray, record: TurnRecord,
        conv: ConversationState, text: str, stage: StageHook,
    ) -> tuple[int, float]:
        cfg = self.team.consensus
        chosen = self._fit_to_slots(order[: min(cfg.m, len(self.agents))].tolist())
        weights = self.matrix.mean()[chosen] @ r
        start = None if trigger == "always" else (1 if trigger == "solo" else min(cfg.start, len(chosen)))
        if start is not None and 1 < start < len(chosen) and cfg.prefetch is not None:
            # where the first agents are unlikely to agree, the vote would ask the rest one round
            # later: asking them now costs the same call and saves that round's wait
            if 1.0 - float(np.prod(np.clip(weights[:start], 0.0, 1.0))) > cfg.prefetch:
                start = len(chosen)
        plans: dict[tuple[int, int], PromptPlan] = {}
        shared: dict[int, dict[str, Message]] = {}
        orch = self

        class _Ask:
            def prompt(self, i: int, round_no: int, peers: str | None) -> list[Message]:
                messages, plan = orch._messages(chosen[i], r, record, conv, text, peers,
                                                shared.setdefault(round_no, {}))
                plans[(i, round_no)] = plan
                if round_no == 0 and i == 0:
                    record.agent, record.prompt, record.strategy = orch.names[chosen[0]], messages, plan.strategy_kind
                    stage("prompt", record, None)
                return messages

            async def call(self, i: int, messages: list[Message], round_no: int) -> Completion:
                return await orch._call(chosen[i], messages, sample=round_no)

        rounds: list[RoundRecord] = []

        def on_round(rnd: Any) -> None:
            res = rnd.vote
            rounds.append(trusted(
                RoundRecord,
                agents=[self.names[chosen[i]] for i in rnd.asked],
                values={self.names[chosen[i]]: v for i, v in rnd.values.items()},
                support={k: round(float(v), 4) for k, v in res.support.items()},
                agreement=round(float(res.agreement), 4),
                winner=self.names[chosen[[i for i in rnd.asked if rnd.values[i] is not None][res.winner]]],
                stopped_early=rnd.stopped_early,
                residuals=[float(x) for x in res.dynamics.residuals],
                alpha=float(res.dynamics.alpha),
                lipschitz=float(res.dynamics.L),
                latency_s=rnd.latency_s,
            ))
            stage("consensus_round", record, rounds[-1])

        try:
            out = await deliberate(_Ask(), [float(x) for x in weights], threshold=cfg.threshold,
                                   max_rounds=cfg.max_rounds, embed=self.embedder.embed,
                                   names=[self.names[a] for a in chosen], start=start, lam=cfg.lam,
                                   alpha=cfg.alpha, on_round=on_round)
        except BackendUnavailable as err:  # every agent asked failed
            names = ", ".join(self.names[a] for a in chosen)
            raise BackendUnavailable(f"no agent of the team could answer ({names}); first error: {err}") from err
        record.failovers += [f"{self.names[chosen[i]]}: {msg}" for i, msg in out.errors]
        record.calls += out.calls
        record.unanswered_calls += out.unanswered_calls
        record.prompt_tokens += out.prompt_tokens
        record.unanswered_prompt_tokens += out.unanswered_prompt_tokens
        record.output_tokens += out.output_tokens
        if self.team.routing.learn and out.agreement >= cfg.threshold and len(out.answers) > 1:
            for i, completion in out.answers.items():  # a lone answer has nobody to agree with: no credit
                self.matrix.update(chosen[i], r, ballot(extract_answer(completion.text)) == out.value)
        winner = chosen[out.winner]
        last_round = len(out.rounds) - 1
        record.prompt = out.prompts[out.winner]
        record.strategy = plans.get((out.winner, last_round), plans.get((out.winner, 0))).strategy_kind  # type: ignore[union-attr]
        record.answer = out.answers[out.winner].text
        record.value = out.value
        record.consensus = trusted(ConsensusRecord, triggered_by=trigger, rounds=rounds,
                                   agreement=round(out.agreement, 4), value=out.value)
        return winner, out.latency_s
