"""Orchestration time per agent transition, rapo against every installed peer, in one run.

Every system is driven by the same instant fake model (rapo.bench.peers.FakeModel), so what is timed
is the system's own work per user turn: for rapo routing, prompt building, context selection, ledger
updates and the trace record; for a peer its graph/team/runner machinery and its model adapter.

    python benchmarks/overhead.py [--quick] [--json]

rapo answers statement-only turns from its ledger without a model call; "rapo" runs the same mixed
turns as the peers (statements and questions alternating), "rapo-all-questions" turns where every
turn states a fact and asks a question, so every rapo turn routes, builds a prompt and calls.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import sys
import time
from typing import Any

from rapo.bench.peers.common import PEER_NAMES, FakeModel, bench_team, build_system, peer_available

LENGTHS = (5, 10, 20, 50, 200)
LEDGER_SIZES = (0, 1000, 10_000)


def turns(n: int, all_questions: bool, offset: int = 0) -> list[str]:
    """Plain turns in the conversation language: a statement, then a question about an earlier order."""
    out = []
    for i in range(n):
        order = f"A{10 + (i + offset) % 90}"
        stated = f"The refund limit for order {order} is {100 + i} dollars."
        asked = f"What is the refund limit for order A{10 + (i // 2 + offset) % 90}?"
        out.append(f"{stated} {asked}" if all_questions else (stated if i % 2 == 0 else asked))
    return out


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def time_system(name: str, length: int, conversations: int, *, all_questions: bool = False,
                      preload: int = 0) -> dict[str, float]:
    team = bench_team()
    model = FakeModel(agent_names=[a.name for a in team.agents])
    system = build_system(name.replace("-all-questions", ""), team, model)
    times: list[float] = []
    for c in range(conversations + 1):  # the first conversation warms caches and is not counted
        session = system.session(f"c{c}")
        if preload:
            ledger = session.conv.ledger
            for k in range(preload):
                ledger.add(f"the credit limit for account K{k}", f"{k} dollars", turn=0, source="crm")
        for text in turns(length, all_questions, offset=c):
            t0 = time.perf_counter()
            await session.step(text)
            if c:
                times.append(time.perf_counter() - t0)
    await system.aclose()
    return {"median_us": round(statistics.median(times) * 1e6, 1), "p95_us": round(pct(times, 0.95) * 1e6, 1),
            "transitions_timed": len(times)}


def run(quick: bool, lengths: tuple[int, ...] | None = None, budget: int | None = None,
        ledger_sizes: tuple[int, ...] | None = None) -> dict[str, Any]:
    lengths = lengths or ((5, 10, 20, 50) if quick else LENGTHS)
    if 10 not in lengths:
        raise SystemExit("--lengths must include 10 (the JSON's headline figures are at 10 transitions)")
    budget = budget or (60 if quick else 600)  # transitions timed per system and length (>= 1 conversation)
    systems = ["rapo", "rapo-all-questions"]
    skipped = {}
    for peer in PEER_NAMES:
        why = peer_available(peer)
        if why:
            skipped[peer] = why
        else:
            systems.append(peer)
    by: dict[str, dict[str, Any]] = {s: {} for s in systems}
    for s in systems:
        for n in lengths:
            gc.collect()
            by[s][str(n)] = asyncio.run(time_system(s, n, max(1, budget // n), all_questions=s.endswith("questions")))
    ledger = {}
    for size in ledger_sizes if ledger_sizes is not None else ((0, 1000) if quick else LEDGER_SIZES):
        gc.collect()
        ledger[str(size)] = asyncio.run(time_system("rapo-all-questions", 10, 2 if quick else 10,
                                                    all_questions=True, preload=size))
    at10 = {s: by[s]["10"]["median_us"] for s in systems}
    peers = {p: at10[p] for p in PEER_NAMES if p in at10}
    best = min(peers, key=peers.get) if peers else None
    rapo = at10["rapo"]
    first, last = str(lengths[0]), str(lengths[-1])
    return {
        "rapo_us_per_transition": rapo,
        "rapo_all_questions_us_per_transition": at10["rapo-all-questions"],
        "langgraph_us_per_transition": at10.get("langgraph"),
        "autogen_us_per_transition": at10.get("autogen"),
        "openai_agents_us_per_transition": at10.get("openai-agents"),
        "best_peer": best,
        "ratio": round(peers[best] / rapo, 2) if best else None,
        "ratio_all_questions": round(peers[best] / at10["rapo-all-questions"], 2) if best else None,
        "rapo_flatness": round(by["rapo-all-questions"][last]["median_us"] / by["rapo-all-questions"][first]["median_us"], 2),
        "by_transitions": by,
        "rapo_by_ledger_facts": ledger,
        "skipped": skipped,
        "quick": quick,
    }


def show(res: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    by = res["by_transitions"]
    lengths = list(next(iter(by.values())))
    table = Table(title="orchestration time per agent transition (instant model), median / p95 in us")
    table.add_column("system")
    for n in lengths:
        table.add_column(f"{n} transitions", justify="right")
    for s, row in by.items():
        table.add_row(s, *(f"{row[n]['median_us']:.0f} / {row[n]['p95_us']:.0f}" for n in lengths))
    console = Console()
    console.print(table)
    ledger = Table(title="rapo (every turn a question) at 10 transitions, by ledger size")
    ledger.add_column("facts in ledger", justify="right")
    ledger.add_column("median us", justify="right")
    ledger.add_column("p95 us", justify="right")
    for k, v in res["rapo_by_ledger_facts"].items():
        ledger.add_row(k, f"{v['median_us']:.0f}", f"{v['p95_us']:.0f}")
    console.print(ledger)
    console.print(f"best peer: {res['best_peer']}, ratio (best peer / rapo): {res['ratio']} "
                  f"(every rapo turn a question: {res['ratio_all_questions']})")
    for peer, why in res["skipped"].items():
        console.print(f"[yellow]skipped {why}[/]")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer lengths and repetitions (< 30 s)")
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    ap.add_argument("--lengths", help="comma-separated conversation lengths (must include 10)")
    ap.add_argument("--budget", type=int, help="transitions timed per system and length")
    ap.add_argument("--ledger-sizes", help="comma-separated ledger sizes for rapo (e.g. 0,1000,10000)")
    args = ap.parse_args(argv)

    def ints(text: str | None) -> tuple[int, ...] | None:
        return tuple(int(x) for x in text.split(",") if x.strip()) if text is not None else None

    res = run(args.quick, ints(args.lengths), args.budget, ints(args.ledger_sizes))
    if args.json:
        print(json.dumps(res))
    else:
        show(res)


if __name__ == "__main__":
    sys.exit(main())
