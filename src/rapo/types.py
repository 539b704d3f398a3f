"""Data that crosses module seams: messages, completions, reasoning types, and the protocols."""

from __future__ import annotations

from typing import Literal, Protocol, Sequence, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

DEFAULT_REASONING_TYPES: tuple[str, ...] = (
    "lookup",
    "arithmetic",
    "deduction",
    "comparison",
    "aggregation",
    "planning",
    "verification",
    "summarisation",
)


class RapoError(Exception):
    """An error with a message meant for a person: what is wrong and how to fix it."""


class Message(BaseModel):
    model_config = ConfigDict(frozen=True)

    role: Literal["system", "user", "assistant"]
    content: str
    name: str | None = None


class Completion(BaseModel):
    """What a backend returns for one call."""

    text: str
    prompt_tokens: int = Field(ge=0)
    output_tokens: int = Field(ge=0)
    latency_s: float = Field(ge=0.0)
    model: str = ""


@runtime_checkable
class Backend(Protocol):
    """An LLM behind one async call. Latency is the call's own (virtual or measured)."""

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        model: str,
        max_tokens: int | None = None,
        sample: int = 0,
    ) -> Completion: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class Embedder(Protocol):
    """Texts to unit vectors (rows); an empty text gives a zero row."""

    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...
