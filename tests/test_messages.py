"""Issue 12, defect 7: each of these was a traceback (or a wrong message); now each is one message."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from rapo.cli import app
from rapo.team import load_team
from rapo.types import RapoError

ROOT = Path(__file__).resolve().parents[1]
TEAM = ROOT / "examples" / "support-team.yaml"
runner = CliRunner()
BINARY = bytes(range(256)) * 4


def _one_message(res) -> str:
    assert res.exit_code == 2, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert "Traceback" not in res.output
    return " ".join(res.output.split())


def test_a_binary_team_file_gets_a_message(tmp_path):
    team = tmp_path / "binary.yaml"
    team.write_bytes(BINARY)
    out = _one_message(runner.invoke(app, ["run", "--team", str(team), "--backend", "scripted", "hello"]))
    assert "binary.yaml is not UTF-8 text" in out


def test_a_binary_turns_file_gets_a_message(tmp_path):
    turns = tmp_path / "binary_turns.txt"
    turns.write_bytes(BINARY)
    out = _one_message(runner.invoke(app, ["run", "--team", str(TEAM), "--backend", "scripted", "--turns", str(turns)]))
    assert "binary_turns.txt is not UTF-8 text" in out


@pytest.mark.parametrize(("template", "says"), [
    ("{{ role }\n---user---\n{{ task }}", "does not compile"),
    ("{{ role }}\n---user---\n{{ the_task }}", "'the_task' is undefined"),
    ("{{ role }}\n---user---\n{% for f in context %}{{ f.text | nosuchfilter }}{% endfor %}{{ task }}", "nosuchfilter"),
])
def test_a_bad_template_is_refused_when_the_team_loads(tmp_path, template, says):
    data = yaml.safe_load(TEAM.read_text())
    data["agents"][0]["template"] = template
    path = tmp_path / "team.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(RapoError, match=f"agents.{data['agents'][0]['name']}.template: .*{says}"):
        load_team(path)
    data["agents"][0]["template"] = "{{ role }}\n---user---\n{% for f in context %}- {{ f.text }}\n{% endfor %}{{ task }}"
    path.write_text(yaml.safe_dump(data))
    assert load_team(path).agents[0].template  # a good one still loads


def test_resume_of_a_missing_store_creates_nothing(tmp_path):
    db = tmp_path / "new.db"
    out = _one_message(runner.invoke(app, ["resume", "nosuch", "--store", f"sqlite:///{db}"]))
    assert "no checkpoint store at" in out and "nothing was created" in out
    assert not db.exists() and list(tmp_path.iterdir()) == []


def test_resume_of_an_unknown_run_names_the_runs_there(tmp_path):
    from rapo.store import open_store

    db = tmp_path / "s.db"
    store = open_store(db)
    store.put("r1", "config", {})
    store.close()
    out = _one_message(runner.invoke(app, ["resume", "nosuch", "--store", str(db)]))
    assert "no run 'nosuch'" in out and "runs there: r1" in out


def test_the_resume_hint_is_printed_only_once_the_store_opened(tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database" * 100)
    out = _one_message(runner.invoke(app, ["bench", "--conversations", "2", "--systems", "rapo", "--sensitivity", "",
                                           "--store", str(junk), "--run-id", "r"]))
    assert "not a rapo checkpoint store" in out and "rapo resume" not in out


async def test_run_inside_a_running_loop_says_to_await_arun():
    from rapo.backends.scripted import ScriptedBackend
    from rapo.orchestrator import Orchestrator
    from rapo.team import bench_team

    orch = Orchestrator(bench_team(), ScriptedBackend())
    with pytest.raises(RapoError, match=r"await orch\.arun\(\.\.\.\)"):
        orch.run(["What is the refund limit for order A17?"])
    assert asyncio.get_running_loop().is_running()
    await orch.aclose()


def test_a_slower_rapo_is_shown_with_one_sign():
    from rapo.bench.report import _sensitivity_line

    slower = _sensitivity_line("api", {"systems": {}, "ratios": {"latency_reduction_vs_handoff": -0.588,
                                                                 "rouge_l_gain_vs_handoff": 0.1}})
    faster = _sensitivity_line("api", {"systems": {}, "ratios": {"latency_reduction_vs_handoff": 0.42,
                                                                 "rouge_l_gain_vs_handoff": 0.1}})
    assert "latency +58.8% vs handoff" in slower and "--" not in slower
    assert "latency -42.0% vs handoff" in faster


async def test_auth_comes_before_body_validation():
    pytest.importorskip("fastapi")
    import httpx

    from rapo.server import create_app

    web = create_app(ROOT / "src" / "rapo" / "data" / "bench-team.yaml", backend="sim", token="t0k")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=web), base_url="http://t") as c:
        cid = (await c.post("/conversations", headers={"Authorization": "Bearer t0k"})).json()["id"]
        for path in (f"/conversations/{cid}/turns", "/v1/chat/completions", "/conversations"):
            r = await c.post(path, content=b"{not json", headers={"content-type": "application/json"})
            assert r.status_code == 401, (path, r.status_code, r.text)
            wrong = await c.post(path, content=b"{not json", headers={"content-type": "application/json",
                                                                       "Authorization": "Bearer nope"})
            assert wrong.status_code == 401
            right = await c.post(path, content=b"{not json", headers={"content-type": "application/json",
                                                                       "Authorization": "Bearer t0k"})
            assert right.status_code == 422  # with the token, the body's fault is named
