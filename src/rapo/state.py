"""Agent and conversation state: S_i = (P_i, C_i, M_i) and the global state Phi.

The capability matrix M is shared by every conversation of a team (it is what the team learns);
context vectors C and the facts ledger belong to one conversation.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

import numpy as np

from rapo.team import TeamSpec
from rapo.types import Embedder

if TYPE_CHECKING:
    from rapo.ledger import Ledger


class CapabilityMatrix:
    """Beta-Bernoulli posterior per (agent, reasoning type): successes `a`, failures `b`.

    The declared capability p with strength s becomes the prior Beta(p*s + 1, (1-p)*s + 1); outcomes
    add counts, so merging counts from several workers is exact and order-free.
    """

    def __init__(self, prior: np.ndarray, strength: float) -> None:
        prior = np.clip(np.asarray(prior, dtype=np.float64), 0.0, 1.0)
        self.prior_a = prior * strength + 1.0
        self.prior_b = (1.0 - prior) * strength + 1.0
        self.successes = np.zeros_like(prior)
        self.failures = np.zeros_like(prior)
        self._lock = threading.Lock()

    @classmethod
    def from_team(cls, team: TeamSpec, default: float = 0.5) -> "CapabilityMatrix":
        types = team.reasoning_types
        prior = np.array([[a.capabilities.get(k, default) for k in types] for a in team.agents])
        return cls(prior, team.routing.prior_strength)

    @property
    def a(self) -> np.ndarray:
        return self.prior_a + self.successes

    @property
    def b(self) -> np.ndarray:
        return self.prior_b + self.failures

    def mean(self) -> np.ndarray:
        a, b = self.a, self.b
        return a / (a + b)

    def var(self) -> np.ndarray:
        a, b = self.a, self.b
        n = a + b
        return a * b / (n * n * (n + 1.0))

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        return rng.beta(self.a, self.b)

    def update(self, agent: int, requirement: np.ndarray, success: bool) -> None:
        """Credit one outcome to the agent, spread over reasoning types by the step's requirement."""
        r = np.asarray(requirement, dtype=np.float64)
        with self._lock:
            if success:
                self.successes[agent] += r
            else:
                self.failures[agent] += r

    def counts(self) -> tuple[np.ndarray, np.ndarray]:
        return self.successes.copy(), self.failures.copy()

    def merge(self, successes: np.ndarray, failures: np.ndarray) -> None:
        with self._lock:
            self.successes += successes
            self.failures += failures


@dataclass
class ConversationState:
    """Phi for one conversation: the ledger, each agent's context vector C_i, the global c."""

    id: str
    ledger: "Ledger"
    context: np.ndarray  # (N, d): C_i, unit rows or zero before the agent has seen anything
    global_context: np.ndarray  # (d,)
    turn: int = 0
    previous_agent: int | None = None
    last_answer: str | None = None
    last_question: str | None = None
    records: list = field(default_factory=list)  # TurnRecord, in order

    @classmethod
    def new(cls, conv_id: str, n_agents: int, embedder: Embedder) -> "ConversationState":
        from rapo.ledger import Ledger

        d = embedder.dim
        return cls(
            id=conv_id,
            ledger=Ledger(embedder),
            context=np.zeros((n_agents, d), dtype=np.float32),
            global_context=np.zeros(d, dtype=np.float32),
        )

    def absorb(self, agents: Sequence[int], vector: np.ndarray, rate: float = 0.5) -> None:
        """Move the agents' context vectors (and the global one) toward what they just saw."""
        idx = np.asarray(agents, dtype=np.int64)
        if idx.size:
            moved = (1.0 - rate) * self.context[idx] + rate * vector
            norms = np.linalg.norm(moved, axis=1, keepdims=True)
            self.context[idx] = moved / np.where(norms > 0, norms, 1.0)
        g = 0.8 * self.global_context + 0.2 * vector
        n = float(np.linalg.norm(g))
        self.global_context = g / n if n > 0 else g
