"""Conversations per second on the benchmark's conversations, rapo against every installed peer.

Same conversations (rapo.bench.generator, seed 0, 1-50 transitions), same simulated model
(SimBackend on the virtual clock, so no model latency is waited for), wrapped as each framework's
own chat model; each peer's agents get the full message history as the framework gives it. The
conversations run one after another, as the benchmark runner runs them on the virtual clock.

    python benchmarks/throughput.py [--quick] [--conversations N] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import time
from typing import Any

from rapo.bench.peers.common import PEER_NAMES, FakeModel, FakeModelConfig, bench_team, build_system, peer_available


async def run_system(name: str, conversations: list[Any]) -> dict[str, Any]:
    from rapo.backends.sim import SimBackend

    team = bench_team()
    model = FakeModel(FakeModelConfig(mode="sim"), sim=SimBackend(profile="default", seed=0, clock="virtual"))
    system = build_system(name, team, model, keep_records=False)
    transitions = sum(len(c.turns) for c in conversations)
    t0 = time.perf_counter()
    for conv in conversations:
        session = system.session(conv.id)
        for text in conv.user_texts():
            await session.step(text)
    elapsed = time.perf_counter() - t0
    await system.aclose()
    return {"conversations": len(conversations), "transitions": transitions, "elapsed_s": round(elapsed, 3),
            "conversations_per_s": round(len(conversations) / elapsed, 2), "model_calls": model.calls}


def run(n: int) -> dict[str, Any]:
    from rapo.bench.generator import generate

    conversations = generate(n, seed=0, transitions=(1, 50))
    rows: dict[str, Any] = {}
    skipped = {}
    for name in ["rapo", *PEER_NAMES]:
        if name != "rapo" and (why := peer_available(name)):
            skipped[name] = why
            continue
        gc.collect()
        rows[name] = asyncio.run(run_system(name, conversations))
    per = {p: rows[p]["conversations_per_s"] for p in PEER_NAMES if p in rows}
    best = max(per, key=per.get) if per else None
    rapo = rows["rapo"]["conversations_per_s"]
    return {
        "rapo_conversations_per_s": rapo,
        "langgraph_conversations_per_s": per.get("langgraph"),
        "autogen_conversations_per_s": per.get("autogen"),
        "openai_agents_conversations_per_s": per.get("openai-agents"),
        "best_peer": best,
        "ratio": round(rapo / per[best], 2) if best else None,
        "rows": rows,
        "skipped": skipped,
    }


def show(res: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="benchmark conversations per second (simulated model, virtual clock)")
    for col in ("system", "conversations", "transitions", "model calls", "seconds", "conversations / s"):
        table.add_column(col, justify="left" if col == "system" else "right")
    for name, r in res["rows"].items():
        table.add_row(name, str(r["conversations"]), str(r["transitions"]), str(r["model_calls"]),
                      f"{r['elapsed_s']:.2f}", f"{r['conversations_per_s']:.1f}")
    console = Console()
    console.print(table)
    console.print(f"best peer: {res['best_peer']}, ratio (rapo / best peer): {res['ratio']}")
    for why in res["skipped"].values():
        console.print(f"[yellow]skipped {why}[/]")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="60 conversations instead of 1,000")
    ap.add_argument("--conversations", type=int, default=None, help="how many (default 1000, --quick 60)")
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    args = ap.parse_args(argv)
    res = run(args.conversations or (60 if args.quick else 1000))
    if args.json:
        print(json.dumps(res))
    else:
        show(res)


if __name__ == "__main__":
    sys.exit(main())
