"""Fault injection for tests: a backend that fails a share of calls in every way real endpoints do."""

from __future__ import annotations

import hashlib
from typing import Sequence

from rapo.backends.resilient import TransientBackendError
from rapo.types import Backend, Completion, Message

KINDS = ("429 rate limited", "500 server error", "timeout", "connection dropped", "malformed reply")


class FaultyBackend:
    """Fails `rate` of calls, chosen by a hash of (seed, call number), cycling through KINDS.

    A malformed reply is returned (empty text) rather than raised, as a broken server would.
    """

    def __init__(self, inner: Backend, rate: float = 0.2, seed: int = 0) -> None:
        self.inner, self.rate, self.seed = inner, rate, seed
        self.calls = 0
        self.injected: dict[str, int] = {k: 0 for k in KINDS}

    async def complete(self, messages: Sequence[Message], *, model: str, max_tokens: int | None = None,
                       sample: int = 0) -> Completion:
        n = self.calls
        self.calls += 1
        h = int.from_bytes(hashlib.blake2b(f"{self.seed}:{n}".encode(), digest_size=8).digest(), "little")
        if (h % 10_000) / 10_000 < self.rate:
            kind = KINDS[(h >> 20) % len(KINDS)]
            self.injected[kind] += 1
            if kind == "malformed reply":
                return Completion(text="", prompt_tokens=0, output_tokens=0, latency_s=0.0, model=model)
            if kind == "timeout":
                raise TimeoutError("injected: request timed out")
            if kind == "connection dropped":
                raise ConnectionError("injected: connection reset by peer")
            raise TransientBackendError(f"injected: {kind}", retry_after_s=0.0 if kind.startswith("429") else None)
        return await self.inner.complete(messages, model=model, max_tokens=max_tokens, sample=sample)

    async def aclose(self) -> None:
        await self.inner.aclose()
