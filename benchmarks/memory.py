"""Resident memory per in-flight conversation, rapo against every installed peer, in one run.

Each measurement runs in a fresh subprocess: import, build the system, collect garbage, read the
RSS (the baseline), then run M conversations at once, each turn's model call awaiting a set delay
so all M are in flight together; the peak RSS (ru_maxrss) over the baseline, divided by M, is the
cost of one conversation. rapo holds a team of N = 1,000 agents; each peer its 4-agent team with
its persistence on (LangGraph `InMemorySaver`, OpenAI Agents `SQLiteSession` in a temp file;
AutoGen's teams keep their state in memory). rapo likewise checkpoints every conversation after
every transition to its durable store (SQLite in a temp file; `--no-checkpoint` turns that off),
and one more rapo row without checkpoints shows what they cost.

    python benchmarks/memory.py [--quick] [--json] [--no-checkpoint]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from rapo.bench.peers.common import PEER_NAMES, peer_available  # noqa: E402


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def available_bytes() -> int:
    with open("/proc/meminfo") as f:
        info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f}
    return info.get("MemAvailable", info.get("MemFree", 0))


def big_team(n_agents: int) -> Any:
    """rapo's benchmark team widened to n agents (the four roles repeated, each with its own name)."""
    from rapo.bench.peers.common import bench_team
    from rapo.team import team_from_dict

    base = bench_team().model_dump(mode="json", exclude_none=True)
    roles = base["agents"]
    base["agents"] = [dict(roles[i % len(roles)], name=f"{roles[i % len(roles)]['name']}-{i}") for i in range(n_agents)]
    return team_from_dict(base, f"bench team x{n_agents}")


async def _child(system_name: str, agents: int, conversations: int, transitions: int, delay: float,
                 checkpoint: bool = False) -> dict[str, Any]:
    from overhead import turns

    from rapo.bench.peers.common import FakeModel, FakeModelConfig, bench_team, build_system

    team = big_team(agents) if system_name == "rapo" else bench_team()
    model = FakeModel(FakeModelConfig(mode="delay", delay_s=delay), agent_names=[a.name for a in team.agents])
    system = build_system(system_name, team, model, persist=True)
    store = None
    checkpoint = checkpoint and system_name == "rapo"
    if checkpoint:  # rapo's persistence: every conversation saved after every transition
        from rapo.store import open_store

        tmp = tempfile.TemporaryDirectory(prefix="rapo-memory-")
        store = open_store(f"sqlite:///{tmp.name}/checkpoints.db")

    async def step(session: Any, text: str) -> None:
        await session.step(text)
        if store is not None:
            system.orchestrator.checkpoint(session.conv, store, "memory")

    # warm one conversation so lazy imports and caches are in the baseline, not in the per-conversation cost
    warm = system.session("warm")
    for text in turns(2, False):
        await step(warm, text)
    del warm
    gc.collect()
    base = rss_bytes()
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    async def one(i: int) -> None:
        session = system.session(f"c{i}")
        for text in turns(transitions, False, offset=i):
            await step(session, text)

    await asyncio.gather(*(one(i) for i in range(conversations)))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    end = rss_bytes()
    await system.aclose()
    if store is not None:
        store.close()
        tmp.cleanup()
    # the peak counts only if it was reached during the run; otherwise the RSS held at the end
    over = max(0, peak - base if peak > peak_before else 0, end - base)
    return {"system": system_name, "agents": len(team.agents), "conversations": conversations,
            "transitions": transitions, "checkpoint": checkpoint, "baseline_mb": round(base / 2**20, 1), "peak_over_baseline_mb":
            round(over / 2**20, 2), "bytes_per_conversation": int(over / conversations),
            "model_calls": model.calls}


