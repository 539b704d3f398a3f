"""Conversation and team state as plain JSON-able data, so a store can checkpoint every transition
and any process can resume it (the ledger, context vectors, trace and the learned counts)."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

from rapo.memory import Ledger, Memory
from rapo.state import AgentContexts, CapabilityMatrix, ConversationState
from rapo.types import Embedder, RapoError

FORMAT = 1


def _pack(a: np.ndarray) -> dict[str, Any]:
    arr = np.ascontiguousarray(a)
    return {"dtype": str(arr.dtype), "shape": list(arr.shape), "data": base64.b64encode(arr.tobytes()).decode()}


def _unpack(d: dict[str, Any]) -> np.ndarray:
    return np.frombuffer(base64.b64decode(d["data"]), dtype=np.dtype(d["dtype"])).reshape(d["shape"]).copy()


def _pack_contexts(ctx: AgentContexts) -> dict[str, Any]:
    """A large team's context vectors as the rows it stores (the agents that have acted): a
    1,000-agent conversation checkpoints a few KiB, not the 1.5 MB dense matrix, every transition."""
    if ctx.agents is None:
        return _pack(np.asarray(ctx))
    return {"sparse": True, "n": ctx.n, "agents": _pack(ctx.agents), "rows": _pack(ctx.rows)}


def _unpack_contexts(d: dict[str, Any]) -> np.ndarray | AgentContexts:
    if not d.get("sparse"):
        return _unpack(d)  # the dense matrix (small teams, and checkpoints written before sparse ones)
    rows, agents = _unpack(d["rows"]), _unpack(d["agents"]).astype(np.int32)
    n = int(d["n"])
    if rows.ndim != 2 or len(agents) != len(rows) or (len(agents) and not 0 <= agents.min() <= agents.max() < n):
        raise RapoError("conversation checkpoint is corrupt: its sparse context rows do not match their agents")
    ctx = AgentContexts(n, rows.shape[1], rows.dtype)
    if ctx.agents is None:  # a team this small is kept dense
        dense = np.zeros((n, rows.shape[1]), dtype=rows.dtype)
        dense[agents] = rows
        return dense
    ctx.agents, ctx.rows = agents, rows
    return ctx


def conversation_snapshot(conv: ConversationState) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "id": conv.id,
        "turn": conv.turn,
        "previous_agent": conv.previous_agent,
        "last_answer": conv.last_answer,
        "last_question": conv.last_question,
        "context": _pack_contexts(conv.context),
        "global_context": _pack(conv.global_context),
        "memory": conv.memory.snapshot(),
        "records": [r.model_dump(mode="json") if hasattr(r, "model_dump") else r for r in conv.records],
        "rng": None if conv.rng is None else conv.rng.bit_generator.state,
    }


def restore_conversation(data: dict[str, Any], embedder: Embedder) -> ConversationState:
    from rapo.orchestrator import TurnRecord

    if data.get("format") != FORMAT:
        raise RapoError(f"conversation checkpoint format {data.get('format')!r} is not one this rapo reads ({FORMAT})")
    return ConversationState(
        id=str(data["id"]),
        memory=_restore_memory(data, embedder),
        context=_unpack_contexts(data["context"]),
        global_context=_unpack(data["global_context"]),
        turn=int(data["turn"]),
        previous_agent=data["previous_agent"],
        last_answer=data["last_answer"],
        last_question=data["last_question"],
        records=[TurnRecord.model_validate(r) for r in data["records"]],
        rng=_restore_rng(data.get("rng")),
    )


def _restore_memory(data: dict[str, Any], embedder: Embedder) -> Memory:
    """A checkpoint's memory; one written before passages were kept has only its ledger."""
    if "memory" in data:
        return Memory.restore(embedder, data["memory"])
    memory = Memory(embedder)
    memory.ledger = Ledger.restore(embedder, data["ledger"])
    return memory


def _restore_rng(state: dict[str, Any] | None) -> np.random.Generator | None:
    if state is None:
        return None
    rng = np.random.default_rng()
    rng.bit_generator.state = state
    return rng


def counts_snapshot(successes: np.ndarray, failures: np.ndarray) -> dict[str, Any]:
    """Outcome counts (a matrix's, or what one conversation added to them) as JSON-able data."""
    return {"format": FORMAT, "successes": _pack(successes), "failures": _pack(failures)}


def restore_counts(data: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    return _unpack(data["successes"]), _unpack(data["failures"])


def matrix_snapshot(m: CapabilityMatrix) -> dict[str, Any]:
    return counts_snapshot(*m.counts())


def restore_matrix_counts(m: CapabilityMatrix, data: dict[str, Any]) -> None:
    """Put saved outcome counts back (the priors come from the team file, as at the start)."""
    s, f = restore_counts(data)
    if s.shape != m.successes.shape:
        raise RapoError(f"saved capability counts have shape {s.shape}, this team's matrix {m.successes.shape}: "
                        "the checkpoint belongs to a different team")
    m.successes[...] = s
    m.failures[...] = f
