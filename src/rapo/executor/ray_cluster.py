"""Conversations sharded across a Ray cluster.

Each job's conversations are dealt round-robin into shards (a few per worker, so a slow shard or a
retried one costs little), each shard a Ray task that runs its conversations in order with its own
client pool. Learned capability counts meet in one `CountsHub` actor (counts add: the merge is exact
and order-free). Checkpoints go to the shared store, so a task Ray retries after its worker died
skips what was finished and resumes what was running; the hub counts each conversation once.

Started here (no address), Ray binds every port to 127.0.0.1, keeps its files under `temp_dir`, and
reports no usage statistics.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

from rapo.executor.base import Job, Progress, Results, Work
from rapo.executor.learning import CountsHub, HubLink, learner
from rapo.types import RapoError

LOOPBACK = "127.0.0.1"


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise RapoError("--executor ray needs Ray: pip install 'rapo[ray]'") from None
    return ray


def start_local(workers: int, temp_dir: str | None = None) -> None:
    """A Ray of `workers` CPUs on this machine, on loopback only."""
    ray = import_ray()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no reports to the outside world
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")  # no GPUs asked for: leave their env alone
    try:
        ray.init(num_cpus=workers, include_dashboard=False, _node_ip_address=LOOPBACK, _temp_dir=temp_dir,
                 log_to_driver=False, configure_logging=False, namespace="rapo",
                 _system_config={"enable_metrics_collection": False})  # no dashboard agent to export to
    except OSError as err:
        if "path length" in str(err):
            raise RapoError(f"Ray's temporary folder {temp_dir or '(default)'} is too deep for its socket "
                            "paths (107 bytes at most): use a shorter one, e.g. under /tmp") from None
        raise


def connect(address: str) -> None:
    """An existing cluster: "auto" (this node's), "ray://head:10001" (Ray Client) or "head:6379"."""
    ray = import_ray()
    try:
        ray.init(address=address, log_to_driver=False, configure_logging=False, namespace="rapo")
    except ConnectionError as err:
        raise RapoError(f"cannot reach the Ray cluster at {address!r} ({err}); start one with `ray start "
                        "--head`, or drop --address to start a local Ray with --workers N") from None


def shards(n: int, count: int) -> list[list[int]]:
    """Conversation indices 0..n-1 dealt round-robin into `count` shards (similar mixes of lengths)."""
    count = max(1, min(n, count))
    return [list(range(i, n, count)) for i in range(count)]


def hub_link(hub: Any, key: str, matrix: Any) -> HubLink:
    """A shard's link to the `CountsHub` actor: answers awaited with `ray.get`, progress sent and forgotten."""
    ray = import_ray()
    return HubLink(lambda m, *a: ray.get(getattr(hub, m).remote(*a)), lambda m, *a: getattr(hub, m).remote(*a),
                   key, matrix)


def _run_shard(work: Work, job: Job, indices: list[int], hub: Any) -> list[Any]:
    """A Ray task: one shard of a job, in order, linked to the job's merged learned counts."""
    from rapo.executor.local import quiet_gc

    quiet_gc()
    key = f"{job.system}/{job.profile}"
    links: list[HubLink] = []

    def link(system: Any) -> HubLink:
        links.append(hub_link(hub, key, learner(system)))
        return links[0]

    records = work.run_shard(job, indices, link)
    for lk in links:
        lk.flush()
    return records


class RayExecutor:
    name = "ray"

    def __init__(self, address: str | None = None, workers: int = 2, *, temp_dir: str | None = None,
                 shards_per_worker: int = 4, max_retries: int = 3) -> None:
        ray = import_ray()
        self.started = False
        if not ray.is_initialized():
            if address:
                connect(address)
            else:
                start_local(workers, temp_dir)
                self.started = True
        self.workers = max(1, int(ray.cluster_resources().get("CPU", workers)))
        self.shards_per_worker, self.max_retries = shards_per_worker, max_retries
        self.hub: Any = None

    def run(self, work: Work, jobs: Sequence[Job], progress: Progress) -> Results:
        ray = import_ray()
        hub = self.hub = ray.remote(num_cpus=0)(CountsHub).remote()
        for job in jobs:  # a resumed run: the hub starts from what the finished items learned
            saved = work.learned(job)
            if saved:
                ray.get(hub.seed.remote(f"{job.system}/{job.profile}", *saved))
        task = ray.remote(_run_shard).options(max_retries=self.max_retries)
        work_ref = ray.put(work)
        layout = {(j.system, j.profile): shards(j.conversations, self.workers * self.shards_per_worker)
                  for j in jobs}
        pending: dict[Any, tuple[Job, int]] = {}
        for job in jobs:
            for k, idx in enumerate(layout[(job.system, job.profile)]):
                pending[task.remote(work_ref, job, idx, hub)] = (job, k)
        parts: dict[tuple[str, str], dict[int, list[Any]]] = {}
        shown = 0
        try:
            with progress() as advance:
                while pending:
                    ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0.25)
                    for ref in ready:
                        job, k = pending.pop(ref)
                        parts.setdefault((job.system, job.profile), {})[k] = ray.get(ref)
                    now = ray.get(hub.progress.remote())
                    advance(now - shown)
                    shown = now
        except BaseException as err:
            for ref in pending:  # one shard failed for good: stop the others (their checkpoints stay)
                ray.cancel(ref, force=True)
            cause = getattr(err, "cause", None)  # a task's own error, without Ray's traceback text
            if isinstance(err, ray.exceptions.RayTaskError) and isinstance(cause, RapoError):
                raise cause from None
            raise
        return {key: work.combine(layout[key], got) for key, got in parts.items()}

    def close(self) -> None:
        if self.started:
            import_ray().shutdown()
            self.started = False
