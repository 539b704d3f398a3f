"""Bytes a durable `rapo serve --store` writes per turn, against how long the conversation is.

One conversation of N turns (statements and questions alternating, the simulated model) through the
service's own code path (the app, over ASGI, with a SQLite store in a temporary directory). For each
turn: the bytes handed to the store (the JSON of every document of the turn's one transaction), the
bytes a full rewrite of the conversation would have been (what rapo wrote before the journal), and
the time of the turn's request.

    python benchmarks/store_writes.py [--turns 400] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from rapo.checkpoint import conversation_snapshot
from rapo.server import create_app
from rapo.server.durable import DurableConversationStore

TEAM = Path(__file__).resolve().parents[1] / "src" / "rapo" / "data" / "bench-team.yaml"
SHOWN = (1, 2, 10, 50, 100, 200, 300, 400, 800, 1600)


def text(i: int) -> str:
    order = f"A{10 + i % 90}"
    if i % 2 == 0:
        return f"The refund limit for order {order} is {100 + i} dollars."
    return f"What is the refund limit for order A{10 + (i // 2) % 90}?"


async def measure(turns: int) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        durable = DurableConversationStore.open(f"sqlite:///{tmp}/w.db")
        written: list[int] = []
        inner = durable.store.put_many

        def counting(run_id: str, docs: dict[str, dict[str, Any]], delete: Any = ()) -> None:
            written.append(sum(len(k) + len(json.dumps(d, separators=(",", ":"))) for k, d in docs.items()))
            inner(run_id, docs, delete)

        durable.store.put_many = counting  # type: ignore[method-assign]
        app = create_app(TEAM, backend="sim", store=durable)
        rows = []
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench",
                                     timeout=60) as client:
            cid = (await client.post("/conversations")).json()["id"]
            for i in range(turns):
                t0 = time.perf_counter()
                r = await client.post(f"/conversations/{cid}/turns", json={"text": text(i)})
                elapsed = time.perf_counter() - t0
                assert r.status_code == 200, r.text
                full = len(json.dumps(conversation_snapshot(durable.get(cid).state), separators=(",", ":")))
                rows.append({"turn": i + 1, "bytes": written[-1], "full_rewrite_bytes": full,
                             "ms": round(elapsed * 1000, 2)})
        durable.close()
        return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--turns", type=int, default=400)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = asyncio.run(measure(args.turns))
    if args.json:
        json.dump(rows, sys.stdout)
        return
    print(f"{'turn':>6} {'written':>10} {'full rewrite':>13} {'request ms':>11}")
    for row in rows:
        if row["turn"] in SHOWN or row["turn"] == len(rows):
            print(f"{row['turn']:>6} {row['bytes']:>10,} {row['full_rewrite_bytes']:>13,} {row['ms']:>11.1f}")
    print(f"\n{'turns':>11} {'median B/turn':>14} {'mean B/turn':>12} {'full rewrite mean':>18} {'median ms':>10}")
    q = max(1, len(rows) // 4)
    for i in range(0, len(rows), q):
        part = rows[i:i + q]
        print(f"{part[0]['turn']:>5}-{part[-1]['turn']:<5} {statistics.median(r['bytes'] for r in part):>14,.0f} "
              f"{statistics.mean(r['bytes'] for r in part):>12,.0f} "
              f"{statistics.mean(r['full_rewrite_bytes'] for r in part):>18,.0f} "
              f"{statistics.median(r['ms'] for r in part):>10.1f}")
    print("(mean includes the compactions: a full snapshot once the deltas since the last add up to its size)")
    total, old = sum(r["bytes"] for r in rows), sum(r["full_rewrite_bytes"] for r in rows)
    print(f"all {len(rows)} turns: {total / 1e6:.2f} MB written; rewriting the whole conversation each turn: "
          f"{old / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
