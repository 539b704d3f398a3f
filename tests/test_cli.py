"""The `rapo` command as a user meets it: answers, traces, and one readable line per bad input."""

import json
import socket
from pathlib import Path

import pytest

from typer.testing import CliRunner

from rapo.cli import app

ROOT = Path(__file__).resolve().parents[1]
TEAM = str(ROOT / "examples" / "support-team.yaml")
runner = CliRunner()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_run_scripted_prints_answer_and_writes_trace(tmp_path):
    trace = tmp_path / "t.jsonl"
    res = runner.invoke(app, ["run", "--team", TEAM, "--backend", "scripted", "--trace", str(trace),
                              "The refund limit for order A17 is 120 dollars.",
                              "What is the refund limit for order A17?"])
    assert res.exit_code == 0, res.output
    assert "Answer:" in res.output
    records = [json.loads(line) for line in trace.read_text().splitlines()]
    assert len(records) == 2
    q = records[1]
    for field in ("requirement", "routing", "agent", "context", "prompt_tokens", "output_tokens", "consensus",
                  "latency_s", "overhead_s", "prompt"):
        assert field in q
    assert abs(sum(q["requirement"].values()) - 1) < 1e-3
    terms = q["routing"]["scores"][0]
    assert {"score", "capability", "context", "load", "switch"} <= set(terms)
    assert any(c["reason"] == "named" and "A17 is 120 dollars" in c["text"] for c in q["context"])


def test_run_sim_backend_answers_from_the_ledger(tmp_path):
    res = runner.invoke(app, ["run", "--team", TEAM, "--turns", str(ROOT / "examples" / "support-turns.txt")])
    assert res.exit_code == 0, res.output
    for answer in ("Answer: 150 dollars", "Answer: 162 dollars", "Answer: 15 percent", "Answer: yes"):
        assert answer in res.output, res.output


def test_invalid_team_file_names_the_field(tmp_path):
    bad = tmp_path / "team.yaml"
    bad.write_text("agents:\n  - name: a\n    role: r\n    capabilities: {lookup: 3}\n")
    res = runner.invoke(app, ["run", "--team", str(bad), "hi?"])
    assert res.exit_code == 2
    assert "agents.0.capabilities" in res.output and "Traceback" not in res.output


def test_missing_api_key_is_one_readable_message(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    res = runner.invoke(app, ["run", "--team", TEAM, "--backend", "openai", "What is 1 plus 1?"])
    assert res.exit_code == 2
    assert "OPENAI_API_KEY" in res.output and "Traceback" not in res.output


def test_unreachable_endpoint_fails_cleanly_after_retries(monkeypatch):
    port = _free_port()  # nothing listens there
    res = runner.invoke(app, ["run", "--team", TEAM, "--backend", "openai", "--base-url",
                              f"http://127.0.0.1:{port}/v1", "--model", "m",
                              "The fee for order A1 is 3 dollars.", "What is the fee for order A1?"])
    assert res.exit_code == 1, res.output
    assert "127.0.0.1" in res.output and "attempt" in res.output and "Traceback" not in res.output
    assert "Noted" in res.output  # the turn done before the failure is kept and shown


def test_unknown_backend_and_missing_turns():
    res = runner.invoke(app, ["run", "--team", TEAM, "--backend", "nope", "hi?"])
    assert res.exit_code == 2 and "nope" in res.output
    res = runner.invoke(app, ["run", "--team", TEAM])
    assert res.exit_code == 2 and "no turns" in res.output


def test_bench_rejects_bad_arguments_with_one_line_each():
    for args, words in ((["--systems", "rapo,nope"], "unknown systems"), (["--transitions", "9-2"], "1 <= A <= B"),
                        (["--transitions", "x"], "A-B"), (["--profile", "fancy"], "unknown profile"),
                        (["--clock", "sundial"], "virtual or real")):
        res = runner.invoke(app, ["bench", "--conversations", "2", *args])
        assert res.exit_code == 2, (args, res.output)
        assert words in res.output and "Traceback" not in res.output


def test_bench_small_run_prints_table_and_writes_report(tmp_path):
    res = runner.invoke(app, ["bench", "--conversations", "6", "--transitions", "2-6", "--systems",
                              "round-robin,handoff,rapo,oracle", "--sensitivity", "no-penalty",
                              "--sensitivity-conversations", "3", "--workers", "1", "--out", str(tmp_path)],
                        terminal_width=140)
    assert res.exit_code == 0, res.output
    for name in ("round-robin", "handoff", "rapo", "oracle", "42%"):
        assert name in res.output
    written = {p.name for p in tmp_path.iterdir()}
    assert {"results.json", "report.md", "success_vs_transitions.png", "latency_vs_transitions.png",
            "ablations.png"} <= written
    for png in tmp_path.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    report = (tmp_path / "report.md").read_text()
    assert "| rapo |" in report or "rapo" in report


def test_an_error_message_keeps_its_square_brackets(capsys):
    import typer

    from rapo import cli

    with pytest.raises(typer.Exit) as info:
        cli.fail("the HTTP service needs the serve extra: pip install 'rapo[serve]'")
    assert info.value.exit_code == 2
    assert "pip install 'rapo[serve]'" in capsys.readouterr().err
