"""Data that crosses module seams: messages, completions, reasoning types, and the protocols."""

from __future__ import annotations

from typing import Any, Literal, Protocol, Sequence, TypeVar, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

M = TypeVar("M", bound=BaseModel)
_SHARED: dict[type, tuple[dict[str, Any], set[str]]] = {}
_set = object.__setattr__


def trusted(cls: type[M], /, **values: Any) -> M:
    """A model built from values rapo's own code just made (no validation), for the per-turn records.

    Unlike `model_construct`, instances share one complete set of field names instead of each
    holding its own (0.2-0.7 KiB), and their `__dict__` is a copy of a key-sharing prototype
    (a 24-field record: 0.3 KiB instead of 0.8). Together that is about half of what a trace of
    thousands of small records costs, and it is ~3x faster. Give every field; with some missing it
    falls back to `model_construct` (defaults). Not for models with private attributes or extras."""
    spec = _SHARED.get(cls)
    if spec is None:
        if cls.__private_attributes__ or cls.model_config.get("extra") == "allow":
            raise TypeError(f"trusted() cannot build {cls.__name__}: it has private or extra attributes")
        proto = cls.__new__(cls)
        for name in cls.model_fields:  # attributes set in order: CPython shares the keys across copies
            _set(proto, name, None)
        spec = _SHARED[cls] = (proto.__dict__, set(cls.model_fields))
    prototype, shared = spec
    if values.keys() != shared:
        model = cls.model_construct(**values)
        _set(model, "__pydantic_fields_set__", shared)
        return model
    fields = prototype.copy()
    fields.update(values)
    model = cls.__new__(cls)
    _set(model, "__dict__", fields)
    _set(model, "__pydantic_fields_set__", shared)  # complete, so pydantic's add() on assignment is a no-op
    _set(model, "__pydantic_extra__", None)
    _set(model, "__pydantic_private__", None)
    return model

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
