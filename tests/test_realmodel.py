"""rapo on a real model: llama.cpp's server with SmolLM2-135M, started here on loopback.

Not part of the default run: it needs `pip install 'rapo[llama]'` (a build of llama.cpp, minutes)
and the GGUF from `rapo check-model --fetch`. Run it with `RAPO_REAL_MODEL=1 pytest -m realmodel`
(`RAPO_LLAMA_PYTHON` names another Python that has the server; `RAPO_GGUF` another model file).
It checks plumbing, not quality: a model this small gets the benchmark's questions wrong.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from rapo.types import RapoError

pytestmark = pytest.mark.realmodel

ROOT = Path(__file__).resolve().parents[1]
# The server's prompt tokens over rapo's own count of the same messages. Measured on SmolLM2: 1.19
# to 1.22 (its tokenizer splits numbers into digits and adds chat-template tokens); the bound leaves
# room for other text, and would catch a count that is off by a factor (per call vs per turn, say).
TOKEN_RATIO = (0.8, 1.5)


def _why_not() -> tuple[str | None, Path | None, str]:
    python = os.environ.get("RAPO_LLAMA_PYTHON") or sys.executable
    if os.environ.get("RAPO_REAL_MODEL") != "1":
        return "set RAPO_REAL_MODEL=1 to run the real-model check (see the README, 'Running on a real model')", None, python
    from rapo.check_model import find_model, llama_missing

    why = llama_missing(python)
    if why:
        return why, None, python
    try:
        model = find_model(Path(os.environ["RAPO_GGUF"]) if os.environ.get("RAPO_GGUF") else None)
    except RapoError as err:
        return str(err), None, python
    return None, model, python


@pytest.fixture(scope="module")
def check(tmp_path_factory):
    why, model, python = _why_not()
    if why:
        pytest.skip(why)
    from rapo.check_model import llama_server, run_check

    out = tmp_path_factory.mktemp("check-model")
    with llama_server(model, python=python, log=out / "server.log") as url:
        assert url.startswith("http://127.0.0.1:")
        return run_check(url, out, team=ROOT / "examples" / "support-team.yaml",
                         turns=ROOT / "examples" / "support-turns.txt", conversations=2, transitions="1-3",
                         max_tokens=64)


def test_replies_are_not_empty(check):
    assert all(p["reply"].strip() for p in check["probes"])
    assert check["run"]["turns"] == 9 and all(a.strip() for a in check["run"]["answers"])


def test_usage_tokens_are_positive(check):
    for p in check["probes"]:
        assert p["server_prompt_tokens"] > 0 and p["output_tokens"] > 0
    assert check["run"]["prompt_tokens"] > 0 and check["run"]["output_tokens"] > 0
    for b in check["bench"].values():
        assert b["calls"] > 0 and b["prompt_tokens"] > 0 and b["output_tokens"] > 0


def test_every_latency_and_overhead_is_at_least_zero(check):
    assert all(p["latency_s"] > 0 for p in check["probes"])
    assert check["run"]["min_latency_s"] >= 0 and check["run"]["min_overhead_s"] >= 0
    assert check["run"]["model_s"] > 0 and check["run"]["rapo_s"] >= 0
    for b in check["bench"].values():
        assert b["latency_per_turn_min_s"] >= 0 and b["latency_mean_s"] > 0
    assert check["latency_reduction_vs_handoff"] < 1.0  # 100% or more would mean a negative latency


def test_server_prompt_tokens_agree_with_rapos_count(check):
    lo, hi = TOKEN_RATIO
    ratio = check["prompt_token_ratio"]
    assert lo <= ratio["min"] <= ratio["max"] <= hi, ratio
