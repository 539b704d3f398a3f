"""The REST API on a live server (uvicorn on 127.0.0.1, the benchmark team on the simulated model)."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from rapo.server import InMemoryStore, create_app, serve_in_thread  # noqa: E402
from rapo.server.serve import check_bind, is_loopback  # noqa: E402
from rapo.types import RapoError  # noqa: E402

TEAM = Path(__file__).resolve().parents[1] / "src" / "rapo" / "data" / "bench-team.yaml"
TOKEN = "tok-9f2c1e7a55d04b18"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def base_url():
    with serve_in_thread(create_app(TEAM, backend="sim", token=TOKEN, max_body_bytes=4096)) as url:
        yield url


@pytest.fixture
async def client(base_url):
    async with httpx.AsyncClient(base_url=base_url, headers=AUTH, timeout=20) as c:
        yield c


async def new_conv(client) -> str:
    r = await client.post("/conversations")
    assert r.status_code == 201, r.text
    return r.json()["id"]


async def test_health_needs_no_token_and_everything_else_does(base_url):
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as anon:
        h = await anon.get("/health")
        assert h.status_code == 200 and h.json()["team"] == "bench-support"
        assert h.json()["agents"] == ["retriever", "calculator", "reasoner", "generalist"]
        for method, path in [("POST", "/conversations"), ("GET", "/conversations"), ("GET", "/conversations/x"),
                             ("DELETE", "/conversations/x"), ("POST", "/conversations/x/turns"),
                             ("GET", "/v1/models"), ("POST", "/v1/chat/completions")]:
            r = await anon.request(method, path, json={})
            assert r.status_code == 401, (method, path, r.status_code)
            assert r.headers["www-authenticate"] == "Bearer"
        wrong = await anon.get("/conversations", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and "bearer token" in wrong.json()["detail"]


async def test_token_never_appears_in_responses_or_logs(client, caplog):
    caplog.set_level(logging.DEBUG)
    cid = await new_conv(client)
    bodies = [
        await client.post(f"/conversations/{cid}/turns", json={"text": "The fee for order B22 is 12 dollars."}),
        await client.get(f"/conversations/{cid}"),
        await client.get("/conversations"),
        await client.post(f"/conversations/{cid}/turns", json={"text": ""}),
        await client.get("/conversations/nope", headers={"Authorization": f"Bearer {TOKEN}x"}),
    ]
    assert [b.status_code for b in bodies] == [200, 200, 200, 422, 401]
    for b in bodies:
        assert TOKEN not in b.text and TOKEN not in json.dumps(dict(b.headers))
    assert TOKEN not in caplog.text


async def test_conversation_lifecycle_keeps_facts_and_traces(client):
    cid = await new_conv(client)
    r1 = await client.post(f"/conversations/{cid}/turns",
                           json={"text": "The refund limit for order A17 is 120 dollars."})
    assert r1.status_code == 200
    assert r1.json()["agent"] is None and r1.json()["answer"].startswith("Noted")
    r2 = await client.post(f"/conversations/{cid}/turns",
                           json={"text": "What is the refund limit for order A17?", "critical": True})
    body = r2.json()
    assert body["turn"] == 2 and body["value"] == "120 dollars"
    record = body["record"]
    assert record["agent"] in ("retriever", "calculator", "reasoner", "generalist")
    assert record["consensus"]["triggered_by"] == "critical" and record["consensus"]["rounds"]
    assert {s["agent"] for s in record["routing"]["scores"]} == {"retriever", "calculator", "reasoner", "generalist"}
    assert any("A17" in c["text"] and c["reason"] == "named" for c in record["context"])
    assert record["prompt"] and record["prompt_tokens"] > 0

    detail = (await client.get(f"/conversations/{cid}")).json()
    assert detail["turns"] == 2 and [r["turn"] for r in detail["records"]] == [1, 2]
    user_facts = [f for f in detail["facts"] if f["origin"] == "user"]
    assert [(f["key"], f["value"]) for f in user_facts] == [("refund limit|a17", "120 dollars")]
    assert set(detail["capabilities"]) == {"retriever", "calculator", "reasoner", "generalist"}
    assert 0.0 < detail["capabilities"]["retriever"]["lookup"] < 1.0

    listed = (await client.get("/conversations")).json()["conversations"]
    assert any(c["id"] == cid and c["turns"] == 2 for c in listed)
    assert (await client.delete(f"/conversations/{cid}")).json() == {"id": cid, "deleted": True}
    gone = await client.get(f"/conversations/{cid}")
    assert gone.status_code == 404 and cid in gone.json()["detail"]
    assert (await client.delete(f"/conversations/{cid}")).status_code == 404


async def test_bad_requests_name_the_field(client):
    cid = await new_conv(client)
    cases = [
        ({"text": ""}, "body.text"),
        ({"text": "   "}, "body.text"),
        ({}, "body.text"),
        ({"text": "hi", "critical": "very"}, "body.critical"),
        ({"text": "hi", "colour": "red"}, "body.colour"),
    ]
    for payload, field in cases:
        r = await client.post(f"/conversations/{cid}/turns", json=payload)
        assert r.status_code == 422, payload
        assert field in [e["field"] for e in r.json()["errors"]], r.json()
        assert field in r.json()["detail"]
    bad_json = await client.post(f"/conversations/{cid}/turns", content=b"{not json",
                                 headers={"content-type": "application/json"})
    assert bad_json.status_code == 422 and "not valid JSON" in bad_json.json()["detail"]
    unknown = await client.post("/conversations/doesnotexist/turns", json={"text": "hi"})
    assert unknown.status_code == 404 and "'doesnotexist'" in unknown.json()["detail"]


async def test_oversized_bodies_are_refused_with_413(client, base_url):
    cid = await new_conv(client)
    big = {"text": "x" * 5000}
    r = await client.post(f"/conversations/{cid}/turns", json=big)
    assert r.status_code == 413 and "4096 bytes" in r.json()["detail"]

    async def chunks():  # no Content-Length: the limit is counted as the body arrives
        for _ in range(10):
            yield b"a" * 1000

    r = await client.post(f"/conversations/{cid}/turns", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    ok = await client.post(f"/conversations/{cid}/turns", json={"text": "The fee for order C3 is 4 dollars."})
    assert ok.status_code == 200  # the connection pool and the conversation are still fine


async def test_streamed_turn_emits_each_stage_in_order_then_final(client):
    cid = await new_conv(client)
    await client.post(f"/conversations/{cid}/turns", json={"text": "The shipping fee for order B22 is 12 dollars."})
    events = []
    async with client.stream("POST", f"/conversations/{cid}/turns", params={"stream": "true"},
                             json={"text": "What is the shipping fee for order B22?", "critical": True}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        name = None
        async for line in r.aiter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[6:])))
    names = [n for n, _ in events]
    assert names[:3] == ["accepted", "routing", "prompt"] and names[-2:] == ["reply", "final"]
    assert set(names[3:-2]) == {"consensus_round"}
    assert all(d["live"] is True for n, d in events[:-1])  # each stage sent as the orchestrator reached it
    final = events[-1][1]
    assert final["value"] == "12 dollars" and final["turn"] == 2
    stored = (await client.get(f"/conversations/{cid}")).json()["records"][-1]
    assert stored["answer"] == final["answer"] == events[-2][1]["answer"]
    assert events[1][1]["chosen"] == stored["routing"]["chosen"]

    statement = await client.post(f"/conversations/{cid}/turns?stream=true",
                                  json={"text": "The fee for order Q1 is 3 dollars."})
    names = [line[7:] for line in statement.text.splitlines() if line.startswith("event: ")]
    assert names == ["accepted", "noted", "final"]


async def test_turns_of_one_conversation_are_serialised(client):
    cid = await new_conv(client)
    texts = [f"The fee for order Z{i} is {i + 10} dollars." for i in range(12)]
    replies = await asyncio.gather(*(client.post(f"/conversations/{cid}/turns", json={"text": t}) for t in texts))
    assert sorted(r.json()["turn"] for r in replies) == list(range(1, 13))
    detail = (await client.get(f"/conversations/{cid}")).json()
    assert [r["turn"] for r in detail["records"]] == list(range(1, 13))
    assert sorted(f["value"] for f in detail["facts"]) == sorted(f"{i + 10} dollars" for i in range(12))


def test_binding_beyond_loopback_needs_a_token():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback("127.1.2.3")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4") and not is_loopback("example.org")
    check_bind("127.0.0.1", None)
    check_bind("0.0.0.0", "secret")
    with pytest.raises(RapoError, match="--token"):
        check_bind("0.0.0.0", None)
    with pytest.raises(RapoError, match="without a token"):
        check_bind("::", "  ")


def test_create_app_refuses_an_empty_token_and_takes_a_path():
    with pytest.raises(RapoError, match="token"):
        create_app(TEAM, backend="sim", token="")
    app = create_app(str(TEAM), backend="sim")
    assert app.state.service.team.name == "bench-support"
    assert {a.backend for a in app.state.service.team.agents} == {"sim"}


def test_store_is_thread_safe_and_bounded():
    from concurrent.futures import ThreadPoolExecutor

    from rapo.embed import make_embedder
    from rapo.state import ConversationState

    emb = make_embedder("hashing")
    from rapo.server.store import StoreFull

    store = InMemoryStore(max_conversations=50)
    states = [ConversationState.new(f"c{i}", 2, emb) for i in range(200)]

    def create(st):
        try:
            return store.create(st, origin="rest")
        except StoreFull:
            return None

    with ThreadPoolExecutor(8) as pool:
        made = [e for e in pool.map(create, states) if e is not None]
    assert len(store) == 50 and len(made) == 50  # past the limit new ones are refused, no old one dropped
    kept = {e.id for e in store.list()}
    assert kept == {e.id for e in made}
    assert all(store.get(k).state.id == k for k in kept)
    with ThreadPoolExecutor(8) as pool:
        deleted = list(pool.map(store.delete, sorted(kept) * 2))
    assert sum(deleted) == 50 and len(store) == 0
    with pytest.raises(RapoError, match="at least 1"):
        InMemoryStore(max_conversations=0)


async def test_stages_stream_while_the_model_is_still_working():
    """With a model that takes real time, the routing and prompt events arrive before the reply exists."""
    import time as _time

    import yaml

    from rapo.team import team_from_dict

    data = yaml.safe_load(Path(TEAM).read_text())
    data["backend_options"] = {"sim": {"clock": "real", "time_scale": 0.25}}  # ~0.2-0.4 s per call
    data["consensus"] = {"mode": "never"}
    app = create_app(team_from_dict(data), backend="sim")
    with serve_in_thread(app) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as c:
            cid = (await c.post("/conversations")).json()["id"]
            await c.post(f"/conversations/{cid}/turns", json={"text": "The shipping fee for order B22 is 12 dollars."})
            seen: dict[str, float] = {}
            async with c.stream("POST", f"/conversations/{cid}/turns", params={"stream": "true"},
                                json={"text": "What is the shipping fee for order B22?"}) as r:
                async for line in r.aiter_lines():
                    if line.startswith("event: "):
                        seen.setdefault(line[7:], _time.perf_counter())
    assert list(seen) == ["accepted", "routing", "prompt", "reply", "final"]
    assert seen["reply"] - seen["prompt"] > 0.1  # the prompt event came while the model call was running
