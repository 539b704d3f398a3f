"""Any OpenAI-compatible chat endpoint (OpenAI, vLLM, llama.cpp, Ollama, LM Studio...).

Built on the official SDK with its own retries off: retries live in rapo.backends.retry so every
backend backs off the same way and tests can count requests exactly.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import time
from datetime import datetime, timezone
from typing import Any, Sequence

import openai
from pydantic import ValidationError

from rapo.backends import dispatch
from rapo.backends.retry import BackendUnavailable, RetryDecision, RetryPolicy, SleepFn, call_with_retries
from rapo.tokens import count_message_tokens, count_tokens
from rapo.types import Completion, Message, RapoError

OPENAI_DEFAULT_URL = "https://api.openai.com/v1"


class MalformedReply(Exception):
    """The server answered 200 but with nothing usable (no choices, empty content, bad JSON)."""


class OpenAIBackend:
    """Chat completions over HTTP, with bounded concurrency and our own retries."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout_s: float = 60.0,
        max_concurrency: int = 16,
        retry: RetryPolicy | None = None,
        default_model: str | None = None,
        sleep: SleepFn = asyncio.sleep,
        max_tokens: int | None = None,
    ) -> None:
        """`timeout_s` bounds one request once it is sent (time queued for a slot does not count);
        `max_concurrency` is how many requests are in flight at once, the rest wait here, so set it to
        what the server runs in parallel; `max_tokens` caps replies of calls that set no cap."""
        if max_concurrency < 1:
            raise RapoError(f"max_concurrency must be at least 1, got {max_concurrency}")
        if timeout_s <= 0:
            raise RapoError(f"timeout_s must be positive, got {timeout_s}")
        if max_tokens is not None and max_tokens < 1:
            raise RapoError(f"max_tokens must be at least 1, got {max_tokens}")
        self.timeout_s, self.max_tokens = timeout_s, max_tokens
        base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        api_key = api_key or os.environ.get("OPENAI_API_KEY") or None
        if api_key is None:
            if base_url is None:
                raise RapoError(
                    "no API key: set OPENAI_API_KEY or pass --api-key "
                    "(custom --base-url endpoints may use any placeholder)"
                )
            api_key = "EMPTY"  # local servers usually ignore the key but the SDK wants one
        self.endpoint = (base_url or OPENAI_DEFAULT_URL).rstrip("/")
        self.default_model = default_model
        self.retry = retry or RetryPolicy(timeout_s=timeout_s)
        self._api_key = api_key
        self._sleep = sleep
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self.max_concurrency = max_concurrency
        self._client = openai.AsyncOpenAI(
            api_key=api_key, base_url=self.endpoint, timeout=timeout_s, max_retries=0
        )

    def __repr__(self) -> str:  # never show the key
        return f"OpenAIBackend(endpoint={self.endpoint!r}, default_model={self.default_model!r})"

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        model: str,
        max_tokens: int | None = None,
        sample: int = 0,
    ) -> Completion:
        model = model or self.default_model or ""
        if not model:
            raise RapoError(
                f"no model name for {self.endpoint}: pass model=... or set default_model "
                "(the --model option)"
            )
        payload = [_to_wire(m) for m in messages]
        extra: dict[str, Any] = {"seed": sample}
        if max_tokens is not None or self.max_tokens is not None:
            extra["max_tokens"] = max_tokens if max_tokens is not None else self.max_tokens

        async def attempt() -> tuple[Any, str, float]:
            t0 = time.perf_counter()
            resp = await self._client.chat.completions.create(
                model=model, messages=payload, **extra  # type: ignore[arg-type]
            )
            text = _reply_text(resp)
            return resp, text, time.perf_counter() - t0

        # The slot is held across backoff on purpose: an overloaded server gets fewer requests.
        dispatch.queued()
        async with self._semaphore:
            dispatch.sent()
            try:
                resp, text, latency = await call_with_retries(
                    attempt, self.retry, classify=classify_error,
                    endpoint=f"the endpoint {self.endpoint}", sleep=self._sleep,
                )
            except openai.APIStatusError as exc:
                raise self._translate(exc, model) from None
            except BackendUnavailable as exc:
                raise BackendUnavailable(self._scrub(str(exc))) from exc.__cause__

        usage = getattr(resp, "usage", None)
        if usage is not None and usage.prompt_tokens is not None:
            prompt_tokens = int(usage.prompt_tokens)
            output_tokens = int(usage.completion_tokens or 0)
        else:
            prompt_tokens = count_message_tokens(m.content for m in messages)
            output_tokens = count_tokens(text)
        return Completion(
            text=text,
            prompt_tokens=prompt_tokens,
            output_tokens=output_tokens,
            latency_s=_reported_latency(resp) or latency,
            model=getattr(resp, "model", None) or model,
        )

    def _translate(self, exc: openai.APIStatusError, model: str) -> RapoError:
        """Turn a non-retryable HTTP error into a message a person can act on."""
        detail = self._scrub(_server_message(exc))
        status = exc.status_code
        if status == 401:
            msg = (f"the API key was refused by {self.endpoint} (HTTP 401: {detail}); "
                   "check OPENAI_API_KEY or --api-key")
        elif status == 403:
            msg = (f"access denied by {self.endpoint} (HTTP 403: {detail}); the key may lack "
                   f"permission for model {model!r}")
        elif status == 404:
            msg = (f"model {model!r} or URL {self.endpoint} not found (HTTP 404: {detail}); "
                   "check --model and --base-url (it usually ends in /v1)")
        else:
            msg = (f"{self.endpoint} rejected the request for model {model!r} "
                   f"(HTTP {status}: {detail}); check the model name and request options")
        return RapoError(msg)

    def _scrub(self, text: str) -> str:
        key = self._api_key
        return text.replace(key, "***") if key and key != "EMPTY" else text

    async def aclose(self) -> None:
        await self._client.close()


