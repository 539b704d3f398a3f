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
    from rapo.memory import Ledger, Memory


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

    def mean_row(self, agent: int) -> np.ndarray:
        """`mean()[agent]`, the same numbers, without the other N-1 rows."""
        a = self.prior_a[agent] + self.successes[agent]
        return a / (a + (self.prior_b[agent] + self.failures[agent]))

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


def _toward(rows: np.ndarray, vector: np.ndarray, rate: float) -> tuple[np.ndarray, np.ndarray]:
    """The rows moved toward `vector` and renormalised (a zero result stays zero), and their norms.
    The norm is `np.linalg.norm(x, axis=1, keepdims=True)`'s arithmetic without its wrapper's overhead."""
    moved = (1.0 - rate) * rows + rate * vector
    norms = np.sqrt(np.add.reduce(moved * moved, axis=1, keepdims=True))
    return moved / np.where(norms > 0, norms, 1.0), norms


class AgentContexts:
    """The agents' context vectors C_i of one conversation, as an (N, d) matrix that stores only
    what it must: small teams keep the dense matrix; larger ones keep the nonzero rows (the agents
    that have acted, in agent order), so 1,000 agents cost a few rows per conversation, not 1.5 MB.

    `ctx @ v` gives every agent's C_i·v (zero for an agent that has seen nothing), `np.asarray(ctx)`
    the dense matrix, `ctx.shape` (N, d)."""

    DENSE_MAX_AGENTS = 16  # up to here the dense matrix is small and its product is the one BLAS call

    __slots__ = ("n", "dim", "agents", "rows")

    def __init__(self, n_agents: int, dim: int, dtype: np.dtype | type = np.float32) -> None:
        self.n, self.dim = n_agents, dim
        dense = n_agents <= self.DENSE_MAX_AGENTS
        self.agents: np.ndarray | None = None if dense else np.zeros(0, dtype=np.int32)  # None: dense
        self.rows = np.zeros((n_agents if dense else 0, dim), dtype=dtype)

    @classmethod
    def from_dense(cls, matrix: np.ndarray) -> "AgentContexts":
        matrix = np.asarray(matrix)
        out = cls(matrix.shape[0], matrix.shape[1], matrix.dtype)
        if out.agents is None:
            out.rows = matrix.copy()
        else:
            out.agents = np.flatnonzero(np.any(matrix != 0, axis=1)).astype(np.int32)
            out.rows = matrix[out.agents].copy()
        return out

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n, self.dim)

    @property
    def dtype(self) -> np.dtype:
        return self.rows.dtype

    def __array__(self, dtype: np.dtype | None = None, copy: bool | None = None) -> np.ndarray:
        if self.agents is None:
            dense = self.rows.copy() if copy else self.rows
        else:
            dense = np.zeros((self.n, self.dim), dtype=self.rows.dtype)
            dense[self.agents] = self.rows
        return dense if dtype is None else dense.astype(dtype, copy=False)

    def __matmul__(self, vector: np.ndarray) -> np.ndarray:
        if self.agents is None:
            return self.rows @ vector
        sims = self.rows @ vector
        out = np.zeros(self.n, dtype=sims.dtype)
        out[self.agents] = sims
        return out

    def absorb(self, agents: Sequence[int], vector: np.ndarray, rate: float) -> None:
        """Move the agents' rows toward `vector` and renormalise (a zero row stays zero)."""
        if not len(agents):
            return
        idx = np.asarray(agents, dtype=np.int64)
        if self.agents is None:
            self.rows[idx] = _toward(self.rows[idx], vector, rate)[0]
            return
        idx = np.unique(idx)
        pos = np.searchsorted(self.agents, idx)
        present = pos < len(self.agents)
        present[present] = self.agents[pos[present]] == idx[present]
        current = np.zeros((len(idx), self.dim), dtype=self.rows.dtype)
        current[present] = self.rows[pos[present]]
        moved, norms = _toward(current, vector, rate)
        self.rows[pos[present]] = moved[present]
        new = ~present & (norms[:, 0] > 0)  # only nonzero rows are stored
        if new.any():
            agents = np.concatenate([self.agents, idx[new].astype(np.int32)])
            rows = np.concatenate([self.rows, moved[new].astype(self.rows.dtype, copy=False)])
            order = np.argsort(agents, kind="stable")
            self.agents, self.rows = agents[order], rows[order]


@dataclass
class ConversationState:
    """Phi for one conversation: its memory (passages and ledger), each agent's context vector C_i,
    the global c."""

    id: str
    memory: "Memory"
    context: AgentContexts  # (N, d): C_i, unit rows or zero before the agent has seen anything
    global_context: np.ndarray  # (d,)
    turn: int = 0
    previous_agent: int | None = None
    last_answer: str | None = None
    last_question: str | None = None
    records: list = field(default_factory=list)  # TurnRecord, in order
    rng: np.random.Generator | None = None  # routing exploration's stream (Orchestrator.new_conversation)

    def __post_init__(self) -> None:
        if not isinstance(self.context, AgentContexts):  # a dense (N, d) array, e.g. from a checkpoint
            self.context = AgentContexts.from_dense(self.context)

    @property
    def ledger(self) -> "Ledger":
        return self.memory.ledger

    @classmethod
    def new(cls, conv_id: str, n_agents: int, embedder: Embedder) -> "ConversationState":
        from rapo.memory import Memory

        d = embedder.dim
        return cls(
            id=conv_id,
            memory=Memory(embedder),
            context=AgentContexts(n_agents, d),
            global_context=np.zeros(d, dtype=np.float32),
        )

    def absorb(self, agents: Sequence[int], vector: np.ndarray, rate: float = 0.5) -> None:
        """Move the agents' context vectors (and the global one) toward what they just saw."""
        self.context.absorb(agents, vector, rate)
        g = 0.8 * self.global_context + 0.2 * vector
        n = float(np.sqrt(g.dot(g)))  # what np.linalg.norm computes for a vector, without its overhead
        self.global_context = g / n if n > 0 else g
