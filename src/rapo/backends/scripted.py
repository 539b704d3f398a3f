"""A backend that answers from a script: for tests and demos that need no model and no network."""

from __future__ import annotations

import asyncio
import inspect
from itertools import count
from typing import Awaitable, Callable, Sequence, Union

from pydantic import BaseModel, ConfigDict

from rapo.tokens import count_message_tokens, count_tokens
from rapo.types import Completion, Message, RapoError

ReplyFn = Callable[[Sequence[Message], str], Union[str, Awaitable[str]]]
Script = Union[Sequence[str], ReplyFn]


class ScriptedCall(BaseModel):
    """One call as the backend saw it, so tests can check what an orchestrator sent."""

    model_config = ConfigDict(frozen=True)

    messages: tuple[Message, ...]
    model: str
    sample: int
    max_tokens: int | None = None


SCRIPTED_ANSWER = "(scripted reply: no model was called)"


def default_reply(messages: Sequence[Message], model: str) -> str:
    """A plain reply that says what it is: the scripted backend calls no model, so echoing the prompt
    back (as it once did) read like an answer. Give `replies` or a function for anything else."""
    return ("This is rapo's scripted backend, which answers every prompt the same way without calling a "
            f"model; use --backend sim or --backend openai for real answers.\nAnswer: {SCRIPTED_ANSWER}")


class _Cycle:
    """Replies in order, wrapping around; or a function of (messages, model)."""

    def __init__(self, script: Script, label: str) -> None:
        if callable(script):
            self._fn: ReplyFn | None = script
            self._replies: tuple[str, ...] = ()
        else:
            if isinstance(script, str):
                raise RapoError(f"{label}: replies must be a list of strings, not one string")
            self._fn = None
            self._replies = tuple(script)
            if not self._replies:
                raise RapoError(f"{label}: the reply list is empty; give at least one reply")
            bad = [r for r in self._replies if not isinstance(r, str)]
            if bad:
                raise RapoError(f"{label}: every reply must be a string, got {bad[0]!r}")
        self._next = count()

    async def reply(self, messages: Sequence[Message], model: str) -> str:
        if self._fn is None:
            return self._replies[next(self._next) % len(self._replies)]
        out = self._fn(messages, model)
        if inspect.isawaitable(out):
            out = await out
        if not isinstance(out, str):
            raise RapoError(f"the scripted reply function returned {type(out).__name__}, not str")
        return out


class ScriptedBackend:
    """Deterministic replies with real token counts and a configurable (virtual) latency."""

    def __init__(
        self,
        replies: Script | None = None,
        *,
        latency_s: float = 0.0,
        per_model: dict[str, Script] | None = None,
        sleep: bool = False,
    ) -> None:
        if latency_s < 0:
            raise RapoError(f"latency_s must be >= 0, got {latency_s}")
        self.latency_s = latency_s
        self.sleep = sleep
        self._default = _Cycle(replies if replies is not None else default_reply, "replies")
        self._per_model = {m: _Cycle(s, f"per_model[{m!r}]") for m, s in (per_model or {}).items()}
        self.calls: list[ScriptedCall] = []
        self.closed = False

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        model: str,
        max_tokens: int | None = None,
        sample: int = 0,
    ) -> Completion:
        if self.closed:
            raise RapoError("this ScriptedBackend was closed; create a new one")
        self.calls.append(ScriptedCall(messages=tuple(messages), model=model, sample=sample,
                                       max_tokens=max_tokens))
        text = await self._per_model.get(model, self._default).reply(messages, model)
        if self.sleep and self.latency_s > 0:
            await asyncio.sleep(self.latency_s)
        return Completion(
            text=text,
            prompt_tokens=count_message_tokens(m.content for m in messages),
            output_tokens=count_tokens(text),
            latency_s=self.latency_s,
            model=model,
        )

    async def aclose(self) -> None:
        self.closed = True
