"""One place where a job's learned capability counts meet, whichever worker learned them.

Outcome counts add, so merging shards' deltas is exact and order-free. A conversation's delta is
applied once: a task that Ray retries after a worker died replays its conversations, and the hub
ignores what it has already counted, so nothing is doubled (and the progress count stays true).
"""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

Counts = tuple[np.ndarray, np.ndarray]  # successes, failures: (agents, reasoning types)


class CountsHub:
    """Plain Python so it can be tested without Ray; the Ray executor runs it as an actor."""

    def __init__(self) -> None:
        self._counts: dict[str, Counts] = {}
        self._done: dict[str, set[str]] = {}

    def seed(self, key: str, conv_ids: list[str], deltas: list[Counts | None]) -> None:
        """Counts and finished conversations of a resumed run, from its checkpoints."""
        for conv_id, delta in zip(conv_ids, deltas):
            self.add(key, conv_id, delta)
        self._done.setdefault(key, set()).update(conv_ids)

    def counts(self, key: str) -> Counts | None:
        return self._counts.get(key)

    def add(self, key: str, conv_id: str, delta: Counts | None) -> Counts | None:
        """Count a finished conversation (and its learned delta, once); the merged counts now."""
        done = self._done.setdefault(key, set())
        if conv_id not in done:
            done.add(conv_id)
            if delta is not None:
                have = self._counts.get(key)
                s, f = (np.asarray(delta[0], dtype=np.float64), np.asarray(delta[1], dtype=np.float64))
                self._counts[key] = (s.copy(), f.copy()) if have is None else (have[0] + s, have[1] + f)
        return self._counts.get(key)

    def finished(self, key: str, conv_ids: list[str]) -> None:
        """Progress of a system that learns nothing, in batches."""
        self._done.setdefault(key, set()).update(conv_ids)

    def progress(self) -> int:
        return sum(len(d) for d in self._done.values())

    def applied(self, key: str) -> int:
        return len(self._done.get(key, ()))


def learner(system: Any) -> Any:
    """The system's capability matrix when it learns across conversations (rapo), else None."""
    orch = getattr(system, "orchestrator", None)
    if orch is None or not orch.team.routing.learn:
        return None
    return orch.matrix


def set_counts(matrix: Any, counts: Counts) -> None:
    matrix.successes[...] = counts[0]
    matrix.failures[...] = counts[1]


class HubLink:
    """A shard's side of the hub. A learning system starts from the merged counts and, after each
    conversation, sends what that conversation learned (its delta) and takes the merged counts back;
    one that learns nothing only reports progress, in batches. `call` waits for the hub's answer,
    `send` does not (with Ray: `ray.get(actor.m.remote(...))` and `actor.m.remote(...)`)."""

    def __init__(self, call: Callable[..., Any], send: Callable[..., Any], key: str, matrix: Any) -> None:
        self.call, self.send, self.key, self.matrix = call, send, key, matrix
        self.base: Counts | None = None
        self.batch: list[str] = []
        self.last = time.monotonic()

    def begin(self) -> None:
        if self.matrix is not None and self.base is None:
            self._take(self.call("counts", self.key))

    def delta(self) -> Counts | None:
        if self.matrix is None or self.base is None:
            return None
        s, f = self.matrix.counts()
        return s - self.base[0], f - self.base[1]

    def done(self, conv_id: str, delta: Counts | None) -> None:
        if self.matrix is not None and delta is not None:
            self._take(self.call("add", self.key, conv_id, delta))
            return
        self.batch.append(conv_id)
        if len(self.batch) >= 25 or time.monotonic() - self.last > 0.25:
            self.flush()

    def flush(self) -> None:
        if self.batch:
            self.send("finished", self.key, self.batch)
        self.batch, self.last = [], time.monotonic()

    def _take(self, merged: Counts | None) -> None:
        if merged is not None:
            set_counts(self.matrix, merged)
        self.base = self.matrix.counts()


def saved_deltas(docs: dict[str, dict[str, Any]]) -> tuple[list[str], list[Counts]]:
    """Finished conversations' learned deltas from a job's checkpoints (conversation id -> doc)."""
    from rapo.checkpoint import restore_counts

    ids, deltas = [], []
    for conv_id, doc in docs.items():
        d = doc.get("delta")
        ids.append(conv_id)
        deltas.append(restore_counts(d) if d else None)
    return ids, deltas  # type: ignore[return-value]
