"""Where a benchmark's conversations run: in this process and its forked workers (the default), or
sharded across a Ray cluster. Both sit behind `Executor`, so the runner does not know which."""

from rapo.executor.base import Executor, Job, Results, make_executor
from rapo.executor.batch import run_many
from rapo.executor.learning import CountsHub

__all__ = ["CountsHub", "Executor", "Job", "Results", "make_executor", "run_many"]
