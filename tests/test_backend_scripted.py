"""ScriptedBackend behaviour and the backend registry."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rapo.backends.openai_compat import OpenAIBackend
from rapo.backends.registry import BACKEND_NAMES, make_backend
from rapo.backends.retry import RetryPolicy
from rapo.backends.scripted import SCRIPTED_ANSWER, ScriptedBackend, ScriptedCall, default_reply
from rapo.tokens import count_message_tokens, count_tokens
from rapo.types import Backend, Message, RapoError


def user(text: str) -> list[Message]:
    return [Message(role="system", content="Be brief."), Message(role="user", content=text)]


async def test_replies_cycle_in_order() -> None:
    b = ScriptedBackend(["one", "two", "three"])
    texts = [(await b.complete(user(f"q{i}"), model="m")).text for i in range(7)]
    assert texts == ["one", "two", "three", "one", "two", "three", "one"]


async def test_default_reply_is_a_plain_marked_scripted_answer_not_an_echo() -> None:
    question = "What is the refund limit for order A17?"
    c = await ScriptedBackend().complete(user(question), model="m")
    assert "A17" not in c.text and "scripted backend" in c.text
    assert c.text.splitlines()[-1] == f"Answer: {SCRIPTED_ANSWER}"


@given(st.text(max_size=300))
def test_default_reply_does_not_depend_on_the_prompt(text: str) -> None:
    assert default_reply([Message(role="user", content=text)], "m") == default_reply([], "m")


async def test_reply_function_sees_messages_and_model() -> None:
    def fn(messages: Sequence[Message], model: str) -> str:
        return f"{model}:{messages[-1].content.upper()}"

    b = ScriptedBackend(fn)
    assert (await b.complete(user("hello"), model="alpha")).text == "alpha:HELLO"


async def test_async_reply_function_is_awaited() -> None:
    async def fn(messages: Sequence[Message], model: str) -> str:
        await asyncio.sleep(0)
        return "Answer: async"

    assert (await ScriptedBackend(fn).complete(user("x"), model="m")).text == "Answer: async"


async def test_per_model_scripts_override_default_and_cycle_separately() -> None:
    b = ScriptedBackend(["default"], per_model={"a": ["a1", "a2"], "b": lambda m, model: "from-b"})
    got = [(await b.complete(user("q"), model=m)).text for m in ["a", "b", "a", "z", "a"]]
    assert got == ["a1", "from-b", "a2", "default", "a1"]


async def test_calls_are_recorded_with_sample_and_max_tokens() -> None:
    b = ScriptedBackend(["ok"])
    await b.complete(user("first"), model="m1")
    await b.complete(user("second"), model="m2", max_tokens=5, sample=2)
    assert b.calls == [
        ScriptedCall(messages=tuple(user("first")), model="m1", sample=0, max_tokens=None),
        ScriptedCall(messages=tuple(user("second")), model="m2", sample=2, max_tokens=5),
    ]


async def test_token_counts_and_virtual_latency() -> None:
    b = ScriptedBackend(["The answer follows.\nAnswer: 150 dollars"], latency_s=2.5)
    msgs = user("What is the refund limit for order A17?")
    t0 = time.perf_counter()
    c = await b.complete(msgs, model="m")
    assert time.perf_counter() - t0 < 0.5  # virtual: no real waiting
    assert c.latency_s == 2.5 and c.model == "m"
    assert c.prompt_tokens == count_message_tokens(m.content for m in msgs) == 21
    assert c.output_tokens == count_tokens(c.text) == 8


async def test_sleep_mode_really_waits_and_runs_concurrently() -> None:
    b = ScriptedBackend(["x"], latency_s=0.1, sleep=True)
    t0 = time.perf_counter()
    await asyncio.gather(*(b.complete(user("q"), model="m") for _ in range(5)))
    elapsed = time.perf_counter() - t0
    assert 0.1 <= elapsed < 0.4


@pytest.mark.parametrize("bad, match", [([], "empty"), ("oops", "list of strings"),
                                        (["ok", 3], "must be a string")])
def test_bad_scripts_are_rejected(bad: object, match: str) -> None:
    with pytest.raises(RapoError, match=match):
        ScriptedBackend(bad)  # type: ignore[arg-type]


async def test_reply_function_must_return_text() -> None:
    b = ScriptedBackend(lambda m, model: 42)  # type: ignore[arg-type, return-value]
    with pytest.raises(RapoError, match="returned int"):
        await b.complete(user("q"), model="m")


async def test_closed_backend_refuses_calls() -> None:
    b = ScriptedBackend()
    await b.aclose()
    with pytest.raises(RapoError, match="closed"):
        await b.complete(user("q"), model="m")


def test_scripted_satisfies_backend_protocol() -> None:
    assert isinstance(ScriptedBackend(), Backend)


# --- registry -----------------------------------------------------------------------------------

def test_registry_builds_scripted_with_options() -> None:
    b = make_backend("scripted", replies=["hi"], latency_s=1.0)
    assert isinstance(b, ScriptedBackend) and b.latency_s == 1.0


@pytest.mark.parametrize("name", ["openai", "openai-compatible", "OpenAI_Compatible"])
async def test_registry_builds_openai(name: str) -> None:
    b = make_backend(name, base_url="http://127.0.0.1:9/v1", api_key="k", max_concurrency=3,
                     retry=RetryPolicy(max_attempts=2))
    assert isinstance(b, OpenAIBackend)
    assert b.endpoint == "http://127.0.0.1:9/v1" and b.max_concurrency == 3
    assert b.retry.max_attempts == 2
    await b.aclose()


def test_registry_unknown_name_lists_known_ones() -> None:
    with pytest.raises(RapoError) as info:
        make_backend("gpt-magic")
    msg = str(info.value)
    assert "'gpt-magic'" in msg
    assert all(n in msg for n in ("openai", "openai-compatible", "scripted", "sim"))
    assert set(BACKEND_NAMES) == {"openai", "openai-compatible", "scripted", "sim"}


def test_registry_unknown_option_is_named() -> None:
    with pytest.raises(RapoError) as info:
        make_backend("scripted", replies=["x"], temprature=0.3)
    assert "'temprature'" in str(info.value) and "latency_s" in str(info.value)


def test_registry_sim_is_imported_lazily(monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    class FakeSim:
        def __init__(self, seed: int = 0) -> None:
            self.seed = seed

    module = types.ModuleType("rapo.backends.sim")
    module.SimBackend = FakeSim  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "rapo.backends.sim", module)
    b = make_backend("sim", seed=7)
    assert isinstance(b, FakeSim) and b.seed == 7
    with pytest.raises(RapoError, match="'colour'"):
        make_backend("sim", colour="red")


def test_registry_sim_missing_module_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "rapo.backends.sim", None)  # makes the import fail
    with pytest.raises(RapoError, match="'sim' backend is not available"):
        make_backend("sim")
