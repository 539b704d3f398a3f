"""Throughput of the benchmark on each executor: the local one and Ray with 1 and 2 workers.

rapo alone (learning on) on the benchmark's conversations (seed 0, 1-50 transitions) and the simulated
model on the virtual clock, so the figures are rapo's own work plus what the executor adds. Ray is
started here on 127.0.0.1 for each worker count (its start-up is reported apart, not in the rate).
The overhead Ray adds per transition is (Ray-1 wall time - local wall time) / transitions: one worker
does the same work as the local executor, plus shipping shards, results and learned counts.

    python benchmarks/scaling.py [--quick] [--conversations N] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from typing import Any

from rapo.bench.runner import BenchConfig, conversations, run_benchmark


def _timed(cfg: BenchConfig, executor: Any = None) -> tuple[float, dict[str, Any]]:
    t0 = time.perf_counter()
    results = run_benchmark(cfg, progress=False, executor=executor)
    return time.perf_counter() - t0, results


def run(n: int, ray_workers: list[int]) -> dict[str, Any]:
    cfg = BenchConfig(conversations=n, systems=["rapo"], sensitivity=[], n_boot=10, workers=1)
    transitions = sum(len(c.turns) for c in conversations(cfg))
    wall, res = _timed(cfg)
    rows: dict[str, Any] = {"local": {"workers": 1, "startup_s": 0.0, "elapsed_s": round(wall, 3),
                                      "success_rate": res["systems"]["rapo"]["success_rate"]}}
    skipped = None
    try:
        from rapo.executor.ray_cluster import RayExecutor
    except ImportError:  # pragma: no cover - rapo itself always has the module
        RayExecutor = None  # type: ignore[assignment,misc]
    try:
        import ray  # noqa: F401
    except ImportError:
        skipped = "ray is not installed: pip install 'rapo[ray]'"
    if skipped is None and RayExecutor is not None:
        for w in ray_workers:
            # a short name: Ray's socket paths under it must fit in 107 bytes
            with tempfile.TemporaryDirectory(prefix="r") as tmp:
                t0 = time.perf_counter()
                ex = RayExecutor(workers=w, temp_dir=tmp)
                startup = time.perf_counter() - t0
                try:
                    wall, res = _timed(cfg.model_copy(update={"executor": "ray", "workers": w}), ex)
                finally:
                    ex.close()
            rows[f"ray-{w}"] = {"workers": w, "startup_s": round(startup, 2), "elapsed_s": round(wall, 3),
                                "success_rate": res["systems"]["rapo"]["success_rate"]}
    for r in rows.values():
        r["conversations_per_s"] = round(n / r["elapsed_s"], 2)
    local = rows["local"]["elapsed_s"]
    out: dict[str, Any] = {
        "conversations": n,
        "transitions": transitions,
        "local_conversations_per_s": rows["local"]["conversations_per_s"],
        "rows": rows,
        "skipped": skipped,
    }
    for w in ray_workers:
        if f"ray-{w}" in rows:
            out[f"ray_{w}_conversations_per_s"] = rows[f"ray-{w}"]["conversations_per_s"]
    if "ray-1" in rows:
        out["ray_overhead_us_per_transition"] = round((rows["ray-1"]["elapsed_s"] - local) / transitions * 1e6, 1)
    if "ray-1" in rows and "ray-2" in rows:
        out["ray_2_vs_1_speedup"] = round(rows["ray-1"]["elapsed_s"] / rows["ray-2"]["elapsed_s"], 2)
    return out


def show(res: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"rapo on {res['conversations']} benchmark conversations ({res['transitions']} transitions), "
                        "simulated model, virtual clock")
    for col in ("executor", "workers", "start-up s", "run s", "conversations / s", "success"):
        table.add_column(col, justify="left" if col == "executor" else "right")
    for name, r in res["rows"].items():
        table.add_row(name, str(r["workers"]), f"{r['startup_s']:.1f}", f"{r['elapsed_s']:.2f}",
                      f"{r['conversations_per_s']:.1f}", f"{r['success_rate']:.1%}")
    console = Console()
    console.print(table)
    if "ray_overhead_us_per_transition" in res:
        console.print(f"Ray's overhead per transition (1 worker vs local): {res['ray_overhead_us_per_transition']} us")
    if "ray_2_vs_1_speedup" in res:
        console.print(f"2 Ray workers vs 1: {res['ray_2_vs_1_speedup']}x")
    if res["skipped"]:
        console.print(f"[yellow]skipped Ray: {res['skipped']}[/]")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="40 conversations instead of 1,000")
    ap.add_argument("--conversations", type=int, default=None, help="how many (default 1000, --quick 40)")
    ap.add_argument("--workers", default="1,2", help="Ray worker counts to measure (default 1,2)")
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    args = ap.parse_args(argv)
    res = run(args.conversations or (40 if args.quick else 1000), [int(w) for w in args.workers.split(",")])
    if args.json:
        print(json.dumps(res))
    else:
        show(res)


if __name__ == "__main__":
    sys.exit(main())
