"""Capability routing: score_i = M[i]·r + beta·cos(C_i, e(s)) - gamma·load_i - delta·[i != previous].

Every term is kept per agent so a trace can explain the choice.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel

from rapo.state import CapabilityMatrix
from rapo.team import RoutingConfig


class AgentScore(BaseModel):
    agent: str
    score: float
    capability: float  # M[i]·r with the matrix used for the decision (sampled when exploring)
    capability_mean: float  # posterior-mean M[i]·r, for reading the trace
    context: float  # beta * cos(C_i, e(s))
    load: float  # -gamma * load_i
    switch: float  # -delta * [i != previous]


class RoutingDecision(BaseModel):
    chosen: str
    chosen_index: int
    ranked: list[int]  # agent indices, best first
    scores: list[AgentScore]
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
        context: np.ndarray,
        load: np.ndarray,
        previous: int | None,
    ) -> RoutingDecision:
        cfg = self.config
        mean = matrix.mean()
        if cfg.exploration == "thompson":
            m_used = matrix.sample(self.rng)
        elif cfg.exploration == "ucb":
            m_used = mean + cfg.ucb_c * np.sqrt(matrix.var())
        else:
            m_used = mean
        cap = m_used @ requirement
        cap_mean = mean @ requirement
        ctx = cfg.beta * (context @ step_vector)
        load_term = -cfg.gamma * np.asarray(load, dtype=np.float64)
        switch = np.zeros(len(self.names))
        if previous is not None:
            switch = -cfg.delta * (np.arange(len(self.names)) != previous)
        score = cap + ctx + load_term + switch
        greedy = cap_mean + ctx + load_term + switch
        if cfg.exploration == "random":  # the routing ablation: any agent, uniformly
            score = score + 10.0 * self.rng.random(len(self.names))
        ranked = [int(i) for i in np.argsort(-score, kind="stable")]
        top2 = np.sort(greedy)[::-1][:2]
        confidence = float(top2[0] - top2[1]) if len(top2) > 1 else 1.0
        best = ranked[0]
        scores = [
            AgentScore.model_construct(
                agent=n,
                score=float(score[i]),
                capability=float(cap[i]),
                capability_mean=float(cap_mean[i]),
                context=float(ctx[i]),
                load=float(load_term[i]),
                switch=float(switch[i]),
            )
            for i, n in enumerate(self.names)
        ]
        return RoutingDecision(
            chosen=self.names[best],
            chosen_index=best,
            ranked=ranked,
            scores=scores,
            confidence=confidence,
            exploration=cfg.exploration,
        )
