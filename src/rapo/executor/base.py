"""The executor protocol: run jobs of any kind (`Work` says how) and hand back each job's results.

The executor knows where work runs (forked processes here, shards on a Ray cluster) and nothing of
what it is; the benchmark (`rapo.bench.runner.BenchWork`) is one kind of work."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Protocol, Sequence


@dataclass(frozen=True)
class Job:
    """One job: what runs (`system`) under which setting (`profile`), over its first `conversations`
    items (a benchmark's: one system under one simulated-model profile)."""

    system: str
    profile: str
    conversations: int


Results = dict[tuple[str, str], list[Any]]  # (system, profile) -> the job's results, in item order
Advance = Callable[[int], None]
# Opens the progress display and yields `advance(n)`, called as n more conversations finish. An
# executor opens it once its workers exist: a display thread running while processes fork can
# deadlock them.
Progress = Callable[[], ContextManager[Advance]]


class Work(Protocol):
    """A kind of job an executor can run; picklable, since it travels to worker processes."""

    def prepare(self) -> None:
        """Once, before any worker starts (forked workers inherit what it built)."""

    def run(self, job: Job, tick: Callable[[], None]) -> list[Any]:
        """The whole job, here; `tick()` after each finished item."""

    def run_shard(self, job: Job, indices: list[int], link: Callable[[Any], Any]) -> list[Any]:
        """Some of the job's items (a Ray shard), in order; `link(system)` connects what the job
        learns to the merged counts of every shard (`rapo.executor.learning.HubLink`)."""

    def learned(self, job: Job) -> tuple[list[str], list[Any]] | None:
        """Finished items and what each taught (from checkpoints), to seed a resumed run's hub."""

    def combine(self, layout: list[list[int]], parts: dict[int, list[Any]]) -> list[Any]:
        """The job's results in item order, from its shards' (shard k ran the indices `layout[k]`)."""


class Executor(Protocol):
    name: str

    def run(self, work: Work, jobs: Sequence[Job], progress: Progress) -> Results:
        """Run every job to the end and return its results."""
        ...

    def close(self) -> None: ...


def make_executor(kind: str = "local", *, workers: int = 1, address: str | None = None, **options: Any) -> Executor:
    if kind == "ray":
        from rapo.executor.ray_cluster import RayExecutor

        return RayExecutor(address=address, workers=workers, **options)
    from rapo.executor.local import LocalExecutor

    return LocalExecutor(workers=workers)
