"""Issue 12, defects 1, 4 and 6 on the service: a memory limit never deletes anything, a chat's history
costs no model calls, a turn writes what it changed (and restores exactly), listings come in pages."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from loopback import free_port  # noqa: E402
from rapo.checkpoint import conversation_snapshot, diff, marks, replay  # noqa: E402
from rapo.server import create_app  # noqa: E402
from rapo.server.durable import DurableConversationStore  # noqa: E402

TEAM = Path(__file__).resolve().parents[1] / "src" / "rapo" / "data" / "bench-team.yaml"
RUN = "serve/bench-support"


def _client(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://rapo.test", timeout=30)


async def _turn(client, cid: str, text: str) -> dict:
    r = await client.post(f"/conversations/{cid}/turns", json={"text": text})
    assert r.status_code == 200, r.text
    return r.json()


async def test_without_a_store_new_conversations_past_the_limit_are_refused_not_old_ones_dropped():
    async with _client(create_app(TEAM, backend="sim", max_conversations=3)) as client:
        first = (await client.post("/conversations")).json()["id"]
        await _turn(client, first, "The refund limit for order A17 is 120 dollars.")
        for _ in range(2):
            assert (await client.post("/conversations")).status_code == 201
        refused = await client.post("/conversations")
        assert refused.status_code == 429
        assert "limit of 3 conversations" in refused.json()["detail"] and "--store" in refused.json()["detail"]
        chat = await client.post("/v1/chat/completions", json={
            "model": "bench-support", "messages": [{"role": "user", "content": "Hello there."}]})
        assert chat.status_code == 429 and "limit of 3" in chat.json()["error"]["message"]
        got = await client.get(f"/conversations/{first}")
        assert got.status_code == 200 and got.json()["turns"] == 1  # the oldest is still there
        assert (await client.delete(f"/conversations/{first}")).status_code == 200
        assert (await client.post("/conversations")).status_code == 201  # room again


async def test_with_a_store_the_limit_unloads_idle_conversations_and_deletes_nothing(tmp_path):
    url = f"sqlite:///{tmp_path / 'e.db'}"
    durable = DurableConversationStore.open(url, max_conversations=2)
    async with _client(create_app(TEAM, backend="sim", store=durable)) as client:
        first = (await client.post("/conversations", json={"title": "kept"})).json()["id"]
        told = await _turn(client, first, "The refund limit for order A17 is 120 dollars.")
        others = [(await client.post("/conversations")).json()["id"] for _ in range(12)]
        assert durable.loaded() <= 2 and len(durable) == 13  # 2 in memory, 13 kept
        got = (await client.get(f"/conversations/{first}")).json()  # loaded again on access
        assert got["turns"] == 1 and got["title"] == "kept" and got["records"][0]["answer"] == told["answer"]
        answer = await _turn(client, first, "What is the refund limit for order A17?")
        assert answer["turn"] == 2 and answer["value"] == "120 dollars"
        listed = (await client.get("/conversations", params={"limit": 1000})).json()
        assert listed["total"] == 13 and [c["id"] for c in listed["conversations"]] == [first, *others]
    durable.close()
    con = sqlite3.connect(tmp_path / "e.db")
    metas = dict(con.execute("SELECT key, doc FROM docs WHERE key LIKE 'meta/%'").fetchall())
    con.close()
    assert len(metas) == 13 and not any('"deleted"' in doc for doc in metas.values())


def test_the_limit_is_a_command_line_flag(tmp_path):
    """`rapo serve --max-conversations 2 --store ...`: the first conversation survives 8 more."""
    port = free_port()
    db = tmp_path / "flag.db"
    proc = subprocess.Popen([sys.executable, "-m", "rapo.cli", "serve", "--team", str(TEAM), "--backend", "sim",
                             "--port", str(port), "--store", f"sqlite:///{db}", "--max-conversations", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        with httpx.Client(base_url=base, timeout=20) as c:
            first = c.post("/conversations").json()["id"]
            assert c.post(f"/conversations/{first}/turns", json={"text": "The tier for customer C5 is Gold."}
                          ).status_code == 200
            for _ in range(8):
                assert c.post("/conversations").status_code == 201
            got = c.get(f"/conversations/{first}")
            assert got.status_code == 200 and got.json()["turns"] == 1
            assert c.get("/conversations").json()["total"] == 9
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    assert "up to 2 loaded at once" in out, out


async def test_paging_of_the_list_and_of_a_conversations_records():
    async with _client(create_app(TEAM, backend="sim")) as client:
        ids = [(await client.post("/conversations")).json()["id"] for _ in range(5)]
        page = (await client.get("/conversations", params={"offset": 1, "limit": 2})).json()
        assert [c["id"] for c in page["conversations"]] == ids[1:3]
        assert (page["total"], page["offset"], page["next_offset"]) == (5, 1, 3)
        assert (await client.get("/conversations", params={"offset": 4})).json()["next_offset"] is None
        for i in range(5):
            await _turn(client, ids[0], f"The shipping fee for order B{i} is {i + 10} dollars.")
        detail = (await client.get(f"/conversations/{ids[0]}", params={"offset": 3, "limit": 10})).json()
        assert [r["turn"] for r in detail["records"]] == [4, 5] and detail["turns"] == 5
        assert detail["next_offset"] is None and detail["records_offset"] == 3
        first = (await client.get(f"/conversations/{ids[0]}", params={"limit": 2})).json()
        assert [r["turn"] for r in first["records"]] == [1, 2] and first["next_offset"] == 2
        assert (await client.get("/conversations", params={"limit": 0})).status_code == 422


async def test_a_turn_appends_and_the_journal_restores_exactly(tmp_path):
    """Replaying the base and the deltas gives the conversation's snapshot exactly, at every turn and
    across a compaction; a restarted server continues it; the deltas stay small."""
    url = f"sqlite:///{tmp_path / 'j.db'}"
    durable = DurableConversationStore.open(url, compact_every=4)
    texts = ["The refund limit for order A17 is 120 dollars.", "The tier for customer C5 is Gold.",
             "What is the refund limit for order A17?", "Correction: the refund limit for order A17 is now 150 dollars.",
             "The discount rate for the Gold tier is 15 percent.", "What is the refund limit for order A17?",
             "The customer for order A17 is customer C5.", "What is the discount rate for the tier of the customer for order A17?",
             "Is it true that the refund limit for order A17 is 120 dollars?"]
    app = create_app(TEAM, backend="sim", store=durable)
    async with _client(app) as client:
        cid = (await client.post("/conversations")).json()["id"]
        for text in texts:
            await _turn(client, cid, text)
            entry = durable.get(cid)
            want = json.loads(json.dumps(conversation_snapshot(entry.state)))  # as stored: tuples are lists
            keys = durable.store.keys(RUN, f"journal/{cid}/")
            base = durable.store.get(RUN, f"journal/{cid}/base")
            deltas = [durable.store.get(RUN, k)["ops"] for k in keys if not k.endswith("/base")]
            assert replay(base["snapshot"], deltas) == want
            assert len(deltas) < 4  # compacted every 4 writes
        before = (await client.get(f"/conversations/{cid}")).json()
    durable.close()
    durable = DurableConversationStore.open(url, compact_every=4)
    async with _client(create_app(TEAM, backend="sim", store=durable)) as client:
        after = (await client.get(f"/conversations/{cid}")).json()
        assert after["records"] == before["records"] and after["facts"] == before["facts"]
        resumed = await _turn(client, cid, "What is the refund limit for order A17?")
    durable.close()
    async with _client(create_app(TEAM, backend="sim")) as client:  # the same, never stopped, never stored
        sid = (await client.post("/conversations")).json()["id"]
        for text in texts:
            await _turn(client, sid, text)
        straight = await _turn(client, sid, "What is the refund limit for order A17?")
    assert [resumed[k] for k in ("turn", "agent", "answer", "value")] == \
        [straight[k] for k in ("turn", "agent", "answer", "value")]


def test_diff_handles_appends_changes_in_place_grown_blobs_and_removed_keys():
    import base64

    old = {"a": [1, 2, 3], "b": {"x": 1, "gone": 2}, "blob": base64.b64encode(bytes(1000)).decode(), "c": "s"}
    new = {"a": [1, 5, 3, 4], "b": {"x": 1, "y": [7]}, "blob": base64.b64encode(bytes(1000) + b"\x01" * 7).decode(),
           "c": "s"}
    ops, m = diff(marks(old), new)
    assert replay(old, [ops]) == new and m == marks(new)
    assert ops["d"]["a"] == {"p": {"1": 5}, "+": [4]} and "c" not in ops["d"]
    assert len(ops["d"]["blob"]["s"][1]) < 20  # only the grown tail of the blob
    assert diff(marks(new), new)[0] is None


async def test_a_500_message_chat_costs_the_model_calls_of_its_last_message_only(tmp_path):
    """1,503 model calls for one request before: every question in the history was asked again."""
    url = f"sqlite:///{tmp_path / 'chat.db'}"
    durable = DurableConversationStore.open(url)
    app = create_app(TEAM, backend="sim", store=durable)
    calls = []
    for backend in {id(b): b for b in app.state.service.orch.backends.values()}.values():
        inner = backend.complete

        async def counted(*args, _inner=inner, **kw):
            calls.append(1)
            return await _inner(*args, **kw)

        backend.complete = counted
    history = []
    for i in range(499):
        history.append({"role": "user", "content": f"What is the refund limit for order A{i}?" if i % 2 else
                        f"The refund limit for order A{i + 1} is {100 + i} dollars."})
    messages = [*history, {"role": "user", "content": "What is the refund limit for order A9?"}]
    async with _client(app) as client:
        r = await client.post("/v1/chat/completions", json={"model": "bench-support", "messages": messages})
        assert r.status_code == 200, r.text
        extra = r.json()["rapo"]
        entry = durable.get(extra["conversation"])
        last = entry.records[-1]
        assert extra["history"] == "observed" and extra["turn"] == 500 and extra["value"] == "108 dollars"
        assert len(calls) == last.calls and 1 <= last.calls <= 3  # the last message's own calls, no more
        assert all(rec.calls == 0 for rec in entry.records[:-1])
    durable.close()


async def test_a_chat_continues_its_conversation_after_a_restart(tmp_path):
    """The map from a chat to its conversation is in the store: a restarted server continues the chat
    instead of starting a new conversation from its messages."""
    url = f"sqlite:///{tmp_path / 'map.db'}"
    messages = [{"role": "user", "content": "The refund limit for order A17 is 120 dollars."}]
    durable = DurableConversationStore.open(url)
    async with _client(create_app(TEAM, backend="sim", store=durable)) as client:
        r = await client.post("/v1/chat/completions", json={"model": "bench-support", "messages": messages})
        first = r.json()["rapo"]
    durable.close()
    follow = [*messages, {"role": "assistant", "content": r.json()["choices"][0]["message"]["content"]},
              {"role": "user", "content": "What is the refund limit for order A17?"}]
    durable = DurableConversationStore.open(url)
    async with _client(create_app(TEAM, backend="sim", store=durable)) as client:
        r2 = await client.post("/v1/chat/completions", json={"model": "bench-support", "messages": follow})
        assert r2.status_code == 200, r2.text
        again = r2.json()["rapo"]
        assert again["history"] == "continued" and again["conversation"] == first["conversation"]
        assert again["turn"] == 2 and again["value"] == "120 dollars"
        assert (await client.get("/conversations")).json()["total"] == 1
    durable.close()


async def test_chat_messages_are_held_to_the_rest_limits():
    async with _client(create_app(TEAM, backend="sim", max_body_bytes=1 << 20)) as client:
        def chat(*texts):
            return client.post("/v1/chat/completions", json={
                "model": "bench-support", "messages": [{"role": "user", "content": t} for t in texts]})

        nul = await chat("The tier for customer C5 is\x00 Gold.", "What is the tier for customer C5?")
        assert nul.status_code == 422 and "NUL" in nul.json()["error"]["message"]
        long = await chat("x" * 16_001)
        assert long.status_code == 422 and "16000" in long.json()["error"]["message"].replace(",", "")
        parts = await client.post("/v1/chat/completions", json={"model": "bench-support", "messages": [
            {"role": "user", "content": [{"type": "text", "text": "y" * 9000}, {"type": "text", "text": "y" * 9000}]}]})
        assert parts.status_code == 422 and "at most 16,000" in parts.json()["error"]["message"]
        total = await chat(*["z" * 15_000] * 14)
        assert total.status_code == 422 and "200,000" in total.json()["error"]["message"]
        many = await chat(*["hello"] * 501)
        assert many.status_code == 422


async def test_an_empty_conversation_is_stored_small_and_comes_back_exactly(tmp_path):
    """10,000 empty conversations took 124 MB (12 KB each); one is now its metadata and random stream."""
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    durable = DurableConversationStore.open(url)
    async with _client(create_app(TEAM, backend="sim", store=durable)) as client:
        ids = [(await client.post("/conversations")).json()["id"] for _ in range(3)]
    durable.close()
    con = sqlite3.connect(tmp_path / "empty.db")
    sizes = [n for (n,) in con.execute("SELECT length(doc) FROM docs WHERE key LIKE 'meta/%' OR key LIKE 'journal/%'")]
    con.close()
    assert len(sizes) == 3 and max(sizes) < 1500, sizes
    durable = DurableConversationStore.open(url)
    async with _client(create_app(TEAM, backend="sim", store=durable)) as client:
        said = [await _turn(client, ids[2], t) for t in ("The tier for customer C5 is Gold.", "What is the tier for customer C5?")]
    durable.close()
    async with _client(create_app(TEAM, backend="sim")) as client:  # never stored: the same third conversation
        for _ in range(2):
            await client.post("/conversations")
        cid = (await client.post("/conversations")).json()["id"]
        straight = [await _turn(client, cid, t) for t in ("The tier for customer C5 is Gold.", "What is the tier for customer C5?")]
    assert [(r["agent"], r["answer"], r["record"]["routing"]) for r in said] == \
        [(r["agent"], r["answer"], r["record"]["routing"]) for r in straight]


async def test_concurrent_turns_on_more_conversations_than_fit_lose_nothing(tmp_path):
    """Limit 1, three conversations, turns on all of them at once: each turn runs on the live copy of
    its conversation (one unloaded meanwhile is loaded again), so every turn is kept, in order."""
    import asyncio

    url = f"sqlite:///{tmp_path / 'busy.db'}"
    durable = DurableConversationStore.open(url, max_conversations=1)
    async with _client(create_app(TEAM, backend="sim", store=durable)) as client:
        ids = [(await client.post("/conversations")).json()["id"] for _ in range(3)]
        texts = [f"The shipping fee for order B{i} is {10 + i} dollars." for i in range(6)]

        async def talk(cid: str) -> None:
            for text in texts:
                await _turn(client, cid, text)

        await asyncio.gather(*(talk(cid) for cid in ids))
        for cid in ids:
            detail = (await client.get(f"/conversations/{cid}")).json()
            assert [r["text"] for r in detail["records"]] == texts and detail["turns"] == 6
    durable.close()
    durable = DurableConversationStore.open(url)
    async with _client(create_app(TEAM, backend="sim", store=durable)) as client:
        for cid in ids:
            assert [r["text"] for r in (await client.get(f"/conversations/{cid}")).json()["records"]] == texts
    durable.close()
