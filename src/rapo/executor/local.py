"""The default executor: jobs in forked worker processes on this machine (or in this process with
one worker). A job runs its items in order (the benchmark's conversations: rapo's learned capability
matrix then sees them in a fixed order, and a seed reproduces a run exactly)."""

from __future__ import annotations

import gc
import multiprocessing as mp
import os
import queue as queue_mod
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable, Sequence

from rapo.executor.base import Job, Progress, Results, Work

_PROGRESS: Any = None  # the worker's queue to the progress bar (set by the pool initializer)


def _init_worker(progress_queue: Any) -> None:
    global _PROGRESS
    _PROGRESS = progress_queue
    exit_with_parent()
    quiet_gc()


def exit_with_parent(poll_s: float = 0.5) -> None:
    """A worker whose parent was killed (SIGKILL leaves no time to stop it) would run on forever under
    PID 1, blocked on the dead parent's pipe or lock. Linux sends it SIGKILL when the parent goes
    (PR_SET_PDEATHSIG); everywhere, a daemon thread sees the parent change and exits."""
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            import signal

            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)  # 1: PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass  # the thread below still catches it
        if os.getppid() != parent:  # died before the signal was armed
            os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="rapo-parent-watch").start()


def quiet_gc() -> None:
    """A run allocates millions of short-lived objects and few cycles: move what exists out of the
    collector's way and collect the young generation less often (about 15% faster, same results)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


class Ticker:
    """Counts finished conversations and reports them in batches (a queue message per conversation
    would cost more than some conversations)."""

    def __init__(self, report: Callable[[int], None] | None) -> None:
        self.report, self.pending, self.last = report, 0, time.monotonic()

    def __call__(self) -> None:
        self.pending += 1
        if self.report is not None and (time.monotonic() - self.last > 0.2 or self.pending >= 50):
            self.flush()

    def flush(self) -> None:
        if self.report is not None and self.pending:
            self.report(self.pending)
        self.pending, self.last = 0, time.monotonic()


def run_job(work: Work, job: Job, report: Callable[[int], None] | None = None) -> list[Any]:
    tick = Ticker(report)
    t0 = time.perf_counter()
    records = work.run(job, tick)
    tick.flush()
    if os.environ.get("RAPO_BENCH_DEBUG"):
        print(f"job {job.system} {job.profile} {job.conversations}: {time.perf_counter() - t0:.2f}s",
              file=sys.stderr)
    return records


def _pool_job(args: tuple[Work, Job]) -> tuple[Job, list[Any]]:
    work, job = args
    return job, run_job(work, job, _PROGRESS.put if _PROGRESS is not None else None)


class LocalExecutor:
    name = "local"

    def __init__(self, workers: int = 1) -> None:
        self.workers = max(1, workers)

    def run(self, work: Work, jobs: Sequence[Job], progress: Progress) -> Results:
        work.prepare()  # once; forked workers inherit what it built
        results: Results = {}
        if self.workers <= 1:
            thresholds = gc.get_threshold()
            quiet_gc()
            try:
                with progress() as advance:
                    for job in jobs:
                        results[(job.system, job.profile)] = run_job(work, job, advance)
            finally:
                gc.unfreeze()
                gc.set_threshold(*thresholds)
            return results
        # fork where the platform has it: workers start warm (modules, conversations) at no cost.
        ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        q = ctx.Queue()
        with ProcessPoolExecutor(max_workers=min(self.workers, len(jobs)), mp_context=ctx,
                                 initializer=_init_worker, initargs=(q,)) as pool:
            futures = {pool.submit(_pool_job, (work, job)) for job in jobs}  # starts the workers
            with progress() as advance:
                while futures:
                    try:
                        advance(q.get(timeout=0.2))
                    except queue_mod.Empty:
                        pass
                    for f in [f for f in futures if f.done()]:
                        futures.discard(f)
                        try:
                            job, recs = f.result()
                        except BaseException:
                            pool.shutdown(wait=False, cancel_futures=True)  # jobs not started stay unstarted
                            raise
                        results[(job.system, job.profile)] = recs
                while True:
                    try:
                        advance(q.get_nowait())
                    except queue_mod.Empty:
                        break
        return results

    def close(self) -> None:
        return None
