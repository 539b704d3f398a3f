"""Issue 12, defect 3: `rapo bench` killed with SIGKILL leaves no worker behind (each notices its parent
is gone and exits), with a store or without."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process table from /proc")


def _children(pid: int) -> set[int]:
    out = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.add(int(entry.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("with_store", [False, True], ids=["no-store", "store"])
def test_workers_exit_within_seconds_of_their_parents_sigkill(tmp_path, with_store):
    args = [sys.executable, "-m", "rapo.cli", "bench", "--conversations", "400", "--transitions", "5-20",
            "--systems", "round-robin,handoff,rapo", "--sensitivity", "", "--workers", "2"]
    if with_store:
        args += ["--store", f"sqlite:///{tmp_path / 'r1.db'}", "--run-id", "r1"]
    parent = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        workers: set[int] = set()
        while len(workers) < 2 and parent.poll() is None and time.time() < deadline:
            time.sleep(0.1)
            workers = _children(parent.pid)
        assert parent.poll() is None and len(workers) >= 2, "the run ended or never forked its workers"
        time.sleep(1.0)  # let them get into their jobs
        workers = _children(parent.pid)
        os.kill(parent.pid, signal.SIGKILL)  # the parent only: nothing stops the workers for it
        parent.wait(timeout=30)
        deadline = time.time() + 5
        while any(_alive(w) for w in workers) and time.time() < deadline:
            time.sleep(0.1)
        survivors = [w for w in workers if _alive(w)]
    finally:
        for w in _children(parent.pid) | workers:
            if _alive(w):
                try:
                    os.kill(w, signal.SIGKILL)  # only processes this test started
                except ProcessLookupError:
                    pass
    assert not survivors, f"workers {survivors} outlived their parent by more than 5 s"