def _to_wire(m: Message) -> dict[str, str]:
    d = {"role": m.role, "content": m.content}
    if m.name:
        d["name"] = m.name
    return d


def _reply_text(resp: Any) -> str:
    choices = getattr(resp, "choices", None)
    if not choices:
        raise MalformedReply("the reply had no choices")
    message = getattr(choices[0], "message", None)
    content = getattr(message, "content", None) if message is not None else None
    if not isinstance(content, str) or not content.strip():
        raise MalformedReply("the reply's message content was empty")
    return content


def _server_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return err["message"]
        if isinstance(body.get("message"), str):
            return body["message"]
    return exc.message


def _retry_after_s(exc: openai.APIStatusError) -> float | None:
    """Seconds the server asked us to wait (Retry-After as seconds or HTTP date, or retry-after-ms)."""
    headers = exc.response.headers
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def classify_error(exc: BaseException) -> RetryDecision:
    """Transient: 408, 429, 5xx, timeouts, connection errors, unusable replies. Else: fail now."""
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        if status == 429:
            return RetryDecision(retry=True, retry_after_s=_retry_after_s(exc),
                                 reason="rate limited (HTTP 429)")
        if status >= 500:
            return RetryDecision(retry=True, retry_after_s=_retry_after_s(exc),
                                 reason=f"server error (HTTP {status})")
        if status == 408:
            return RetryDecision(retry=True, reason="request timeout (HTTP 408)")
        return RetryDecision(retry=False, reason=f"HTTP {status}")
    if isinstance(exc, (openai.APITimeoutError, TimeoutError)):
        return RetryDecision(retry=True, reason="timed out")
    if isinstance(exc, openai.APIConnectionError):
        return RetryDecision(retry=True, reason="connection failed")
    if isinstance(exc, (MalformedReply, json.JSONDecodeError, ValidationError,
                        openai.APIResponseValidationError)):
        return RetryDecision(retry=True, reason="malformed reply")
    return RetryDecision(retry=False, reason=type(exc).__name__)


def _reported_latency(resp: Any) -> float | None:
    """Model time a server reports about itself (rapo's sim-server does, as `rapo_sim.latency_s`):
    a simulated model's latency is its simulated time, not the loopback round trip."""
    extra = getattr(resp, "model_extra", None) or {}
    info = extra.get("rapo_sim")
    value = info.get("latency_s") if isinstance(info, dict) else None
    return float(value) if isinstance(value, (int, float)) and value >= 0 else None
