"""Where the server keeps conversations: a small protocol, and the in-memory store behind it.

The protocol is what the app depends on, so a durable store (`rapo.server.durable`) can replace the
in-memory one without touching the routes.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from typing import Iterator, Protocol, runtime_checkable

from rapo.state import ConversationState
from rapo.types import RapoError

DEFAULT_MAX_CONVERSATIONS = 10_000


class StoreFull(RapoError):
    """No room for one more conversation: the app answers 429 with this message."""


class Damaged(RapoError):
    """A stored conversation could not be read back; it was quarantined (the app answers 500)."""


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

    def info(self) -> "ConversationInfo":
        records = self.records
        return ConversationInfo(id=self.id, created=self.created, origin=self.origin, title=self.title,
                                turns=len(records), last_text=records[-1].text if records else None)


@dataclass
class ConversationInfo:
    """What a listing shows of a conversation, known without loading it."""

    id: str
    created: float
    origin: str = "rest"
    title: str | None = None
    turns: int = 0
    last_text: str | None = None


@runtime_checkable
class ConversationStore(Protocol):
    """Create, get, list and delete conversations; safe to call from several threads and tasks."""

    def create(self, state: ConversationState, *, origin: str = "rest",
               title: str | None = None) -> StoredConversation: ...

    def get(self, conversation_id: str) -> StoredConversation | None: ...

    def list(self) -> list[StoredConversation]: ...

    def page(self, offset: int, limit: int) -> tuple[list[ConversationInfo], int]:
        """Conversations `offset` .. `offset + limit` in creation order, and how many there are."""
        ...

    def delete(self, conversation_id: str) -> bool: ...


class InMemoryStore:
    """Conversations in a dict, oldest first; a threading lock guards the dict (turns are serialised
    per conversation by the entry's asyncio lock, not here). `max_conversations` bounds memory: past
    it a new conversation is refused (`StoreFull`), never made room for by dropping an old one, since
    without a durable store that would delete someone's history."""

    def __init__(self, max_conversations: int = DEFAULT_MAX_CONVERSATIONS) -> None:
        if max_conversations < 1:
            raise RapoError(f"max_conversations={max_conversations}: allow at least 1")
        self.max_conversations = max_conversations
        self._items: dict[str, StoredConversation] = {}
        self._lock = threading.RLock()

    def create(self, state: ConversationState, *, origin: str = "rest",
               title: str | None = None) -> StoredConversation:
        entry = StoredConversation(state=state, origin=origin, title=title)
        with self._lock:
            if state.id in self._items:
                raise KeyError(f"conversation {state.id!r} already exists")
            if len(self._items) >= self.max_conversations:
                raise StoreFull(
                    f"this server already holds its limit of {self.max_conversations} conversations in memory "
                    "and has no store to unload them to, so no new one was created (none was dropped either). "
                    "Delete finished ones (DELETE /conversations/{id}), or restart the server with a larger "
                    "--max-conversations or with --store sqlite:///conversations.db, which unloads idle "
                    "conversations from memory and keeps them all")
            self._items[state.id] = entry
        return entry

    def get(self, conversation_id: str) -> StoredConversation | None:
        with self._lock:
            return self._items.get(conversation_id)

    def list(self) -> list[StoredConversation]:
        """The conversations in memory (in a durable store, the loaded ones: `page` lists them all)."""
        with self._lock:
            return list(self._items.values())

    def page(self, offset: int, limit: int) -> tuple[list[ConversationInfo], int]:
        with self._lock:
            entries = list(self._items.values())
        return [e.info() for e in entries[offset:offset + limit]], len(entries)

    def delete(self, conversation_id: str) -> bool:
        with self._lock:
            return self._items.pop(conversation_id, None) is not None

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def __iter__(self) -> Iterator[StoredConversation]:
        return iter(self.list())
