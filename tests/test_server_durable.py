"""`rapo serve --store`: a server restarted on the same store lists every conversation with its turns and
continues it with what it knew (the ledger's facts, the team's learned counts)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from rapo.server import create_app  # noqa: E402
from rapo.server.durable import DurableConversationStore  # noqa: E402
from rapo.store import open_store  # noqa: E402

TEAM = Path(__file__).resolve().parents[1] / "src" / "rapo" / "data" / "bench-team.yaml"


def _client(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://rapo.test", timeout=20)


async def _turn(client: httpx.AsyncClient, cid: str, text: str, critical: bool = False) -> dict:
    r = await client.post(f"/conversations/{cid}/turns", json={"text": text, "critical": critical})
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.parametrize("scheme", ["sqlite:///", "sqlite+pysqlite:///"])
async def test_restarted_server_continues_every_conversation(tmp_path, scheme):
    if scheme.startswith("sqlite+"):
        pytest.importorskip("sqlalchemy")
    url = f"{scheme}{tmp_path / 'serve.db'}"
    durable = DurableConversationStore.open(url)
    async with _client(create_app(TEAM, backend="sim", store=durable)) as client:
        cid = (await client.post("/conversations", json={"title": "refunds"})).json()["id"]
        first = await _turn(client, cid, "The refund limit for order A17 is 120 dollars.")
        await _turn(client, cid, "The tier for customer C5 is Gold.")
        gone = (await client.post("/conversations")).json()["id"]
        await _turn(client, gone, "The discount rate for the Gold tier is 15 percent.")
        assert (await client.delete(f"/conversations/{gone}")).status_code == 200
        chat = await client.post("/v1/chat/completions", json={
            "model": "bench-support", "messages": [{"role": "user", "content": "The customer for order B2 is C9."}]})
        assert chat.status_code == 200, chat.text
        chat_id = chat.json()["rapo"]["conversation"]
        before = (await client.get(f"/conversations/{cid}")).json()
    durable.close()

    durable = DurableConversationStore.open(url)  # a new server process, as far as the app can tell
    async with _client(create_app(TEAM, backend="sim", store=durable)) as client:
        listed = {c["id"]: c for c in (await client.get("/conversations")).json()["conversations"]}
        assert set(listed) == {cid, chat_id}  # the deleted one stays deleted
        assert (listed[cid]["turns"], listed[cid]["title"], listed[cid]["origin"]) == (2, "refunds", "rest")
        assert (listed[chat_id]["turns"], listed[chat_id]["origin"]) == (1, "openai")
        detail = (await client.get(f"/conversations/{cid}")).json()
        assert detail["records"] == before["records"] and detail["records"][0]["answer"] == first["answer"]
        assert detail["facts"] == before["facts"]
        assert detail["capabilities"] == before["capabilities"]  # the team's learned counts came back too

        third = await _turn(client, cid, "What is the refund limit for order A17?", critical=True)
        assert third["turn"] == 3 and third["value"] == "120 dollars"
    durable.close()

    store = open_store(url)  # the deleted conversation's content is gone from the file, not only hidden
    run = "serve/bench-support"
    assert store.keys(run, f"journal/{gone}/") == [] and store.get(run, f"meta/{gone}") == {"deleted": True}
    assert store.get(run, f"meta/{cid}")["turns"] == 3  # the third turn was written through as well
    assert store.get(run, "_lease") is None  # a closed server gives its lease back
    store.close()
