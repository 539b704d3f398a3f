"""Where the server keeps conversations: a small protocol, and the in-memory store behind it.

The protocol is what the app depends on, so a durable store (SQLite, from the distributed/durable
issue) can replace the in-memory one without touching the routes.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from typing import Iterator, Protocol, runtime_checkable

from rapo.state import ConversationState


@dataclass
class StoredConversation:
    """One conversation as the server holds it: rapo's state (ledger, context vectors, TurnRecords),
    when and through which API it was created, and the lock that serialises its turns."""

    state: ConversationState
    created: float = field(default_factory=time.time)
    origin: str = "rest"  # rest | openai
    title: str | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def id(self) -> str:
        return self.state.id

    @property
    def records(self) -> list:
        return self.state.records


@runtime_checkable
class ConversationStore(Protocol):
    """Create, get, list and delete conversations; safe to call from several threads and tasks."""

    def create(self, state: ConversationState, *, origin: str = "rest",
               title: str | None = None) -> StoredConversation: ...

    def get(self, conversation_id: str) -> StoredConversation | None: ...

    def list(self) -> list[StoredConversation]: ...

    def delete(self, conversation_id: str) -> bool: ...


class InMemoryStore:
    """Conversations in a dict, oldest first; a threading lock guards the dict (turns are serialised
    per conversation by the entry's asyncio lock, not here). `max_conversations` bounds memory:
    creating one more drops the oldest that has no turn running."""

    def __init__(self, max_conversations: int = 10_000) -> None:
        if max_conversations < 1:
            raise ValueError("max_conversations must be at least 1")
        self.max_conversations = max_conversations
        self._items: dict[str, StoredConversation] = {}
        self._lock = threading.Lock()

    def create(self, state: ConversationState, *, origin: str = "rest",
               title: str | None = None) -> StoredConversation:
        entry = StoredConversation(state=state, origin=origin, title=title)
        with self._lock:
            if state.id in self._items:
                raise KeyError(f"conversation {state.id!r} already exists")
            while len(self._items) >= self.max_conversations:
                idle = next((k for k, v in self._items.items() if not v.lock.locked()), None)
                if idle is None:
                    break
                del self._items[idle]
            self._items[state.id] = entry
        return entry

    def get(self, conversation_id: str) -> StoredConversation | None:
        with self._lock:
            return self._items.get(conversation_id)

    def list(self) -> list[StoredConversation]:
        with self._lock:
            return list(self._items.values())

    def delete(self, conversation_id: str) -> bool:
        with self._lock:
            return self._items.pop(conversation_id, None) is not None

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def __iter__(self) -> Iterator[StoredConversation]:
        return iter(self.list())