def measure(system: str, agents: int, conversations: int, transitions: int, delay: float,
            checkpoint: bool = False) -> dict[str, Any]:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", system, "--agents", str(agents),
           "--conversations", str(conversations), "--transitions", str(transitions), "--delay", str(delay)]
    if checkpoint:
        cmd.append("--child-checkpoint")
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{system} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(quick: bool, m: int | None = None, big: int | None = None, checkpoint: bool = True) -> dict[str, Any]:
    m0, transitions, delay = (200, 4, 0.005) if quick else (1000, 10, 0.02)
    m = m or m0
    big = big or (1000 if quick else 10_000)
    rows = {"rapo": measure("rapo", 1000, m, transitions, delay, checkpoint)}
    if checkpoint:  # the same run without checkpoints, so the table shows what they cost
        rows["rapo-no-checkpoint"] = measure("rapo", 1000, m, transitions, delay)
    projected = rows["rapo"]["bytes_per_conversation"] * big
    if projected > available_bytes() // 2:  # would push the machine into swap or the OOM killer
        rows["rapo-10000"] = dict(rows["rapo"], conversations=big, peak_over_baseline_mb=None,
                                  projected_mb=round(projected / 2**20, 1),
                                  note="not run: projected from the smaller run exceeds half the free memory")
    else:
        rows["rapo-10000"] = measure("rapo", 1000, big, transitions, delay, checkpoint)
    rows["rapo-4-agents"] = measure("rapo", 4, m, transitions, delay, checkpoint)
    skipped = {}
    for peer in PEER_NAMES:
        why = peer_available(peer)
        if why:
            skipped[peer] = why
            continue
        rows[peer] = measure(peer, 4, m, transitions, delay)
    per = {p: rows[p]["bytes_per_conversation"] for p in PEER_NAMES if p in rows}
    best = min(per, key=per.get) if per else None
    rapo = max(1, rows["rapo"]["bytes_per_conversation"])
    return {
        "rapo_bytes_per_conversation": rows["rapo"]["bytes_per_conversation"],
        "langgraph_bytes_per_conversation": per.get("langgraph"),
        "autogen_bytes_per_conversation": per.get("autogen"),
        "openai_agents_bytes_per_conversation": per.get("openai-agents"),
        "best_peer": best,
        "ratio": round(per[best] / rapo, 2) if best else None,
        "rapo_mb_1000_agents_1000_conversations": rows["rapo"]["peak_over_baseline_mb"],
        "rapo_mb_10000_conversations": rows["rapo-10000"]["peak_over_baseline_mb"],
        "rapo_mb_10000_conversations_projected": rows["rapo-10000"].get("projected_mb"),
        "rapo_4_agents_bytes_per_conversation": rows["rapo-4-agents"]["bytes_per_conversation"],
        "rapo_checkpoint": checkpoint,
        "rapo_bytes_per_conversation_no_checkpoint": rows.get("rapo-no-checkpoint", rows["rapo"])["bytes_per_conversation"],
        "rows": rows,
        "skipped": skipped,
        "quick": quick,
    }


def show(res: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="peak RSS over baseline, conversations in flight at once")
    for col in ("system", "agents", "conversations", "transitions", "rapo checkpoints", "baseline MB",
                "over baseline MB", "KiB / conv"):
        table.add_column(col, justify="left" if col == "system" else "right")
    for name, r in res["rows"].items():
        saved = ("yes" if r.get("checkpoint") else "no") if name.startswith("rapo") else "-"
        table.add_row(name, str(r["agents"]), str(r["conversations"]), str(r["transitions"]), saved, str(r["baseline_mb"]),
                      str(r["peak_over_baseline_mb"] if r["peak_over_baseline_mb"] is not None
                          else f"{r['projected_mb']} (projected, not run)"),
                      f"{r['bytes_per_conversation'] / 1024:.1f}")
    console = Console()
    console.print(table)
    console.print(f"best peer: {res['best_peer']}, ratio (best peer / rapo): {res['ratio']}")
    for why in res["skipped"].values():
        console.print(f"[yellow]skipped {why}[/]")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="200 conversations of 4 transitions")
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--agents", type=int, default=1000, help=argparse.SUPPRESS)
    ap.add_argument("--conversations", type=int, default=1000, help=argparse.SUPPRESS)
    ap.add_argument("--transitions", type=int, default=10, help=argparse.SUPPRESS)
    ap.add_argument("--delay", type=float, default=0.02, help=argparse.SUPPRESS)
    ap.add_argument("--in-flight", type=int, help="conversations in flight per system (default 1000, --quick 200)")
    ap.add_argument("--big", type=int, help="rapo's large run (default 10000, --quick 1000)")
    ap.add_argument("--no-checkpoint", action="store_true",
                    help="rapo without its per-transition checkpoints to a SQLite store (on by default)")
    ap.add_argument("--child-checkpoint", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(asyncio.run(_child(args.child, args.agents, args.conversations, args.transitions,
                                            args.delay, args.child_checkpoint))))
        return
    res = run(args.quick, args.in_flight, args.big, checkpoint=not args.no_checkpoint)
    if args.json:
        print(json.dumps(res))
    else:
        show(res)


if __name__ == "__main__":
    main()
