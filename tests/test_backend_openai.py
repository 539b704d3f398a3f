"""OpenAIBackend against a real loopback HTTP server, and the retry policy on its own."""

from __future__ import annotations

import asyncio
import time
from typing import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rapo.backends.openai_compat import OpenAIBackend
from rapo.backends.retry import BackendUnavailable, RetryDecision, RetryPolicy, call_with_retries
from rapo.tokens import count_message_tokens, count_tokens
from rapo.types import Completion, Message, RapoError

try:
    from fake_openai_server import Behaviour, FakeOpenAIServer
except ImportError:  # tests/ collected as a package
    from tests.fake_openai_server import Behaviour, FakeOpenAIServer

KEY = "sk-test-SECRET-0123456789"
FAST = RetryPolicy(max_attempts=4, base_delay_s=0.001, max_delay_s=0.01, jitter=0.0, timeout_s=5)
MSGS = [Message(role="system", content="You are terse."), Message(role="user", content="What is 6*7?")]


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    srv = FakeOpenAIServer().start()
    yield srv
    srv.stop()


class SleepRecorder:
    """Stands in for asyncio.sleep: records requested delays, waits for none of them."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def backend(server: FakeOpenAIServer, **kw: object) -> OpenAIBackend:
    opts: dict[str, object] = {"api_key": KEY, "retry": FAST, "default_model": "test-model"}
    opts.update(kw)
    return OpenAIBackend(server.base_url, **opts)  # type: ignore[arg-type]


# --- success path -------------------------------------------------------------------------------

async def test_success_returns_text_usage_tokens_and_model(server: FakeOpenAIServer) -> None:
    server.push(Behaviour(text="The product is 42.\nAnswer: 42", usage=(17, 9)))
    b = backend(server)
    c = await b.complete(MSGS, model="my-model", max_tokens=50)
    await b.aclose()
    assert c == Completion(text="The product is 42.\nAnswer: 42", prompt_tokens=17, output_tokens=9,
                           latency_s=c.latency_s, model="my-model")
    assert 0 < c.latency_s < 5
    body = server.state.requests[0]
    assert body["model"] == "my-model"
    assert body["max_tokens"] == 50
    assert body["messages"] == [{"role": "system", "content": "You are terse."},
                                {"role": "user", "content": "What is 6*7?"}]
    assert server.state.headers[0]["authorization"] == f"Bearer {KEY}"


async def test_tokens_counted_locally_when_usage_missing(server: FakeOpenAIServer) -> None:
    server.push(Behaviour(text="Answer: forty two", usage=None))
    b = backend(server)
    c = await b.complete(MSGS, model="m")
    await b.aclose()
    assert c.prompt_tokens == count_message_tokens(m.content for m in MSGS)
    assert c.output_tokens == count_tokens("Answer: forty two") == 4


async def test_sample_index_sent_as_seed_and_default_model_used(server: FakeOpenAIServer) -> None:
    b = backend(server)
    await b.complete(MSGS, model="", sample=0)
    await b.complete(MSGS, model="", sample=3)
    await b.aclose()
    assert [r["seed"] for r in server.state.requests] == [0, 3]
    assert [r["model"] for r in server.state.requests] == ["test-model", "test-model"]
    assert "max_tokens" not in server.state.requests[0]


async def test_latency_is_wall_time_of_the_call(server: FakeOpenAIServer) -> None:
    server.push(Behaviour(delay_s=0.15))
    b = backend(server)
    c = await b.complete(MSGS, model="m")
    await b.aclose()
    assert 0.15 <= c.latency_s < 2.0


# --- retries ------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["rate_limit", "server_error", "drop", "malformed_json",
                                  "no_choices", "empty_content"])
async def test_transient_failures_are_retried_then_succeed(server: FakeOpenAIServer, kind: str) -> None:
    server.push(kind, kind, Behaviour(text="Answer: ok"))
    sleeps = SleepRecorder()
    b = backend(server, sleep=sleeps)
    c = await b.complete(MSGS, model="m")
    await b.aclose()
    assert c.text == "Answer: ok"
    assert server.request_count == 3
    assert len(sleeps.delays) == 2


async def test_timeouts_are_retried(server: FakeOpenAIServer) -> None:
    server.push(Behaviour(delay_s=1.0), Behaviour(text="Answer: late but fine"))
    b = backend(server, timeout_s=0.3)
    t0 = time.perf_counter()
    c = await b.complete(MSGS, model="m")
    await b.aclose()
    assert c.text == "Answer: late but fine"
    assert server.request_count == 2
    assert time.perf_counter() - t0 < 1.0  # gave up on the slow attempt instead of waiting


async def test_retry_after_header_is_honoured_and_capped(server: FakeOpenAIServer) -> None:
    server.push(Behaviour(kind="rate_limit", retry_after="3"),
                Behaviour(kind="rate_limit", retry_after="100"),
                Behaviour(kind="rate_limit", retry_after=None), "ok")
    sleeps = SleepRecorder()
    policy = RetryPolicy(max_attempts=4, base_delay_s=0.5, max_delay_s=20, jitter=0.0)
    b = backend(server, sleep=sleeps, retry=policy)
    await b.complete(MSGS, model="m")
    await b.aclose()
    # 3 s as asked; 100 s capped at max_delay_s; no header: exponential backoff (third failure).
    assert sleeps.delays == [3.0, 20.0, 2.0]


async def test_unauthorized_fails_at_once_without_leaking_key(server: FakeOpenAIServer) -> None:
    server.push("unauthorized", "ok")
    sleeps = SleepRecorder()
    b = backend(server, sleep=sleeps)
    with pytest.raises(RapoError) as info:
        await b.complete(MSGS, model="m")
    await b.aclose()
    msg = str(info.value)
    assert "refused" in msg and "401" in msg and "OPENAI_API_KEY" in msg
    assert KEY not in msg and KEY not in repr(b)
    assert not isinstance(info.value, BackendUnavailable)
    assert server.request_count == 1
    assert sleeps.delays == []


async def test_not_found_names_model_and_url(server: FakeOpenAIServer) -> None:
    server.push("not_found")
    b = backend(server)
    with pytest.raises(RapoError) as info:
        await b.complete(MSGS, model="no-such-model")
    await b.aclose()
    assert "no-such-model" in str(info.value) and server.base_url in str(info.value)
    assert server.request_count == 1


async def test_exhausted_retries_raise_backend_unavailable(server: FakeOpenAIServer) -> None:
    server.push(*["server_error"] * 10)
    b = backend(server)
    with pytest.raises(BackendUnavailable) as info:
        await b.complete(MSGS, model="m")
    await b.aclose()
    msg = str(info.value)
    assert server.request_count == FAST.max_attempts == 4
    assert server.base_url in msg and "4 attempt" in msg and "500" in msg and "Check" in msg
    assert KEY not in msg
    assert isinstance(info.value, RapoError)


async def test_unreachable_endpoint_is_unavailable() -> None:
    srv = FakeOpenAIServer()  # bound to a free port, then closed: nothing listens there
    url = srv.base_url
    srv.server_close()
    b = OpenAIBackend(url, retry=FAST)
    with pytest.raises(BackendUnavailable, match="connection failed"):
        await b.complete(MSGS, model="m")
    await b.aclose()


# --- concurrency --------------------------------------------------------------------------------

async def test_concurrency_is_bounded_per_backend(server: FakeOpenAIServer) -> None:
    server.state.default_delay_s = 0.2
    b = backend(server, max_concurrency=2)
    results = await asyncio.gather(*(b.complete(MSGS, model="m", sample=i) for i in range(6)))
    await b.aclose()
    assert len(results) == 6 and server.request_count == 6
    assert server.state.max_in_flight == 2
    assert sorted(r["seed"] for r in server.state.requests) == list(range(6))


# --- configuration ------------------------------------------------------------------------------

def test_missing_key_for_real_openai_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(RapoError, match="no API key: set OPENAI_API_KEY or pass --api-key"):
        OpenAIBackend()


async def test_custom_url_without_key_uses_placeholder(
    monkeypatch: pytest.MonkeyPatch, server: FakeOpenAIServer
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    b = OpenAIBackend(retry=FAST)
    assert b.endpoint == server.base_url
    await b.complete(MSGS, model="m")
    await b.aclose()
    assert server.state.headers[0]["authorization"] == "Bearer EMPTY"


async def test_key_from_environment(monkeypatch: pytest.MonkeyPatch, server: FakeOpenAIServer) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    b = OpenAIBackend(server.base_url, retry=FAST)
    await b.complete(MSGS, model="m")
    await b.aclose()
    assert server.state.headers[0]["authorization"] == "Bearer sk-from-env"


async def test_no_model_anywhere_is_an_error(server: FakeOpenAIServer) -> None:
    b = OpenAIBackend(server.base_url, api_key=KEY)
    with pytest.raises(RapoError, match="no model name"):
        await b.complete(MSGS, model="")
    await b.aclose()
    assert server.request_count == 0


# --- the retry policy on its own ----------------------------------------------------------------

@given(failures=st.integers(1, 30), u=st.floats(0, 1, exclude_max=True),
       base=st.floats(0, 5), extra=st.floats(0, 50), jitter=st.floats(0, 1))
def test_backoff_stays_within_jitter_band_and_cap(
    failures: int, u: float, base: float, extra: float, jitter: float
) -> None:
    p = RetryPolicy(base_delay_s=base, max_delay_s=base + extra, jitter=jitter)
    d = p.backoff_s(failures, u)
    raw = min(p.max_delay_s, base * 2.0 ** (failures - 1))
    assert 0.0 <= d <= p.max_delay_s
    assert raw * (1 - jitter) - 1e-9 <= d <= raw * (1 + jitter) + 1e-9


def test_backoff_doubles_without_jitter() -> None:
    p = RetryPolicy(base_delay_s=0.5, max_delay_s=3.0, jitter=0.0)
    assert [p.backoff_s(n, 0.9) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_policy_rejects_inverted_delays() -> None:
    with pytest.raises(ValueError, match="max_delay_s"):
        RetryPolicy(base_delay_s=5, max_delay_s=1)


class Transient(Exception):
    pass


def transient_only(exc: BaseException) -> RetryDecision:
    return RetryDecision(retry=isinstance(exc, Transient), reason="flaky")


async def test_call_with_retries_reraises_non_retryable_immediately() -> None:
    calls = 0

    async def fn() -> int:
        nonlocal calls
        calls += 1
        raise KeyError("boom")

    sleeps = SleepRecorder()
    with pytest.raises(KeyError):
        await call_with_retries(fn, FAST, classify=transient_only, sleep=sleeps)
    assert calls == 1 and sleeps.delays == []


async def test_call_with_retries_uses_jittered_backoff_between_attempts() -> None:
    outcomes: list[Exception | int] = [Transient("a"), Transient("b"), 7]

    async def fn() -> int:
        o = outcomes.pop(0)
        if isinstance(o, Exception):
            raise o
        return o

    sleeps = SleepRecorder()
    policy = RetryPolicy(base_delay_s=1.0, max_delay_s=10.0, jitter=0.5)
    got = await call_with_retries(fn, policy, classify=transient_only, sleep=sleeps, rand=lambda: 1.0)
    assert got == 7
    assert sleeps.delays == [1.5, 3.0]  # u=1 -> +50% of 1 s, then of 2 s


async def test_call_with_retries_times_out_each_attempt() -> None:
    async def hang() -> int:
        await asyncio.sleep(10)
        return 0

    policy = RetryPolicy(max_attempts=2, base_delay_s=0.0, max_delay_s=0.0, timeout_s=0.05)
    t0 = time.perf_counter()
    with pytest.raises(BackendUnavailable, match="2 attempt") as info:
        await call_with_retries(
            hang, policy, endpoint="the endpoint X",
            classify=lambda e: RetryDecision(retry=isinstance(e, TimeoutError), reason="timed out"),
        )
    assert time.perf_counter() - t0 < 1.0
    assert "the endpoint X" in str(info.value) and "timed out" in str(info.value)
