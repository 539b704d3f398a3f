"""Fault tolerance for any backend: retries with backoff and jitter, and a circuit breaker per model.

OpenAIBackend retries HTTP failures itself; this wrapper gives the same behaviour to any backend
(in-process models, custom clients) and adds the breaker, so a dead endpoint is not hammered: after
`threshold` consecutive failed calls a model's circuit opens for `cooldown_s` and calls fail at once
with BackendUnavailable, which the orchestrator answers by failing over to the next-best agent.
"""

from __future__ import annotations

import asyncio
import time
from typing import Callable, Sequence

from rapo.backends.retry import BackendUnavailable, RetryDecision, RetryPolicy, SleepFn, call_with_retries
from rapo.types import Backend, Completion, Message, RapoError


class TransientBackendError(Exception):
    """A failure worth retrying: rate limited, server error, timeout, dropped connection, bad reply."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


def classify(exc: BaseException) -> RetryDecision:
    if isinstance(exc, TransientBackendError):
        return RetryDecision(retry=True, retry_after_s=exc.retry_after_s, reason=str(exc))
    if isinstance(exc, (TimeoutError, ConnectionError)):
        return RetryDecision(retry=True, reason=f"{type(exc).__name__}: {exc}")
    return RetryDecision(retry=False, reason=str(exc))


class CircuitBreaker:
    def __init__(self, threshold: int = 3, cooldown_s: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold, self.cooldown_s, self.clock = threshold, cooldown_s, clock
        self._failures: dict[str, int] = {}
        self._open_until: dict[str, float] = {}

    def allow(self, key: str) -> bool:
        return self.clock() >= self._open_until.get(key, 0.0)

    def success(self, key: str) -> None:
        self._failures[key] = 0

    def failure(self, key: str) -> None:
        self._failures[key] = self._failures.get(key, 0) + 1
        if self._failures[key] >= self.threshold:
            self._open_until[key] = self.clock() + self.cooldown_s
            self._failures[key] = 0


class ResilientBackend:
    def __init__(self, inner: Backend, retry: RetryPolicy | None = None, breaker: CircuitBreaker | None = None,
                 *, sleep: SleepFn = asyncio.sleep, name: str = "backend") -> None:
        self.inner = inner
        self.retry = retry or RetryPolicy()
        self.breaker = breaker or CircuitBreaker()
        self.sleep = sleep
        self.name = name

    async def complete(self, messages: Sequence[Message], *, model: str, max_tokens: int | None = None,
                       sample: int = 0) -> Completion:
        if not self.breaker.allow(model):
            raise BackendUnavailable(f"{self.name} model {model!r}: circuit open after repeated failures; "
                                     f"retrying in at most {self.breaker.cooldown_s:.0f} s")

        async def attempt() -> Completion:
            c = await self.inner.complete(messages, model=model, max_tokens=max_tokens, sample=sample)
            if not c.text.strip():
                raise TransientBackendError("malformed reply: empty text")
            return c

        try:
            result = await call_with_retries(attempt, self.retry, classify=classify,
                                             endpoint=f"{self.name} model {model!r}", sleep=self.sleep)
        except (BackendUnavailable, RapoError):
            self.breaker.failure(model)
            raise
        self.breaker.success(model)
        return result

    async def aclose(self) -> None:
        await self.inner.aclose()
