"""The Ray executor on a local Ray of 2 CPUs: loopback only, the same answers as the local executor,
learned counts merged exactly once, and a worker killed mid-run costs nothing."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="the Ray executor needs the ray extra: pip install 'rapo[ray]'")

from rapo.bench.runner import BenchConfig, run_benchmark  # noqa: E402
from rapo.executor.learning import saved_deltas  # noqa: E402
from rapo.executor.ray_cluster import RayExecutor  # noqa: E402
from rapo.store import open_store  # noqa: E402

LOOPBACK = re.compile(r"^(127\.\d+\.\d+\.\d+|\[::1\]|\[::ffff:127\.\d+\.\d+\.\d+\]):\d+$")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    # Ray's socket paths must stay short: a numbered folder right under pytest's base temp dir.
    temp = tmp_path_factory.mktemp("ray")
    ex = RayExecutor(workers=2, temp_dir=str(temp))
    try:
        yield ex, temp
    finally:
        ex.close()
    assert not ray.is_initialized()


def _cfg(**kw) -> BenchConfig:
    base = dict(conversations=100, systems=["rapo"], sensitivity=[], n_boot=20, workers=2, learning=False)
    return BenchConfig(**{**base, **kw})


def _answers(results) -> list[tuple]:
    """Every turn's record but its latency (which includes the measured wall time of rapo's own work)."""
    fields = results["records"]["fields"]
    lat = fields.index("lat")
    return [row[:lat] + row[lat + 1:] for row in results["records"]["rows"]]


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = set(), [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            if c not in out:
                out.add(c)
                todo.append(c)
    return out


def test_local_ray_listens_on_loopback_only_and_keeps_its_files_in_the_test_dir(cluster):
    _, temp = cluster
    ray_pids = {os.getpid()} | _descendants(os.getpid())
    listening = subprocess.run(["ss", "-ltnupH"], capture_output=True, text=True, check=True).stdout.splitlines()
    mine = []
    for line in listening:
        pids = {int(p) for p in re.findall(r"pid=(\d+)", line)}
        if pids & ray_pids:
            mine.append((line.split()[4], line))
    names = " ".join(line for _, line in mine)
    assert "gcs_server" in names and "raylet" in names, mine  # the check saw Ray's own servers
    wrong = [line for addr, line in mine if not LOOPBACK.match(addr)]
    assert not wrong, wrong
    assert any(temp.glob("session_*")), "Ray's session files should be under the test's temp dir"


def test_ray_gives_every_answer_the_local_executor_gives(cluster):
    ex, _ = cluster
    cfg = _cfg(systems=["rapo", "round-robin", "handoff"])
    local = run_benchmark(cfg, progress=False)
    sharded = run_benchmark(cfg.model_copy(update={"executor": "ray"}), progress=False, executor=ex)
    assert len(_answers(local)) > 1000
    assert _answers(sharded) == _answers(local)
    assert sharded["systems"]["rapo"]["success_rate"] == local["systems"]["rapo"]["success_rate"]


def test_learned_counts_meet_in_the_hub_once_per_conversation(cluster, tmp_path):
    ex, _ = cluster
    store = f"sqlite:///{tmp_path / 'ckpt.db'}"
    cfg = _cfg(conversations=40, learning=True, store=store, run_id="learn", executor="ray")
    results = run_benchmark(cfg, progress=False, executor=ex)
    assert len({r[1] for r in results["records"]["rows"]}) == 40
    assert ray.get(ex.hub.applied.remote("rapo/default")) == 40
    merged = ray.get(ex.hub.counts.remote("rapo/default"))
    s = open_store(store)
    docs = {k.rsplit("/", 1)[1]: s.get("learn", k) for k in s.keys("learn", "job/rapo/default/done/")}
    s.close()
    _, deltas = saved_deltas(docs)
    assert merged is not None and merged[0].sum() + merged[1].sum() > 0  # it learned something
    np.testing.assert_allclose(merged[0], sum(d[0] for d in deltas))  # exactly the checkpointed deltas
    np.testing.assert_allclose(merged[1], sum(d[1] for d in deltas))


def _shard_workers() -> list[int]:
    """Ray worker processes running a shard now (Ray titles a busy worker `ray::<task name>`)."""
    out = []
    for cmd in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if cmd.read_bytes().startswith(b"ray::_run_shard"):
                out.append(int(cmd.parent.name))
        except OSError:
            continue
    return out


def test_a_worker_killed_mid_run_loses_and_doubles_nothing(cluster, tmp_path):
    ex, _ = cluster
    store = f"sqlite:///{tmp_path / 'ckpt.db'}"
    cfg = _cfg(conversations=100, store=store, run_id="kill", executor="ray")
    got: dict = {}
    runner = threading.Thread(target=lambda: got.update(r=run_benchmark(cfg, progress=False, executor=ex)))
    runner.start()
    killed = None
    deadline = time.monotonic() + 60
    while killed is None and runner.is_alive() and time.monotonic() < deadline:
        s = open_store(store)
        done = len(s.keys("kill", "job/rapo/default/done/"))
        s.close()
        workers = _shard_workers()
        if done >= 10 and workers:  # mid-run: some conversations finished, shards still running
            killed = workers[0]
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.05)
    runner.join(timeout=300)
    assert killed is not None, "the run ended before a worker could be killed"
    assert "r" in got, "the run did not finish after its worker was killed"
    local = run_benchmark(_cfg(), progress=False)
    rows = _answers(got["r"])
    assert rows == _answers(local)  # nothing lost, nothing doubled, the same answers
    keys = [(r[1], r[4]) for r in got["r"]["records"]["rows"]]  # (conversation, turn)
    assert len(keys) == len(set(keys))
    assert ray.get(ex.hub.applied.remote("rapo/default")) == 100  # the retried shard's replays counted once


def test_cli_refuses_an_unknown_executor_and_an_address_without_ray():
    from typer.testing import CliRunner

    from rapo.cli import app

    bad = CliRunner().invoke(app, ["bench", "--conversations", "2", "--executor", "dask"])
    assert bad.exit_code != 0 and "--executor 'dask': use local or ray" in bad.output
    lone = CliRunner().invoke(app, ["bench", "--conversations", "2", "--address", "auto"])
    assert lone.exit_code != 0 and "add --executor ray" in lone.output


def test_a_dead_endpoint_stops_a_ray_run_with_the_endpoints_own_error(cluster, tmp_path):
    from rapo.backends.retry import BackendUnavailable

    ex, _ = cluster
    cfg = _cfg(conversations=4, backend="openai", base_url="http://127.0.0.1:9/v1", api_key="unused",
               executor="ray", store=f"sqlite:///{tmp_path / 'ckpt.db'}", run_id="dead")
    with pytest.raises(BackendUnavailable, match=r"127\.0\.0\.1:9") as info:
        run_benchmark(cfg, progress=False, executor=ex)
    assert "ray::" not in str(info.value) and "Traceback" not in str(info.value)  # the message, not Ray's wrapper
    s = open_store(cfg.store)
    assert s.get("dead", "config") is not None  # resumable: the run is in the store
    s.close()


def test_run_many_on_ray_answers_as_it_does_in_process(cluster):
    from rapo.bench.generator import generate
    from rapo.executor import run_many
    from rapo.team import bench_team

    convs = generate(24, seed=2, transitions=(1, 12))
    team = bench_team()
    team = team.model_copy(update={"routing": team.routing.model_copy(update={"learn": False})})
    texts, ids = [c.user_texts() for c in convs], [c.id for c in convs]
    here = run_many(team, texts, ids=ids, concurrency=1)
    there = run_many(team, texts, ids=ids, executor="ray", concurrency=1)
    assert [r.conversation.id for r in there] == ids  # in the order given
    answers = [[(t.agent, t.answer) for t in r.records] for r in here]
    assert sum(len(a) for a in answers) == sum(len(t) for t in texts)
    assert [[(t.agent, t.answer) for t in r.records] for r in there] == answers
    assert all(r.error is None for r in there)


def test_the_scaling_and_fault_scripts_run_on_a_tiny_size_and_print_their_figures(tmp_path_factory):
    import json
    import sys

    bench = Path(__file__).resolve().parents[1] / "benchmarks"
    short = tmp_path_factory.mktemp("s")  # Ray's socket paths must stay under 108 bytes
    env = {**os.environ, "TMPDIR": str(short)}  # the script's local Rays keep their files here
    out = subprocess.run([sys.executable, str(bench / "scaling.py"), "--conversations", "6", "--json"],
                         capture_output=True, text=True, timeout=300, check=False, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["conversations"] == 6 and res["local_conversations_per_s"] > 0
    assert res["ray_1_conversations_per_s"] > 0 and res["ray_2_conversations_per_s"] > 0
    assert isinstance(res["ray_overhead_us_per_transition"], float)
    assert {round(r["success_rate"], 4) for r in res["rows"].values()} <= {round(x / 6, 4) for x in range(7)}
    out = subprocess.run([sys.executable, str(bench / "faults.py"), "--conversations", "5", "--json"],
                         capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    faults = json.loads(out.stdout.strip().splitlines()[-1])
    assert [r["rate"] for r in faults["rows"]] == [0.0, 0.1, 0.2, 0.3]
    assert all(r["systems"]["rapo"]["conversations_completed"] == 5 for r in faults["rows"])
