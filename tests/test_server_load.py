"""Load: 200 concurrent turns over 40 conversations on a live server (loopback, simulated model).
Every turn is answered, and no conversation sees another's facts."""

from __future__ import annotations

import asyncio
import random
import re
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from rapo.server import create_app, serve_in_thread  # noqa: E402
from rapo.team import load_team  # noqa: E402

TEAM = Path(__file__).resolve().parents[1] / "src" / "rapo" / "data" / "bench-team.yaml"
N_CONV, PER_CONV = 40, 5


def limit(i: int) -> str:
    return f"{1000 + 7 * i} dollars"


@pytest.fixture(scope="module")
def base_url():
    # The simulated model on the real clock (latency slept, scaled down): turns of different
    # conversations really interleave in the event loop while they wait on "the model".
    team = load_team(TEAM).with_backend("sim", clock="real", time_scale=0.01)
    with serve_in_thread(create_app(team)) as url:
        yield url


async def test_200_concurrent_turns_are_all_answered_without_mixing_state(base_url):
    limits = httpx.Limits(max_connections=250, max_keepalive_connections=250)
    async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as client:
        ids = [(await client.post("/conversations")).json()["id"] for _ in range(N_CONV)]
        seeded = await asyncio.gather(*(
            client.post(f"/conversations/{cid}/turns",
                        json={"text": f"The refund limit for order A{500 + i} is {limit(i)}."})
            for i, cid in enumerate(ids)))
        assert all(r.status_code == 200 for r in seeded)

        jobs = []  # (conversation index, kind, text)
        for i in range(N_CONV):
            for j in range(PER_CONV):
                if j % 2 == 0:
                    jobs.append((i, "ask", f"What is the refund limit for order A{500 + i}?"))
                else:
                    jobs.append((i, "tell", f"The shipping fee for order K{i:02d}{j} is {j + 3} dollars."))
        random.Random(3).shuffle(jobs)
        assert len(jobs) == 200

        t0 = time.perf_counter()
        replies = await asyncio.gather(*(
            client.post(f"/conversations/{ids[i]}/turns", json={"text": text, "critical": kind == "ask"})
            for i, kind, text in jobs))
        wall = time.perf_counter() - t0
        assert [r.status_code for r in replies] == [200] * 200, {r.status_code for r in replies}

        others = {limit(i) for i in range(N_CONV)}
        correct = 0
        for (i, kind, _), r in zip(jobs, replies):
            body = r.json()
            assert body["conversation"] == ids[i]
            if kind == "ask":
                assert body["value"] not in others - {limit(i)}, (i, body["value"])  # never another's fact
                correct += body["value"] == limit(i)
                named = {x for item in body["record"]["context"] for x in re.findall(r"\b[AK]\d+", item["text"])}
                assert f"A{500 + i}" in named  # the prompt held this conversation's fact ...
                assert all(x == f"A{500 + i}" or x.startswith(f"K{i:02d}") for x in named), named  # ... and no other's
        assert correct >= 0.9 * N_CONV * 3, correct

        details = await asyncio.gather(*(client.get(f"/conversations/{cid}") for cid in ids))
        for i, d in enumerate(details):
            d = d.json()
            assert d["turns"] == 1 + PER_CONV and [r["turn"] for r in d["records"]] == list(range(1, 2 + PER_CONV))
            user = {f["key"]: f["value"] for f in d["facts"] if f["origin"] == "user"}
            assert user == {f"refund limit|a{500 + i}": limit(i),
                            **{f"shipping fee|k{i:02d}{j}": f"{j + 3} dollars" for j in (1, 3)}}, user
        assert wall < 45, f"200 turns took {wall:.1f} s"
