"""Whether a call left rapo: a backend that queues calls on its own side says when one is sent.

A consensus cancels the calls it no longer needs. A call cancelled while it waited for a slot of
the client's own queue (OpenAIBackend's `max_concurrency`) never reached the endpoint, so it must
not be counted as a call nor its prompt as tokens; one cancelled in flight was sent and read.
The caller wraps each call in `track()`; a backend with a client-side queue calls `queued()` on
entry and `sent()` once the request goes out. Backends that never queue say nothing: their
calls count as sent from the start.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Iterator


@dataclass
class Dispatch:
    sent: bool = True  # a backend that says nothing sends at once


_CURRENT: ContextVar[Dispatch | None] = ContextVar("rapo_dispatch", default=None)


@contextmanager
def track(dispatch: Dispatch) -> Iterator[Dispatch]:
    """Calls made in the block (in this task) report to `dispatch`."""
    token = _CURRENT.set(dispatch)
    try:
        yield dispatch
    finally:
        _CURRENT.reset(token)


def queued() -> None:
    """The backend holds the call in its own queue: not sent yet."""
    d = _CURRENT.get()
    if d is not None:
        d.sent = False


def sent() -> None:
    """The backend sends the request now."""
    d = _CURRENT.get()
    if d is not None:
        d.sent = True


def through(backend: object, attribute: str) -> object | None:
    """An attribute of a backend or of the backends it wraps (kept as `.inner`), else None."""
    for _ in range(16):
        if backend is None:
            return None
        value = getattr(backend, attribute, None)
        if value is not None:
            return value
        backend = getattr(backend, "inner", None)
    return None


def slots(backend: object) -> int | None:
    """Requests a backend sends at once (its `max_concurrency`); None where it sets no limit."""
    value = through(backend, "max_concurrency")
    return value if isinstance(value, int) else None
