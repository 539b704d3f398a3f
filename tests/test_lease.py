"""Issue 12, defect 2: a run has one owner. A second process is refused with the owner named and the
way to take over; a crashed owner's lease runs out; `--force` takes over only an expired lease."""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rapo.store import open_store
from rapo.store.lease import KEY, Lease, LeaseHeld


@pytest.fixture(params=["sqlite:///", "sqlite+pysqlite:///"])
def url(request, tmp_path) -> str:
    if request.param.startswith("sqlite+"):
        pytest.importorskip("sqlalchemy")
    return f"{request.param}{tmp_path / 'lease.db'}"


def test_a_second_owner_is_refused_with_the_owner_named(url):
    a, b = open_store(url), open_store(url)
    first = Lease(a, "r2", where="y.db").acquire()
    with pytest.raises(LeaseHeld, match=r"run 'r2' in y\.db is already being run by pid \d+ on host .*--force"):
        Lease(b, "r2", where="y.db").acquire()
    with pytest.raises(LeaseHeld, match="already being run"):
        Lease(b, "r2", where="y.db").acquire(force=True)  # a live lease is not taken, even by force
    assert Lease(b, "other-run", where="y.db").acquire()  # other runs are free
    first.release()
    assert a.get("r2", KEY) is None
    assert Lease(b, "r2", where="y.db").acquire()  # free again once released
    a.close(), b.close()


def test_an_expired_lease_needs_force_and_a_heartbeat_keeps_it_alive(url):
    a, b = open_store(url), open_store(url)
    held = Lease(a, "r", where="s", ttl_s=0.6).acquire().start()
    time.sleep(1.2)  # two TTLs: only the heartbeat keeps it
    with pytest.raises(LeaseHeld, match="already being run"):
        Lease(b, "r", where="s").acquire(force=True)
    held._stop.set()
    held._thread.join()  # the owner stops beating, as a frozen or cut-off process would
    time.sleep(0.8)
    with pytest.raises(LeaseHeld, match="expired at .* with --force to take over"):
        Lease(b, "r", where="s").acquire()
    taker = Lease(b, "r", where="s").acquire(force=True)
    assert "its lease had expired" in taker.note
    assert not held.renew() and held.lost  # the old owner finds out at its next beat
    a.close(), b.close()


def test_a_dead_owner_on_this_host_is_taken_over_at_once(tmp_path):
    store = open_store(tmp_path / "d.db")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    store.put("r", KEY, {"token": "x", "pid": gone.pid, "host": socket.gethostname(), "command": "rapo resume r",
                         "started": time.time(), "beat": time.time(), "ttl_s": 3600})
    lease = Lease(store, "r", where="d.db").acquire()
    assert "its process is gone" in lease.note and f"pid {gone.pid}" in lease.note
    store.close()


def _lease_and_config(db: Path) -> bool:
    try:
        con = sqlite3.connect(db, timeout=5)
        keys = {k for (k,) in con.execute("SELECT key FROM docs WHERE run_id='r2'")}
        con.close()
        return {"_lease", "config"} <= keys
    except sqlite3.Error:
        return False


def test_a_second_resume_of_a_running_run_is_refused(tmp_path):
    db = tmp_path / "y.db"
    cli = [sys.executable, "-m", "rapo.cli"]
    first = subprocess.Popen([*cli, "bench", "--conversations", "300", "--transitions", "5-20", "--systems", "rapo",
                              "--sensitivity", "", "--workers", "1", "--store", f"sqlite:///{db}", "--run-id", "r2"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 120
        while not _lease_and_config(db) and first.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert first.poll() is None, "the first run ended before the second could try: " + first.stdout.read()
        second = subprocess.run([*cli, "resume", "r2", "--store", f"sqlite:///{db}"], capture_output=True,
                                text=True, timeout=120)
        con = sqlite3.connect(db, timeout=30)
        row = con.execute("SELECT doc FROM docs WHERE run_id='r2' AND key='_lease'").fetchone()
        con.close()
        assert first.poll() is None, "the first run ended before the second was refused"
    finally:
        first.kill()
        first.wait(timeout=30)
    message = " ".join((second.stdout + second.stderr).split())
    assert second.returncode == 2, message
    assert f"already being run by pid {first.pid}" in message and "--force" in message, message
    assert row is not None and json.loads(row[0])["pid"] == first.pid  # the refused one left the lease alone


def test_a_second_server_on_the_same_store_and_team_is_refused(tmp_path):
    pytest.importorskip("fastapi")
    from rapo.server import create_app
    from rapo.server.durable import DurableConversationStore

    team = Path(__file__).resolve().parents[1] / "src" / "rapo" / "data" / "bench-team.yaml"
    url = f"sqlite:///{tmp_path / 'serve.db'}"
    first = DurableConversationStore.open(url)
    create_app(team, backend="sim", store=first)
    second = DurableConversationStore.open(url)
    with pytest.raises(LeaseHeld, match="run 'serve/bench-support' .* already being run by pid"):
        create_app(team, backend="sim", store=second)
    second.close()
    first.close()
    third = DurableConversationStore.open(url)  # free once the first server stopped
    create_app(team, backend="sim", store=third)
    third.close()
