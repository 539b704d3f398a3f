"""The OpenAI-compatible endpoint, driven by the official `openai` SDK against a live server."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("fastapi")
openai = pytest.importorskip("openai")

from rapo.server import create_app, serve_in_thread  # noqa: E402

TEAM = Path(__file__).resolve().parents[1] / "src" / "rapo" / "data" / "bench-team.yaml"
TOKEN = "oa-token-3b9d0c"


@pytest.fixture(scope="module")
def server():
    app = create_app(TEAM, backend="sim", token=TOKEN)
    with serve_in_thread(app) as url:
        yield url, app


@pytest.fixture
async def client(server):
    c = openai.AsyncOpenAI(base_url=server[0] + "/v1", api_key=TOKEN, max_retries=0, timeout=20)
    yield c
    await c.close()


async def test_models_lists_the_team(client):
    models = await client.models.list()
    assert [m.id for m in models.data] == ["bench-support"]


async def test_chat_continues_the_stored_conversation(client, server):
    app = server[1]
    first = [{"role": "user", "content": "The refund limit for order A17 is 120 dollars."}]
    r1 = await client.chat.completions.create(model="bench-support", messages=first)
    assert r1.choices[0].message.content.startswith("Noted")
    rapo1 = r1.model_extra["rapo"]
    assert rapo1["history"] == "new"

    second = first + [{"role": "assistant", "content": r1.choices[0].message.content},
                      {"role": "user", "content": "What is the refund limit for order A17?"}]
    r2 = await client.chat.completions.create(model="bench-support", messages=second)
    rapo2 = r2.model_extra["rapo"]
    assert rapo2["history"] == "continued" and rapo2["conversation"] == rapo1["conversation"] and rapo2["turn"] == 2
    assert rapo2["value"] == "120 dollars" and "120 dollars" in r2.choices[0].message.content
    assert r2.usage.prompt_tokens > 0 and r2.usage.total_tokens == r2.usage.prompt_tokens + r2.usage.completion_tokens
    stored = app.state.service.store.get(rapo1["conversation"])
    assert stored.origin == "openai" and len(stored.records) == 2


async def test_unknown_history_is_observed_into_a_new_conversation(client, server):
    messages = [{"role": "system", "content": "be brief"},
                {"role": "user", "content": "The shipping fee for order B22 is 12 dollars."},
                {"role": "assistant", "content": "ok (an answer this server never gave)"},
                {"role": "user", "content": [{"type": "text", "text": "What is the shipping fee for order B22?"}]}]
    r = await client.chat.completions.create(model="bench-support", messages=messages)
    extra = r.model_extra["rapo"]
    assert extra["history"] == "observed" and extra["turn"] == 3 and extra["value"] == "12 dollars"
    stored = server[1].state.service.store.get(extra["conversation"])
    assert [(rec.text, rec.speaker) for rec in stored.records] == [
        ("The shipping fee for order B22 is 12 dollars.", "user"), ("ok (an answer this server never gave)", "assistant"),
        ("What is the shipping fee for order B22?", None)]
    assert [rec.calls for rec in stored.records[:2]] == [0, 0]  # taken into memory, not asked


async def test_streaming_gives_the_same_kind_of_answer_in_chunks(client):
    messages = [{"role": "user", "content": "The refund limit for order D4 is 75 dollars. "
                                            "What is the refund limit for order D4?"}]
    stream = await client.chat.completions.create(model="bench-support", messages=messages, stream=True,
                                                  stream_options={"include_usage": True})
    pieces, finish, usage = [], None, None
    async for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            pieces.append(choice.delta.content or "")
            finish = choice.finish_reason or finish
    text = "".join(pieces)
    assert len(pieces) > 3 and finish == "stop"
    assert "75 dollars" in text and "Answer:" in text
    assert usage is not None and usage.prompt_tokens > 0


async def test_errors_reach_the_sdk_as_its_own_exceptions(client, server):
    with pytest.raises(openai.NotFoundError, match="bench-support"):
        await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.NotFoundError):
        await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True)
    with pytest.raises(openai.UnprocessableEntityError, match="last"):
        await client.chat.completions.create(model="bench-support",
                                             messages=[{"role": "user", "content": "hi"},
                                                       {"role": "assistant", "content": "hello"}])
    with pytest.raises(openai.UnprocessableEntityError, match="messages"):
        await client.chat.completions.create(model="bench-support", messages=[])
    bad = openai.AsyncOpenAI(base_url=server[0] + "/v1", api_key="bad-key-77e1", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as err:
        await bad.models.list()
    assert TOKEN not in str(err.value) and "bad-key-77e1" not in str(err.value.body)
    await bad.close()
