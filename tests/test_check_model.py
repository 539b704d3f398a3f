"""`rapo check-model` without a model: it never downloads unasked, checks pinned files by sha256,
and the backend flags reach the backends. (The run on a real model is tests/test_realmodel.py.)"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from fake_openai_server import FakeOpenAIServer
from typer.testing import CliRunner

from rapo import check_model as cm
from rapo.cli import app
from rapo.orchestrator import Orchestrator
from rapo.team import load_team
from rapo.types import RapoError

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def test_no_model_is_an_error_naming_the_fetch_command_not_a_download(tmp_path, monkeypatch):
    monkeypatch.setenv("RAPO_MODEL_CACHE", str(tmp_path))
    with pytest.raises(RapoError, match="rapo check-model --fetch"):
        cm.find_model()
    res = runner.invoke(app, ["check-model", "--out", str(tmp_path / "out")])
    assert res.exit_code == 2 and "--fetch" in res.output
    assert list(tmp_path.iterdir()) == []  # nothing fetched, nothing written


def test_a_file_under_the_pinned_name_must_have_the_pinned_hash(tmp_path):
    fake = tmp_path / cm.SMOLLM2.filename
    fake.write_bytes(b"not a model")
    with pytest.raises(RapoError, match="sha256"):
        cm.verified(fake)
    other = tmp_path / "mine.gguf"
    other.write_bytes(b"x")
    assert cm.verified(other) == other  # another model is the caller's choice


def test_summary_of_a_check():
    probes = [{"wall_s": 1.0, "latency_s": 0.9, "server_prompt_tokens": 120, "rapo_prompt_tokens": 100,
               "output_tokens": 5, "reply": "Answer: 1"}]
    records = [{"latency_s": 2.0, "overhead_s": 0.5, "calls": 3, "unanswered_calls": 1, "prompt_tokens": 300,
                "output_tokens": 30, "answer": "Answer: 1"},
               {"latency_s": 0.0, "overhead_s": 0.1, "calls": 0, "prompt_tokens": 0, "output_tokens": 0,
                "answer": "Noted."}]
    fields = ["system", "lat", "q", "correct", "calls", "ptok", "otok"]
    results = {"records": {"fields": fields, "rows": [["rapo", 3.0, True, False, 3, 300, 30],
                                                      ["rapo", 0.1, False, None, 0, 0, 0]]},
               "systems": {"rapo": {"success_rate": 0.0, "accuracy": 0.0, "latency_mean_s": 3.1}},
               "ratios": {"latency_reduction_vs_handoff": None}}
    s = cm.summarise_check(probes, records, results, 10.0, 20.0)
    assert s["prompt_token_ratio"] == {"min": 1.2, "max": 1.2}
    assert s["run"]["rapo_share"] == pytest.approx(0.6 / 2.6) and s["run"]["unanswered_calls"] == 1
    assert s["bench"]["rapo"]["questions"] == 1 and s["bench"]["rapo"]["latency_per_turn_min_s"] == 0.1


def test_backend_flags_reach_the_openai_backend():
    """--timeout / --max-concurrency / --max-tokens set the backend's options, over the team file's."""
    team = load_team(ROOT / "examples" / "support-team.yaml").with_backend("openai", base_url="http://127.0.0.1:9/v1")
    team = team.with_backend_options(timeout_s=300.0, max_concurrency=1, max_tokens=64)
    backend = Orchestrator(team).backends["openai"]
    assert (backend.timeout_s, backend.max_concurrency, backend.max_tokens) == (300.0, 1, 64)


def test_max_tokens_caps_calls_that_set_none():
    server = FakeOpenAIServer().start()
    try:
        from rapo.backends.openai_compat import OpenAIBackend
        from rapo.types import Message

        async def go() -> None:
            b = OpenAIBackend(base_url=server.base_url, max_tokens=32)
            await b.complete([Message(role="user", content="hi")], model="m")
            await b.complete([Message(role="user", content="hi")], model="m", max_tokens=8)
            await b.aclose()

        asyncio.run(go())
        assert [r.get("max_tokens") for r in server.state.requests] == [32, 8]
    finally:
        server.stop()


def test_run_flags_reach_the_backend_of_a_run(tmp_path):
    """`rapo run --max-concurrency 1 --timeout 5` against a loopback server: the run answers."""
    server = FakeOpenAIServer().start()
    try:
        res = runner.invoke(app, ["run", "--team", str(ROOT / "examples" / "support-team.yaml"), "--backend",
                                  "openai", "--base-url", server.base_url, "--model", "m", "--max-concurrency", "1",
                                  "--timeout", "5", "--max-tokens", "16", "--critical",
                                  "What is the refund limit for order A17?"])
        assert res.exit_code == 0, res.output
        assert server.state.max_in_flight == 1  # the consensus's calls went one at a time
        assert all(r.get("max_tokens") == 16 for r in server.state.requests)
    finally:
        server.stop()
