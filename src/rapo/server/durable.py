"""Conversations that survive a restart: kept in memory for speed, written through to a `rapo.store`
Store (SQLite file or any SQLAlchemy database) after creation and after every turn, loaded on start.

Layout, in one run per team (`serve/<team name>` unless given): `meta/<id>` (created, origin, title),
and the orchestrator's checkpoint, `conversation/<id>` with `team` (its learned counts), written in one
transaction per turn. A deleted conversation's documents are overwritten by tombstones (its content is
gone; the Store protocol has no per-key delete).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rapo.checkpoint import conversation_snapshot
from rapo.server.store import InMemoryStore, StoredConversation
from rapo.state import ConversationState
from rapo.store import Store, open_store
from rapo.types import RapoError

if TYPE_CHECKING:
    from rapo.orchestrator import Orchestrator

_DELETED = {"deleted": True}


class DurableConversationStore(InMemoryStore):
    """An `InMemoryStore` whose every change is also written, in order, to `store` by one writer thread
    (the event loop never waits on the database except for the turn it answers)."""

    def __init__(self, store: Store, *, run_id: str | None = None, max_conversations: int = 10_000) -> None:
        super().__init__(max_conversations)
        self.store = store
        self.run_id = run_id
        self._orch: Orchestrator | None = None
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rapo-durable")

    @classmethod
    def open(cls, url: str | Path, **kwargs: Any) -> "DurableConversationStore":
        """On `open_store(url)`: sqlite:///path.db, a path, or a SQLAlchemy URL."""
        return cls(open_store(url), **kwargs)

    def attach(self, orch: Orchestrator) -> None:
        """Bind to the app's orchestrator and load what the store has: every conversation, newest
        `max_conversations`, in creation order, and the team's learned counts."""
        if self._orch is not None:
            raise RapoError("this durable store already serves an app; give each app its own")
        self._orch = orch
        self.run_id = self.run_id or f"serve/{orch.team.name}"
        saved: list[tuple[str, dict[str, Any]]] = []
        for key in self.store.keys(self.run_id, "meta/"):
            meta = self.store.get(self.run_id, key)
            if meta and not meta.get("deleted"):
                saved.append((key[len("meta/"):], meta))
        saved.sort(key=lambda item: float(item[1].get("created", 0.0)))
        for cid, meta in saved[-self.max_conversations:]:
            state = orch.restore(self.store, self.run_id, cid)  # also puts the team's counts back
            entry = StoredConversation(state=state, created=float(meta["created"]),
                                       origin=str(meta.get("origin", "rest")), title=meta.get("title"))
            with self._lock:
                self._items[cid] = entry

    # -- writes ------------------------------------------------------------------------------------

    def _write(self, docs: dict[str, dict[str, Any]]) -> Future[None]:
        if self.run_id is None:
            raise RapoError("the durable store is not attached to an app yet (create_app(store=...) does it)")
        return self._writer.submit(self.store.put_many, self.run_id, docs)

    def create(self, state: ConversationState, *, origin: str = "rest",
               title: str | None = None) -> StoredConversation:
        before = {e.id for e in self.list()}
        entry = super().create(state, origin=origin, title=title)
        dropped = before - {e.id for e in self.list()}  # over max_conversations: gone on disk too
        docs = {f"meta/{entry.id}": {"created": entry.created, "origin": origin, "title": title},
                f"conversation/{entry.id}": conversation_snapshot(state)}
        for cid in dropped:
            docs.update(_tombstones(cid))
        self._write(docs).result()
        return entry

    async def saved(self, entry: StoredConversation) -> None:
        """After a turn, while the caller holds the entry's lock: its checkpoint and the team's counts,
        in one transaction, before the turn is answered."""
        if self._orch is None or self.get(entry.id) is not entry:
            return  # deleted (or dropped) while its turn ran: do not bring it back
        orch, run_id = self._orch, self.run_id
        await asyncio.wrap_future(self._writer.submit(orch.checkpoint, entry.state, self.store, run_id))

    def delete(self, conversation_id: str) -> bool:
        gone = super().delete(conversation_id)
        if gone:
            self._write(_tombstones(conversation_id)).result()
        return gone

    def close(self) -> None:
        """Finish pending writes and close the underlying store."""
        self._writer.shutdown(wait=True)
        self.store.close()


def _tombstones(conversation_id: str) -> dict[str, dict[str, Any]]:
    return {f"meta/{conversation_id}": dict(_DELETED), f"conversation/{conversation_id}": dict(_DELETED)}
