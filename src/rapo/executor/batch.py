"""Many conversations of one team at once, in this process or sharded across a Ray cluster: the
library's entry point for batch work (the benchmark has its own jobs in `rapo.bench.runner`).

    results = run_many(team, [["The limit for A17 is 120 dollars.", "What is the limit for A17?"], ...],
                       executor="ray", address="auto")

On Ray every worker builds the team's backends from the team spec (`backend`, `backend_options`), so
the spec is all that travels; learned capability counts meet in a `CountsHub` actor as in the benchmark.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

from rapo.executor.learning import CountsHub, HubLink
from rapo.team import TeamSpec, load_team
from rapo.types import Backend, RapoError


async def _run_conversations(orch: Any, conversations: Sequence[Sequence[str]], ids: Sequence[str],
                             concurrency: int, link: HubLink | None = None) -> list[Any]:
    """Up to `concurrency` conversations in flight on one orchestrator. With a hub link, each
    conversation's end sends what the shard learned since the last send: the deltas telescope, so
    every update is counted once however the conversations overlap."""
    sem = asyncio.Semaphore(concurrency)

    async def one(turns: Sequence[str], cid: str) -> Any:
        async with sem:
            if link is not None:
                link.begin()
            result = await orch.arun(list(turns), orch.new_conversation(cid))
            if link is not None:
                link.done(cid, link.delta())
            return result

    return list(await asyncio.gather(*(one(t, c) for t, c in zip(conversations, ids))))


def _shard(team: TeamSpec, conversations: list[list[str]], ids: list[str], hub: Any, concurrency: int) -> list[Any]:
    """A Ray task: its conversations on its own orchestrator (one client pool per backend)."""
    from rapo.executor.ray_cluster import hub_link
    from rapo.orchestrator import Orchestrator

    async def go() -> list[Any]:
        orch = Orchestrator(team)
        link = hub_link(hub, "team", orch.matrix if orch.team.routing.learn else None)
        try:
            return await _run_conversations(orch, conversations, ids, concurrency, link)
        finally:
            link.flush()
            await orch.aclose()

    return asyncio.run(go())


def run_many(
    team: TeamSpec | str | Path,
    conversations: Sequence[Sequence[str]],
    *,
    ids: Sequence[str] | None = None,
    executor: Literal["local", "ray"] = "local",
    address: str | None = None,
    workers: int = 2,
    concurrency: int = 16,
    backends: Backend | Mapping[str, Backend] | None = None,
) -> list[Any]:
    """Run every conversation (a list of user turns) and return their `RunResult`s, in order.
    A conversation that fails keeps its finished turns and its error, as `Orchestrator.arun` does."""
    from rapo.orchestrator import Orchestrator

    spec = team if isinstance(team, TeamSpec) else load_team(team)
    ids = list(ids) if ids is not None else [f"c{i:05d}" for i in range(len(conversations))]
    if len(ids) != len(conversations) or len(set(ids)) != len(ids):
        raise RapoError(f"ids: give one distinct id per conversation ({len(conversations)}), got {len(ids)}")
    if executor == "local":
        async def go() -> list[Any]:
            orch = Orchestrator(spec, backends)
            try:
                return await _run_conversations(orch, conversations, ids, concurrency)
            finally:
                await orch.aclose()

        return asyncio.run(go())
    if executor != "ray":
        raise RapoError(f"executor {executor!r}: use local or ray")
    if backends is not None:
        raise RapoError("with executor='ray' every worker builds the team's backends from the team spec: "
                        "set `backend` and `backend_options` in the team instead of passing backends")
    from rapo.executor.ray_cluster import RayExecutor, import_ray, shards

    ray = import_ray()
    ex = RayExecutor(address=address, workers=workers)
    try:
        hub = ray.remote(num_cpus=0)(CountsHub).remote()
        task = ray.remote(_shard).options(max_retries=ex.max_retries)
        layout = shards(len(conversations), ex.workers * ex.shards_per_worker)
        refs = [task.remote(spec, [list(conversations[i]) for i in idx], [ids[i] for i in idx], hub, concurrency)
                for idx in layout]
        out: list[Any] = [None] * len(conversations)
        for idx, got in zip(layout, ray.get(refs)):
            for i, result in zip(idx, got):
                out[i] = result
        return out
    finally:
        ex.close()
