"""How long a turn waited on its model calls: the union of its own calls' wait intervals.

The calls of a consensus overlap, and other conversations' calls run beside them on the same
backend, so neither a sum of waits nor a backend-wide total says how long one turn waited. Each
turn gets a `TurnTimer` in a context variable; its calls note their intervals on it. Calls made in
tasks the turn starts (a fan-out) are the turn's too, because asyncio tasks inherit the context.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Iterator


@dataclass
class TurnTimer:
    """One turn's wall clock and the intervals its calls were outstanding."""

    start: float = field(default_factory=time.perf_counter)
    end: float | None = None
    intervals: list[tuple[float, float]] = field(default_factory=list)

    def elapsed(self) -> float:
        return (self.end if self.end is not None else time.perf_counter()) - self.start

    def waited(self) -> float:
        """Wall time during which at least one of this turn's calls was outstanding."""
        total, reach = 0.0, float("-inf")
        for lo, hi in sorted(self.intervals):
            if hi > reach:
                total += hi - max(lo, reach)
                reach = hi
        return min(total, self.elapsed())

    def own(self) -> float:
        """The caller's own work in the turn: wall time with no call of the turn outstanding (>= 0)."""
        return max(0.0, self.elapsed() - self.waited())

    def latency(self, model_s: float) -> float:
        """The turn's latency: its own work plus its model time, which is the critical path the
        backend reported (a simulated model's virtual seconds) but never less than the time the turn
        really waited. Against a real endpoint the waits are the larger (each call's measured time
        lies inside its wait), so the latency is the turn's measured wall time."""
        return max(model_s, self.waited()) + self.own()


class CallClock:
    """The current turn's timer, per asyncio context, for its calls to note their waits on."""

    def __init__(self, name: str) -> None:
        self._var: ContextVar[TurnTimer | None] = ContextVar(name, default=None)

    @contextmanager
    def turn(self) -> Iterator[TurnTimer]:
        """Time one turn: calls noted inside the block (and in tasks it starts) count on it."""
        timer = TurnTimer()
        token = self._var.set(timer)
        try:
            yield timer
        finally:
            timer.end = time.perf_counter()
            self._var.reset(token)

    def start(self) -> TurnTimer:
        """A new timer for the turn starting now, current until the next start in this context."""
        timer = TurnTimer()
        self._var.set(timer)
        return timer

    def note(self, started: float) -> None:
        """A call that began at `started` (perf_counter) has ended."""
        timer = self._var.get()
        if timer is not None:
            timer.intervals.append((started, time.perf_counter()))
