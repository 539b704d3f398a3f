"""Conversations that survive a restart: written through to a `rapo.store` Store (SQLite file or any
SQLAlchemy database) after creation and after every turn, before the answer goes out, and kept in
memory only while they are in use.

Layout, in one run per team (`serve/<team name>` unless given):

- `meta/<id>`: created, origin, title, turns, the last turn's text (what a listing shows);
- `journal/<id>/base`: a full `conversation_snapshot`, and `journal/<id>/t<seq>`: what each turn
  changed since (`rapo.checkpoint.diff`), folded into a new base once the deltas add up to the base's
  size (or number `compact_every`), so a turn writes about the same bytes at turn 400 as at turn 1,
  compactions included, and a restore replays at most about one base's worth of deltas;
- `team`: the team's learned counts; `chat/<key>`: which conversation an OpenAI-style chat continues.

Memory: at most `max_conversations` are loaded; past that the least recently used idle one is
unloaded (it is already on disk) and loaded again on its next access. Nothing is deleted but by
DELETE. A stored document that cannot be read back is moved to `quarantine/<key>`, text intact, with a
warning naming it, and the rest loads. The server holds the run's lease (`rapo.store.lease`), so a
second server on the same store and team is refused instead of writing over the first.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rapo.checkpoint import conversation_snapshot, diff, marks, replay, restore_conversation
from rapo.server.store import (DEFAULT_MAX_CONVERSATIONS, ConversationInfo, Damaged, InMemoryStore,
                               StoredConversation)
from rapo.state import ConversationState
from rapo.store import Store, open_store
from rapo.store.lease import Lease
from rapo.types import RapoError

if TYPE_CHECKING:
    from rapo.orchestrator import Orchestrator

log = logging.getLogger("rapo.server")
_DELETED = {"deleted": True}
COMPACT_EVERY = 256


def _seq_key(cid: str, seq: int) -> str:
    return f"journal/{cid}/t{seq:09d}"


def _size(doc: Any) -> int:
    return len(json.dumps(doc, separators=(",", ":")))


@dataclass
class _Journal:
    """Where a loaded conversation's journal stands: the marks of what was last written, the last
    delta's number, the base's, and the bytes of the base and of the deltas since."""

    marks: Any
    seq: int = 0
    base: int = 0
    base_bytes: int = 0
    since_bytes: int = 0
    written: bool = True  # False while the base exists only as the meta's random stream (no turn yet)

    def full_next(self) -> None:
        """What the store has is unknown (a write failed): the next write is a full snapshot."""
        self.since_bytes = self.base_bytes + 1


class DurableConversationStore(InMemoryStore):
    """An `InMemoryStore` of the conversations in use, over a `Store` that has them all; one writer
    thread does every database call in order (the event loop waits only for the turn it answers)."""

    def __init__(self, store: Store, *, run_id: str | None = None,
                 max_conversations: int = DEFAULT_MAX_CONVERSATIONS, compact_every: int = COMPACT_EVERY,
                 where: str | None = None, force: bool = False) -> None:
        super().__init__(max_conversations)
        if compact_every < 1:
            raise RapoError(f"compact_every={compact_every}: give at least 1")
        self.store = store
        self.run_id = run_id
        self.compact_every = compact_every
        self.where = where or str(getattr(store, "path", None) or getattr(store, "url", "the store"))
        self.force = force
        self.quarantined: list[str] = []  # keys moved aside since this store opened
        self.lease: Lease | None = None
        self._orch: Orchestrator | None = None
        self._items: OrderedDict[str, StoredConversation] = OrderedDict()  # loaded, least recently used first
        self._index: dict[str, ConversationInfo] = {}  # every stored conversation, in creation order
        self._journal: dict[str, _Journal] = {}
        self._load_lock = threading.RLock()
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rapo-durable")

    @classmethod
    def open(cls, url: str | Path, **kwargs: Any) -> "DurableConversationStore":
        """On `open_store(url)`: sqlite:///path.db, a path, or a SQLAlchemy URL."""
        from rapo.store.sql import mask_url

        return cls(open_store(url), where=kwargs.pop("where", mask_url(str(url))), **kwargs)

    def __len__(self) -> int:
        with self._lock:
            return len(self._index)

    # -- start-up ------------------------------------------------------------------------------

    def attach(self, orch: Orchestrator) -> None:
        """Bind to the app's orchestrator: take the run's lease, put the team's learned counts back,
        index every stored conversation and load the newest `max_conversations`."""
        if self._orch is not None:
            raise RapoError("this durable store already serves an app; give each app its own")
        self.run_id = self.run_id or f"serve/{orch.team.name}"
        self.lease = Lease(self.store, self.run_id, where=self.where).acquire(self.force)
        if self.lease.note:
            log.warning("rapo: %s", self.lease.note)
        self.lease.start()
        self._orch = orch
        team = self._read("team")
        if team is not None:
            try:
                orch.load_team_state(team)
            except (RapoError, KeyError, TypeError, ValueError) as err:
                self._quarantine("team", f"the team's learned counts do not load ({err}); learning starts afresh")
        found: list[ConversationInfo] = []
        for key in self._call(self.store.keys, self.run_id, "meta/"):
            meta = self._read(key)
            if meta is None or meta.get("deleted"):
                continue
            try:
                found.append(ConversationInfo(id=key[len("meta/"):], created=float(meta["created"]),
                                              origin=str(meta.get("origin", "rest")), title=meta.get("title"),
                                              turns=int(meta.get("turns", 0)), last_text=meta.get("last_text")))
            except (KeyError, TypeError, ValueError) as err:
                self._quarantine(key, f"its metadata is not readable ({err!r})")
        found.sort(key=lambda info: info.created)
        with self._lock:
            self._index = {info.id: info for info in found}
        for info in found[-self.max_conversations:]:
            try:
                self.get(info.id)
            except Damaged:
                pass  # quarantined with a warning; the others load

    # -- the writer thread ----------------------------------------------------------------------

    def _call(self, fn: Any, *args: Any) -> Any:
        """Run a store call on the writer thread, after every write queued before it, and wait."""
        return self._writer.submit(fn, *args).result()

    def _read(self, key: str) -> dict[str, Any] | None:
        """A document, or None after quarantining one that does not parse."""
        assert self.run_id is not None
        try:
            return self._call(self.store.get, self.run_id, key)
        except RapoError as err:
            if "is corrupt" not in str(err):
                raise  # a damaged file, not a damaged row: the store's message says how to recover
            self._quarantine(key, "it is not valid JSON")
            return None

    def _quarantine(self, key: str, reason: str) -> str:
        assert self.run_id is not None
        target = self._call(self.store.quarantine, self.run_id, key, reason)
        self.quarantined.append(key)
        log.warning("rapo: the stored document %r of run %r in %s is damaged: %s. It was moved to %r with "
                    "its text unchanged; everything else loads as usual.", key, self.run_id, self.where,
                    reason, target)
        return target

    def _write(self, docs: dict[str, dict[str, Any]], delete: list[str] | None = None) -> Future[None]:
        if self.run_id is None:
            raise RapoError("the durable store is not attached to an app yet (create_app(store=...) does it)")
        return self._writer.submit(self.store.put_many, self.run_id, docs, delete or [])

    # -- loading and unloading ------------------------------------------------------------------

    def get(self, conversation_id: str) -> StoredConversation | None:
        with self._load_lock:
            with self._lock:
                entry = self._items.get(conversation_id)
                if entry is not None:
                    self._items.move_to_end(conversation_id)
                    return entry
                info = self._index.get(conversation_id)
            if info is None:
                return None
            state = self._load(info)
            entry = StoredConversation(state=state, created=info.created, origin=info.origin, title=info.title)
            with self._lock:
                self._make_room()
                self._items[conversation_id] = entry
            return entry

    def _load(self, info: ConversationInfo) -> ConversationState:
        assert self._orch is not None and self.run_id is not None
        cid = info.id
        keys = self._call(self.store.keys, self.run_id, f"journal/{cid}/")
        try:
            base_doc = self._read(f"journal/{cid}/base")
            if base_doc is None:
                legacy = self._read(f"conversation/{cid}")  # written by rapo before the journal
                base_doc = None if legacy is None else {"seq": 0, "snapshot": legacy}
            written = base_doc is not None
            if base_doc is None and info.turns == 0:
                base_doc = self._fresh_base(cid)
            if base_doc is None:
                raise ValueError("its checkpoint is missing")
            journal = _Journal(None, int(base_doc["seq"]), int(base_doc["seq"]), _size(base_doc), written=written)
            deltas = []
            for key in keys:
                if key == f"journal/{cid}/base" or int(key.rsplit("/t", 1)[1]) <= journal.base:
                    continue
                doc = self._read(key)
                if doc is None:
                    raise ValueError(f"its journal entry {key} is not valid JSON")
                deltas.append(doc["ops"])
                journal.seq, journal.since_bytes = int(doc["seq"]), journal.since_bytes + _size(doc)
            snap = replay(base_doc["snapshot"], deltas)
            state = restore_conversation(snap, self._orch.embedder)
            if state.context.shape[0] != len(self._orch.agents):
                raise ValueError(f"it has {state.context.shape[0]} agents, this team {len(self._orch.agents)}")
            if state.id != cid:
                raise ValueError(f"its checkpoint is of conversation {state.id!r}")
        except (RapoError, KeyError, TypeError, ValueError, IndexError, AttributeError) as err:
            reason = str(err) if isinstance(err, (RapoError, ValueError)) else f"{type(err).__name__}: {err}"
            moved = [self._quarantine(k, f"conversation {cid!r} does not load ({reason})")
                     for k in [*keys, f"conversation/{cid}", f"meta/{cid}"]
                     if self._call(self.store.get_raw, self.run_id, k) is not None]
            with self._lock:
                self._index.pop(cid, None)
            raise Damaged(f"conversation {cid!r} could not be read back from {self.where} ({reason}); its "
                          f"documents were moved aside, unchanged, to {', '.join(moved) or 'nowhere'}; the "
                          "other conversations are unaffected") from None
        journal.marks = marks(snap)
        self._journal[cid] = journal
        return state

    def _fresh(self, cid: str, rng: Any) -> ConversationState:
        assert self._orch is not None
        state = ConversationState.new(cid, len(self._orch.agents), self._orch.embedder)
        if rng is not None:
            state.rng = np.random.default_rng()
            state.rng.bit_generator.state = rng
        return state

    def _fresh_base(self, cid: str) -> dict[str, Any] | None:
        """The base of a conversation created and never spoken to: only its meta (with its random
        stream) was written, since the whole empty state (about 12 KB) says nothing more."""
        meta = self._read(f"meta/{cid}")
        if not meta or "rng" not in meta:
            return None
        return {"seq": 0, "snapshot": conversation_snapshot(self._fresh(cid, meta["rng"]))}

    def _make_room(self) -> None:
        """Unload least recently used idle conversations until one more fits (caller holds _lock).
        Every turn is on disk before it is answered, so unloading loses nothing."""
        for cid in list(self._items):
            if len(self._items) < self.max_conversations:
                return
            if not self._items[cid].lock.locked():
                del self._items[cid]
                self._journal.pop(cid, None)

    def loaded(self) -> int:
        """How many conversations are in memory now (at most about `max_conversations`)."""
        with self._lock:
            return len(self._items)

    # -- the protocol -----------------------------------------------------------------------------

    def create(self, state: ConversationState, *, origin: str = "rest",
               title: str | None = None) -> StoredConversation:
        entry = StoredConversation(state=state, origin=origin, title=title)
        snap = conversation_snapshot(state)
        base = {"seq": 0, "snapshot": snap}
        meta = self._meta(entry)
        docs: dict[str, dict[str, Any]] = {f"meta/{entry.id}": meta}
        rng = None if state.rng is None else state.rng.bit_generator.state
        if snap == conversation_snapshot(self._fresh(state.id, rng)):  # rebuilt from meta alone on load
            meta["rng"] = rng
        else:
            docs[f"journal/{entry.id}/base"] = base
        with self._lock:
            if state.id in self._index:
                raise KeyError(f"conversation {state.id!r} already exists")
            self._make_room()
            self._items[state.id] = entry
            self._index[state.id] = entry.info()
            self._journal[state.id] = _Journal(marks(snap), base_bytes=_size(base),
                                               written=f"journal/{entry.id}/base" in docs)
        self._write(docs).result()
        return entry

    def page(self, offset: int, limit: int) -> tuple[list[ConversationInfo], int]:
        with self._lock:
            infos = list(self._index.values())
            for i, info in enumerate(infos[offset:offset + limit], offset):
                entry = self._items.get(info.id)
                if entry is not None:
                    infos[i] = entry.info()
        return infos[offset:offset + limit], len(infos)

    @staticmethod
    def _meta(entry: StoredConversation) -> dict[str, Any]:
        info = entry.info()
        return {"created": info.created, "origin": info.origin, "title": info.title, "turns": info.turns,
                "last_text": info.last_text[:200] if info.last_text else None}

    async def saved(self, entry: StoredConversation, extra: dict[str, dict[str, Any]] | None = None) -> None:
        """After a turn, while the caller holds the entry's lock: what the turn changed, the team's
        counts and `extra` documents, in one transaction, before the turn is answered."""
        if self._orch is None or self.run_id is None:
            return
        with self._lock:
            if self._items.get(entry.id) is not entry:
                return  # deleted while its turn ran: do not bring it back
            self._index[entry.id] = entry.info()
            journal = self._journal[entry.id]
        snap = conversation_snapshot(entry.state)
        seq = journal.seq + 1
        docs = {f"meta/{entry.id}": self._meta(entry), "team": self._orch.team_state(), **(extra or {})}
        delete: list[str] = []
        ops, after = diff(journal.marks, snap)
        delta = {"seq": seq, "ops": ops}
        grown = journal.since_bytes + _size(delta)
        if not journal.written or grown > journal.base_bytes or seq - journal.base >= self.compact_every:
            base = {"seq": seq, "snapshot": snap}
            docs[f"journal/{entry.id}/base"] = base
            delete = [_seq_key(entry.id, s) for s in range(journal.base + 1, seq)]
            journal.base, journal.base_bytes, journal.since_bytes, journal.written = seq, _size(base), 0, True
        else:
            docs[_seq_key(entry.id, seq)] = delta
            journal.since_bytes = grown
        journal.marks, journal.seq = after, seq
        try:
            await asyncio.wrap_future(self._write(docs, delete))
        except BaseException:
            journal.full_next()
            raise

    def lookup(self, key: str) -> dict[str, Any] | None:
        """A stored document of this server's run (e.g. `chat/<key>`), or None."""
        return self._read(key)

    def delete(self, conversation_id: str) -> bool:
        with self._load_lock, self._lock:
            known = self._index.pop(conversation_id, None) is not None
            self._items.pop(conversation_id, None)
            self._journal.pop(conversation_id, None)
        if known:
            assert self.run_id is not None
            keys = self._call(self.store.keys, self.run_id, f"journal/{conversation_id}/")
            self._write({f"meta/{conversation_id}": dict(_DELETED)},
                        [*keys, f"conversation/{conversation_id}"]).result()
        return known

    def close(self) -> None:
        """Finish pending writes, give the lease back and close the underlying store."""
        self._writer.shutdown(wait=True)
        if self.lease is not None:
            self.lease.release()
        self.store.close()
