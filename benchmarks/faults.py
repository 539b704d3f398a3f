"""Fault tolerance at benchmark scale: rapo with 0%, 10%, 20% and 30% of its model calls failing.

The benchmark's conversations (seed 0, 1-50 transitions) and simulated model on the virtual clock,
run through `rapo.bench.runner` with `faults=RATE`: every call may time out, be rate limited (429
with Retry-After), get a 5xx, lose its connection or get a malformed reply (rapo.backends.faulty),
and is retried with backoff (rapo.bench.faults); a call that runs out of attempts fails over to the
next-best agent. The backoff is added to the calls' latency on the virtual clock, not slept.

    python benchmarks/faults.py [--quick] [--conversations N] [--systems rapo,handoff] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from typing import Any

from rapo.backends.faulty import KINDS
from rapo.backends.retry import BackendUnavailable

RATES = (0.0, 0.1, 0.2, 0.3)


def run_rate(rate: float, n: int, systems: list[str], seed: int) -> dict[str, Any]:
    from rapo.bench.runner import BenchConfig, run_benchmark

    cfg = BenchConfig(conversations=n, systems=systems, sensitivity=[], workers=1, n_boot=200, faults=rate,
                      fault_seed=seed)
    t0 = time.perf_counter()
    try:
        res = run_benchmark(cfg, progress=False)
    except BackendUnavailable as err:  # a baseline stops when a call runs out of attempts
        return {"rate": rate, "stopped": str(err), "wall_s": round(time.perf_counter() - t0, 2)}
    wall = time.perf_counter() - t0
    fields = res["records"]["fields"]
    i_sys, i_conv, i_T, i_calls = (fields.index(k) for k in ("system", "conv", "T", "calls"))
    out: dict[str, Any] = {"rate": rate, "wall_s": round(wall, 2), "systems": {}}
    for name in systems:
        rows = [r for r in res["records"]["rows"] if r[i_sys] == name]
        turns = Counter(r[i_conv] for r in rows)
        completed = len({r[i_conv] for r in rows if turns[r[i_conv]] == r[i_T]})
        calls = sum(r[i_calls] for r in rows)
        f = (res.get("faults") or {}).get("systems", {}).get(name)
        s = res["systems"][name]
        out["systems"][name] = {
            "conversations_completed": completed,
            "success_rate": s["success_rate"],
            "latency_mean_s": round(s["latency_mean_s"], 3),
            "calls": calls,
            "attempts": f["attempts"] if f else calls,
            "retries": f["retries"] if f else 0,
            "failovers": f["gave_up"] if f else 0,  # calls given up after every attempt
            "injected": f["injected"] if f else {k: 0 for k in KINDS},
        }
    return out


def run(n: int, systems: list[str], seed: int = 0) -> dict[str, Any]:
    rows = [run_rate(rate, n, systems, seed) for rate in RATES]
    clean = rows[0]["systems"]["rapo"]["success_rate"] if "rapo" in systems and "systems" in rows[0] else None
    worst = max((abs(r["systems"]["rapo"]["success_rate"] - clean) for r in rows if "systems" in r),
                default=None) if clean is not None else None
    return {"conversations": n, "fault_seed": seed, "rows": rows,
            "rapo_max_success_change": round(worst, 6) if worst is not None else None}


def show(res: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"fault injection, {res['conversations']} conversations (simulated model, virtual clock)")
    for col in ("system", "faults", "done", "success", "lat s", "calls", "attempts", "retries", "failover",
                "wall s"):
        table.add_column(col, justify="left" if col == "system" else "right")
    kinds = Table(title="faults injected, by kind")
    for col in ("system", "faults", *(k.split(" ")[0] for k in KINDS)):
        kinds.add_column(col, justify="left" if col == "system" else "right")
    for r in res["rows"]:
        if "stopped" in r:
            table.add_row("-", f"{r['rate']:.0%}", "stopped", "", "", "", "", "", "", f"{r['wall_s']:.1f}")
            console.print(f"[yellow]{r['rate']:.0%}: stopped: {r['stopped']}[/]")
            continue
        for name, s in r["systems"].items():
            table.add_row(name, f"{r['rate']:.0%}", f"{s['conversations_completed']:,}", f"{s['success_rate']:.1%}",
                          f"{s['latency_mean_s']:.2f}", f"{s['calls']:,}", f"{s['attempts']:,}", f"{s['retries']:,}",
                          f"{s['failovers']:,}", f"{r['wall_s']:.1f}")
            kinds.add_row(name, f"{r['rate']:.0%}", *(f"{s['injected'][k]:,}" for k in KINDS))
    console.print(table)
    console.print(kinds)
    console.print("done: conversations completed; lat: mean latency per conversation, backoff included;\n"
                  "failover: calls given up after every retry; kinds: " + ", ".join(KINDS))
    if res["rapo_max_success_change"] is not None:
        console.print(f"rapo success rate, largest change from the fault-free run: "
                      f"{res['rapo_max_success_change'] * 100:.2f} points")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="50 conversations instead of 1,000")
    ap.add_argument("--conversations", type=int, default=None, help="how many (default 1000, --quick 50)")
    ap.add_argument("--systems", default="rapo", help="comma-separated benchmark systems (default: rapo)")
    ap.add_argument("--fault-seed", type=int, default=0, help="which calls fail, and how")
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    args = ap.parse_args(argv)
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    res = run(args.conversations or (50 if args.quick else 1000), systems, args.fault_seed)
    if args.json:
        print(json.dumps(res))
    else:
        show(res)


if __name__ == "__main__":
    sys.exit(main())
