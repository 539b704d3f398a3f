"""The executor protocol: run a benchmark's jobs and hand back every conversation's scored turns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, ContextManager, Protocol, Sequence

if TYPE_CHECKING:
    from rapo.bench.metrics import TurnScore
    from rapo.bench.runner import BenchConfig


@dataclass(frozen=True)
class Job:
    """One system under one simulated-model profile, on the first `conversations` of the set."""

    system: str
    profile: str
    conversations: int


Results = dict[tuple[str, str], list["TurnScore"]]  # (system, profile) -> turns, in conversation order
Advance = Callable[[int], None]
# Opens the progress display and yields `advance(n)`, called as n more conversations finish. An
# executor opens it once its workers exist: a display thread running while processes fork can
# deadlock them.
Progress = Callable[[], ContextManager[Advance]]


class Executor(Protocol):
    name: str

    def run(self, cfg: "BenchConfig", jobs: Sequence[Job], progress: Progress) -> Results:
        """Run every job to the end and return its turns."""
        ...

    def close(self) -> None: ...


def make_executor(cfg: "BenchConfig", **options: Any) -> Executor:
    if cfg.executor == "ray":
        from rapo.executor.ray_cluster import RayExecutor

        return RayExecutor(address=cfg.address, workers=cfg.workers, **options)
    from rapo.executor.local import LocalExecutor

    return LocalExecutor(workers=cfg.workers)
