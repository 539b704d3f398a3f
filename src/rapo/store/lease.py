"""Who owns a run: a lease document in the store, renewed by a heartbeat, so that two processes never
run (or serve) the same run at once, and a crashed owner's claim runs out by itself.

The lease is the document `_lease` of the run, changed only by compare-and-swap on its stored text
(`Store.swap`), which is atomic on SQLite and on any SQLAlchemy database alike.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
import uuid
from typing import Any

from rapo.store.base import Store
from rapo.types import RapoError

KEY = "_lease"
TTL_S = 30.0


class LeaseHeld(RapoError):
    """Another process owns the run."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _clock(t: float) -> str:
    return time.strftime("%H:%M:%S UTC", time.gmtime(t))


class Lease:
    """Hold `run_id` in `store` while the block runs: acquire (or refuse), heartbeat, release.

    `where` names the store in messages; `take_over` is the command-line flag that takes over an
    expired lease (`--force`)."""

    def __init__(self, store: Store, run_id: str, *, where: str, ttl_s: float = TTL_S,
                 take_over: str = "--force") -> None:
        if ttl_s <= 0:
            raise RapoError(f"lease ttl_s={ttl_s}: give a positive number of seconds")
        self.store, self.run_id, self.where, self.ttl_s, self.take_over = store, run_id, where, ttl_s, take_over
        self.token = uuid.uuid4().hex
        self._held: str | None = None  # the lease's stored text while we hold it
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost = False
        self.note: str | None = None  # set when an earlier owner's lease was taken over

    def _doc(self, started: float) -> str:
        return json.dumps({"token": self.token, "pid": os.getpid(), "host": socket.gethostname(),
                           "command": " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv))[:300],
                           "started": started, "beat": time.time(), "ttl_s": self.ttl_s}, separators=(",", ":"))

    def _describe(self, owner: dict[str, Any]) -> str:
        ago = max(0.0, time.time() - float(owner.get("beat", 0)))
        return (f"pid {owner.get('pid')} on host {owner.get('host')!r} ({owner.get('command') or 'rapo'}), "
                f"started {_clock(float(owner.get('started', 0)))}, last heartbeat {ago:.0f} s ago")

    def acquire(self, force: bool = False) -> "Lease":
        """Take the run, or raise `LeaseHeld` naming its owner and how to take over."""
        for _ in range(20):  # lost races only: each pass reads what another process just wrote
            raw = self.store.get_raw(self.run_id, KEY)
            if raw is None:
                if self._swap(None):
                    return self
                continue
            try:
                owner = json.loads(raw)
                beat, ttl = float(owner["beat"]), float(owner.get("ttl_s", TTL_S))
            except (ValueError, KeyError, TypeError):
                owner, beat, ttl = {}, 0.0, 0.0  # an unreadable lease protects nothing
            expires = beat + ttl
            dead_here = owner.get("host") == socket.gethostname() and isinstance(owner.get("pid"), int) \
                and not _alive(owner["pid"])
            if dead_here or (force and time.time() > expires) or not owner:
                if self._swap(raw):
                    if owner:
                        why = "its process is gone" if dead_here else "its lease had expired"
                        self.note = f"took over run {self.run_id!r} from {self._describe(owner)} ({why})"
                    return self
                continue
            who = self._describe(owner)
            if time.time() <= expires:
                raise LeaseHeld(
                    f"run {self.run_id!r} in {self.where} is already being run by {who}; two processes on one "
                    f"run would each redo its remaining work. Wait for that one to finish. If it is gone (killed "
                    f"on another machine), its lease expires {ttl:.0f} s after its last heartbeat, at "
                    f"{_clock(expires)}; after that, run this command again with {self.take_over} to take over")
            raise LeaseHeld(
                f"run {self.run_id!r} in {self.where} is owned by {who}, whose lease expired at {_clock(expires)} "
                f"(the process stopped sending heartbeats). If it has really stopped, run this command again "
                f"with {self.take_over} to take over")
        raise RapoError(f"could not take the lease of run {self.run_id!r} in {self.where}: other processes "
                        "keep changing it; try again")

    def _swap(self, expected: str | None) -> bool:
        started = time.time()
        new = self._doc(started)
        if not self.store.swap(self.run_id, KEY, expected, new):
            return False
        self._held, self._started = new, started
        return True

    def renew(self) -> bool:
        """One heartbeat; False (and `lost`) when another process took the lease meanwhile."""
        if self._held is None:
            return False
        new = self._doc(self._started)
        if self.store.swap(self.run_id, KEY, self._held, new):
            self._held = new
            return True
        self.lost, self._held = True, None
        print(f"rapo: warning: the lease of run {self.run_id!r} in {self.where} was taken over by another "
              "process; this one keeps going but its results may be written twice", file=sys.stderr)
        return False

    def _beat(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            try:
                if not self.renew():
                    return
            except Exception as err:  # noqa: BLE001 - a failed heartbeat must not kill the run; the next one retries
                print(f"rapo: warning: lease heartbeat failed ({err}); retrying", file=sys.stderr)

    def start(self) -> "Lease":
        self._thread = threading.Thread(target=self._beat, daemon=True, name=f"rapo-lease-{self.run_id}")
        self._thread.start()
        return self

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._held is not None:
            try:
                self.store.swap(self.run_id, KEY, self._held, None)
            except Exception:  # noqa: BLE001 - an unreleased lease only expires later (or its dead pid is seen)
                pass
            self._held = None

    def __enter__(self) -> "Lease":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
