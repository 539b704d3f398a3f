"""Retries with exponential backoff, shared by every network backend.

Backends classify their own errors (which are transient, and whether the server asked for a
delay); this module owns the waiting, so the policy is the same everywhere and testable without
real sleeps.
"""

from __future__ import annotations

import asyncio
import random
from typing import Awaitable, Callable, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from rapo.types import RapoError

T = TypeVar("T")

SleepFn = Callable[[float], Awaitable[None]]


class BackendUnavailable(RapoError):
    """Every attempt failed with a transient error: the endpoint is down, overloaded or unreachable."""


class RetryPolicy(BaseModel):
    """How often and how patiently to retry transient failures."""

    model_config = ConfigDict(frozen=True)

    max_attempts: int = Field(default=4, ge=1)
    base_delay_s: float = Field(default=0.5, ge=0.0)
    max_delay_s: float = Field(default=20.0, ge=0.0)
    jitter: float = Field(default=0.25, ge=0.0, le=1.0)
    timeout_s: float | None = Field(default=60.0, gt=0.0)

    @model_validator(mode="after")
    def _delays_ordered(self) -> "RetryPolicy":
        if self.max_delay_s < self.base_delay_s:
            raise ValueError(
                f"max_delay_s ({self.max_delay_s}) is below base_delay_s ({self.base_delay_s}); "
                "raise max_delay_s or lower base_delay_s"
            )
        return self

    def backoff_s(self, failures: int, u: float) -> float:
        """Delay after the `failures`-th failure (1-based); `u` in [0, 1) spreads clients apart."""
        raw = min(self.max_delay_s, self.base_delay_s * 2.0 ** (failures - 1))
        spread = raw * (1.0 + self.jitter * (2.0 * u - 1.0))
        return float(min(self.max_delay_s, max(0.0, spread)))


class RetryDecision(BaseModel):
    """A backend's verdict on one error: retry or not, and any delay the server asked for."""

    model_config = ConfigDict(frozen=True)

    retry: bool
    retry_after_s: float | None = Field(default=None, ge=0.0)
    reason: str = ""


async def call_with_retries(
    fn: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    classify: Callable[[BaseException], RetryDecision],
    endpoint: str = "the backend",
    sleep: SleepFn = asyncio.sleep,
    rand: Callable[[], float] = random.random,
) -> T:
    """Run `fn` until it succeeds, a non-retryable error occurs, or the attempts run out.

    Each attempt is bounded by `policy.timeout_s` (a timeout reaches `classify` as TimeoutError).
    Non-retryable errors propagate unchanged so the caller can translate them for the user.
    """
    last: BaseException | None = None
    last_reason = ""
    for attempt in range(1, policy.max_attempts + 1):
        try:
            if policy.timeout_s is None:
                return await fn()
            async with asyncio.timeout(policy.timeout_s):
                return await fn()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the classifier decides what is transient
            decision = classify(exc)
            if not decision.retry:
                raise
            last, last_reason = exc, decision.reason
            if attempt == policy.max_attempts:
                break
            if decision.retry_after_s is not None:
                delay = min(decision.retry_after_s, policy.max_delay_s)
            else:
                delay = policy.backoff_s(attempt, rand())
            await sleep(delay)
    detail = _describe(last, last_reason)
    raise BackendUnavailable(
        f"{endpoint} failed {policy.max_attempts} attempt(s) in a row; last error: {detail}. "
        "Check that the server is running and reachable at that address, that it serves the "
        "requested model, and that it is not overloaded; raise the timeout or retry limits "
        "if it is just slow."
    ) from last


def _describe(exc: BaseException | None, reason: str) -> str:
    if exc is None:
        return reason or "unknown error"
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, TimeoutError) and not str(exc).strip():
        text = "the attempt timed out"
    return f"{reason}: {text}" if reason and reason not in text else text
