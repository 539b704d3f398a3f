"""Fault injection for the benchmark: every system's model calls fail the same way, and are retried.

`rapo bench --faults 0.2` puts FaultyBackend (timeouts, 429 with Retry-After, 5xx, dropped
connections, malformed replies) and then ResilientBackend (retries with backoff, circuit breaker) in
front of the model, for every system alike, baselines included. A retried call gets the same reply
(the simulated model is seeded by the prompt), so what faults may change is latency, the number of
attempts, and, should a call run out of attempts, who answers.

Backoff is counted where the run measures latency: on the virtual clock it is added to the call's
reported latency and not slept; on the real clock it is slept (scaled like the model's time) and
added too. The injected failures themselves return at once: a timeout costs its backoff, not the
client's timeout.
"""

from __future__ import annotations

import asyncio
from contextvars import ContextVar
from typing import Any, Sequence

from rapo.backends.faulty import KINDS, FaultyBackend
from rapo.backends.resilient import CircuitBreaker, ResilientBackend
from rapo.backends.retry import BackendUnavailable, RetryPolicy
from rapo.types import Backend, Completion, Message

# 12 attempts: at a 30% fault rate one call runs out with probability 0.3**12 (about 5e-7), so a
# 1,000-conversation run completes; no jitter, so a seed reproduces the latencies; no outer timeout,
# the inner backend (an HTTP client) has its own.
BENCH_RETRY = RetryPolicy(max_attempts=12, base_delay_s=0.5, max_delay_s=20.0, jitter=0.0, timeout_s=None)

_BACKOFF: ContextVar[list[float] | None] = ContextVar("rapo_bench_backoff", default=None)


class FaultInjected:
    """FaultyBackend behind ResilientBackend, with what the faults cost counted for the results."""

    def __init__(self, inner: Backend, rate: float, seed: int, *, sleep_scale: float = 0.0,
                 retry: RetryPolicy = BENCH_RETRY) -> None:
        self.faulty = FaultyBackend(inner, rate=rate, seed=seed)
        self.resilient = ResilientBackend(self.faulty, retry, CircuitBreaker(), sleep=self._backoff,
                                          name="the faulty endpoint")
        # real seconds slept per backoff second: 0 on the virtual clock, the time scale on the sim's
        # real clock, 1 against a real endpoint
        self._scale = sleep_scale
        self.calls = 0  # calls the system made
        self.refused = 0  # calls refused at once by an open circuit (no attempt)
        self.gave_up = 0  # calls given up on (attempts spent or circuit open): rapo fails over, a baseline stops
        self.backoff_s = 0.0

    async def _backoff(self, delay: float) -> None:
        waited = _BACKOFF.get()
        if waited is not None:
            waited.append(delay)
        self.backoff_s += delay
        if self._scale > 0:
            await asyncio.sleep(delay * self._scale)

    async def complete(self, messages: Sequence[Message], *, model: str, max_tokens: int | None = None,
                       sample: int = 0) -> Completion:
        self.calls += 1
        if not self.resilient.breaker.allow(model):
            self.refused += 1
        waited: list[float] = []
        token = _BACKOFF.set(waited)  # per task: consensus calls run side by side
        try:
            c = await self.resilient.complete(messages, model=model, max_tokens=max_tokens, sample=sample)
        except BackendUnavailable:
            self.gave_up += 1
            raise
        finally:
            _BACKOFF.reset(token)
        return c.model_copy(update={"latency_s": c.latency_s + sum(waited)}) if waited else c

    def stats(self) -> dict[str, Any]:
        """Counts for results.json: what was injected, by kind, and what it cost."""
        attempts = self.faulty.calls
        return {
            "calls": self.calls,
            "attempts": attempts,
            "retries": attempts - (self.calls - self.refused),
            "gave_up": self.gave_up,
            "backoff_s": round(self.backoff_s, 3),
            "injected": dict(self.faulty.injected),
        }

    async def aclose(self) -> None:
        await self.resilient.aclose()


def total(stats: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Several jobs' counts added up."""
    out: dict[str, Any] = {"calls": 0, "attempts": 0, "retries": 0, "gave_up": 0, "backoff_s": 0.0,
                           "injected": {k: 0 for k in KINDS}}
    for s in stats:
        for k in ("calls", "attempts", "retries", "gave_up", "backoff_s"):
            out[k] += s.get(k, 0)
        for k, n in (s.get("injected") or {}).items():
            out["injected"][k] = out["injected"].get(k, 0) + n
    out["backoff_s"] = round(out["backoff_s"], 3)
    return out
