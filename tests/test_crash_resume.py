"""A benchmark run killed mid-way and resumed gives the uninterrupted run's results: no turn lost or doubled."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

ARGS = ["--conversations", "40", "--transitions", "2-12", "--systems", "round-robin,handoff,rapo,oracle",
        "--sensitivity", "", "--seed", "3"]


def _rapo(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "rapo.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kw)


def _done_rows(db: Path) -> int:
    try:
        con = sqlite3.connect(db, timeout=5)
        n = con.execute("SELECT COUNT(*) FROM docs WHERE key LIKE 'job/%/done/%'").fetchone()[0]
        con.close()
        return n
    except sqlite3.Error:
        return 0


def _rows(path: Path) -> list[tuple]:
    res = json.loads(path.read_text())
    fields = res["records"]["fields"]
    keep = [i for i, f in enumerate(fields) if f != "lat"]  # latency includes measured wall time
    return sorted(tuple(row[i] for i in keep) for row in res["records"]["rows"])


def test_sigkill_mid_run_then_resume_equals_uninterrupted(tmp_path):
    straight = _rapo("bench", *ARGS, "--out", str(tmp_path / "straight"))
    assert straight.wait(timeout=300) == 0, straight.stdout.read()

    db = tmp_path / "run.db"
    run = _rapo("bench", *ARGS, "--store", f"sqlite:///{db}", "--run-id", "crash-1", "--out", str(tmp_path / "never"),
                start_new_session=True)  # its own process group: the kill takes the worker processes too
    deadline = time.time() + 240
    while _done_rows(db) < 20 and run.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert run.poll() is None, "the run finished before it could be killed: " + run.stdout.read()
    os.killpg(run.pid, signal.SIGKILL)
    run.wait(timeout=30)
    time.sleep(0.5)
    done_at_kill = _done_rows(db)
    assert 20 <= done_at_kill < 4 * 40, done_at_kill
    assert not (tmp_path / "never" / "results.json").exists()

    resumed = _rapo("resume", "crash-1", "--store", f"sqlite:///{db}", "--out", str(tmp_path / "resumed"))
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out
    assert _rows(tmp_path / "resumed" / "results.json") == _rows(tmp_path / "straight" / "results.json")
    assert _done_rows(db) == 4 * 40  # every conversation of every system completed exactly once

