"""Capability routing: score_i = M[i]·r + beta·cos(C_i, e(s)) - gamma·load_i - delta·[i != previous].

Every term is kept per agent so a trace can explain the choice: as columns of one array, not one
object per agent, so a decision over 1,000 agents costs a few KiB, not megabytes, in every turn kept.
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence, overload

import numpy as np
from pydantic import BaseModel, GetCoreSchemaHandler
from pydantic_core import core_schema

from rapo.state import CapabilityMatrix
from rapo.team import RoutingConfig
from rapo.types import trusted


class AgentScore(BaseModel):
    agent: str
    score: float
    capability: float  # M[i]·r with the matrix used for the decision (sampled when exploring)
    capability_mean: float  # posterior-mean M[i]·r, for reading the trace
    context: float  # beta * cos(C_i, e(s))
    load: float  # -gamma * load_i
    switch: float  # -delta * [i != previous]


_TERMS: tuple[str, ...] = ("score", "capability", "capability_mean", "context", "load", "switch")


class AgentScores(Sequence[AgentScore]):
    """The score terms of the agents a decision keeps: one (k, 6) float64 array and the agents'
    indices into a shared name list. Reads as a list of `AgentScore` (built on access) and
    serialises as one, so the trace's JSON is what a list of models gives."""

    __slots__ = ("names", "agents", "terms")

    def __init__(self, names: Sequence[str], agents: np.ndarray, terms: np.ndarray) -> None:
        self.names = names  # shared with the router (not copied): agent index -> name
        self.agents = agents  # (k,) indices into names, in team order
        self.terms = terms  # (k, 6) float64, columns in _TERMS order

    @classmethod
    def from_scores(cls, scores: Sequence[AgentScore]) -> "AgentScores":
        terms = np.array([[getattr(s, t) for t in _TERMS] for s in scores], dtype=np.float64).reshape(-1, len(_TERMS))
        return cls([s.agent for s in scores], np.arange(len(scores), dtype=np.int32), terms)

    def __len__(self) -> int:
        return len(self.agents)

    @overload
    def __getitem__(self, i: int) -> AgentScore: ...
    @overload
    def __getitem__(self, i: slice) -> list[AgentScore]: ...
    def __getitem__(self, i: int | slice) -> AgentScore | list[AgentScore]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        row = self.terms[i].tolist()  # IndexError past the end, as a list would
        return AgentScore.model_construct(agent=self.names[int(self.agents[i])], **dict(zip(_TERMS, row)))

    def __iter__(self) -> Iterator[AgentScore]:
        return (self[i] for i in range(len(self)))

    def dump(self) -> list[dict[str, Any]]:
        """What `[s.model_dump() for s in scores]` gives, without building the models."""
        return [{"agent": self.names[a], **dict(zip(_TERMS, row))}
                for a, row in zip(self.agents.tolist(), self.terms.tolist())]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, AgentScores):
            return self.dump() == other.dump()
        if isinstance(other, (list, tuple)):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"AgentScores({self.dump()!r})"

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        as_list = handler.generate_schema(list[AgentScore])
        from_list = core_schema.no_info_after_validator_function(cls.from_scores, as_list)
        return core_schema.json_or_python_schema(
            json_schema=from_list,
            python_schema=core_schema.union_schema([core_schema.is_instance_schema(cls), from_list]),
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda v: list(v) if isinstance(v, AgentScores) else v, return_schema=as_list),
        )


class RoutingDecision(BaseModel):
    chosen: str
    chosen_index: int
    ranked: list[int]  # agent indices, best first (the first `trace_scores` of them)
    scores: AgentScores  # the kept agents' terms, in team order
    confidence: float  # margin between the best and second-best posterior-mean score
    exploration: str


class Router:
    def __init__(self, names: list[str], config: RoutingConfig) -> None:
        self.names = names
        self.config = config
        self.rng = np.random.default_rng(config.seed)

    def route(
        self,
        requirement: np.ndarray,
        step_vector: np.ndarray,
        matrix: CapabilityMatrix,
        context: Any,
        load: np.ndarray,
        previous: int | None,
        rng: np.random.Generator | None = None,
    ) -> RoutingDecision:
        """`rng`: the conversation's own random stream, so a conversation routes the same whatever
        ran before it or beside it (sharded across workers, resumed elsewhere)."""
        return self.rank(requirement, step_vector, matrix, context, load, previous, rng)[0]

    def rank(
        self,
        requirement: np.ndarray,
        step_vector: np.ndarray,
        matrix: CapabilityMatrix,
        context: Any,
        load: np.ndarray,
        previous: int | None,
        rng: np.random.Generator | None = None,
    ) -> tuple[RoutingDecision, np.ndarray]:
        """The decision and every agent's index best first: the trace keeps the first
        `trace_scores`, failover and fan-out may need more while the turn runs.
        `context` is an (N, d) array or anything with `@` to a step vector (`AgentContexts`)."""
        cfg = self.config
        rng = self.rng if rng is None else rng
        mean = matrix.mean()
        if cfg.exploration == "thompson":
            m_used = matrix.sample(rng)
        elif cfg.exploration == "ucb":
            m_used = mean + cfg.ucb_c * np.sqrt(matrix.var())
        else:
            m_used = mean
        n = len(self.names)
        cap = m_used @ requirement
        cap_mean = mean @ requirement
        ctx = cfg.beta * (context @ step_vector)
        load_term = -cfg.gamma * np.asarray(load, dtype=np.float64)
        switch = np.zeros(n)
        if previous is not None:
            switch = -cfg.delta * (np.arange(n) != previous)
        score = cap + ctx + load_term + switch
        greedy = cap_mean + ctx + load_term + switch
        if cfg.exploration == "random":  # the routing ablation: any agent, uniformly
            score = score + 10.0 * rng.random(n)
        order = np.argsort(-score, kind="stable")
        top2 = np.sort(greedy)[::-1][:2]
        confidence = float(top2[0] - top2[1]) if len(top2) > 1 else 1.0
        best = int(order[0])
        columns = (score, cap, cap_mean, ctx, load_term, switch)  # in _TERMS order; float32 ctx widens exactly
        if cfg.trace_scores is None or cfg.trace_scores >= n:
            keep, kept = order, np.arange(n, dtype=np.int32)
            terms = np.column_stack(columns).astype(np.float64, copy=False)
        else:
            keep = order[: cfg.trace_scores]
            kept = np.sort(keep).astype(np.int32)
            terms = np.column_stack([col[kept] for col in columns]).astype(np.float64, copy=False)
        decision = trusted(
            RoutingDecision,
            chosen=self.names[best],
            chosen_index=best,
            ranked=keep.tolist(),
            scores=AgentScores(self.names, kept, terms),
            confidence=confidence,
            exploration=cfg.exploration,
        )
        return decision, order
