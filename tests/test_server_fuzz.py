"""Fuzz every operation of the API from its own OpenAPI spec (schemathesis): valid and invalid
inputs, bounded in number, each request bounded in time. No 5xx, no hang, every 4xx is JSON that
says what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")
schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402

from rapo.server import create_app, serve_in_thread  # noqa: E402

TEAM = Path(__file__).resolve().parents[1] / "src" / "rapo" / "data" / "bench-team.yaml"
TOKEN = "fuzz-token-51ac"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
APP = create_app(TEAM, backend="sim", token=TOKEN, max_body_bytes=8192)
SCHEMA = schemathesis.openapi.from_dict(APP.openapi())
OPERATIONS = {op.label: op for op in (r.ok() for r in SCHEMA.get_all_operations())}
EXAMPLES = {GenerationMode.POSITIVE: 60, GenerationMode.NEGATIVE: 30}
NO_INPUT = {"GET /health", "GET /conversations", "GET /v1/models"}  # nothing to make invalid
CASES = [(label, mode) for label in sorted(OPERATIONS) for mode in EXAMPLES
         if not (mode is GenerationMode.NEGATIVE and label in NO_INPUT)]


@pytest.fixture(scope="module")
def live():
    with serve_in_thread(APP) as url:
        with httpx.Client(base_url=url, headers=AUTH, timeout=10) as c:
            cid = c.post("/conversations").json()["id"]
            c.post(f"/conversations/{cid}/turns", json={"text": "The refund limit for order A17 is 120 dollars."})
        yield url, cid


def test_the_spec_covers_every_route():
    assert set(OPERATIONS) == {
        "GET /health", "POST /conversations", "GET /conversations", "GET /conversations/{conversation_id}",
        "DELETE /conversations/{conversation_id}", "POST /conversations/{conversation_id}/turns",
        "GET /v1/models", "POST /v1/chat/completions",
    }


def _with_team_model(case):
    """The spec cannot say "the model is the team's" or "the last message is the user's": without both,
    a valid-looking request is a (correct) 404 or 422 every time, and nothing would reach a team."""
    if isinstance(case.body, dict):
        case.body["model"] = "bench-support"
        messages = case.body.get("messages")
        if isinstance(messages, list) and messages:
            messages[-1] = {"role": "user", "content": "What is the refund limit for order A17?"}
    return case


@pytest.mark.parametrize(("label", "mode"), CASES, ids=[f"{lab}-{m.value}" for lab, m in CASES])
def test_fuzz_operation(live, label, mode):
    url, cid = live
    op = OPERATIONS[label]
    fixed = {"conversation_id": cid} if "{conversation_id}" in label and mode is GenerationMode.POSITIVE else None
    if label.startswith("DELETE"):
        fixed = None  # deleting the shared conversation would starve the other operations
    seen: list[int] = []
    strategy = op.as_strategy(mode, path_parameters=fixed)
    if label == "POST /v1/chat/completions" and mode is GenerationMode.POSITIVE:
        strategy = strategy.map(_with_team_model)  # a random model name is a (correct) 404 every time

    @settings(max_examples=EXAMPLES[mode], deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def run(case):
        response = case.call(base_url=url, headers=AUTH, timeout=15)
        seen.append(response.status_code)
        assert response.status_code < 500, (case.as_curl_command(), response.status_code, response.text[:500])
        if response.status_code >= 400:
            body = response.json()
            message = body.get("detail") or body.get("error", {}).get("message")
            assert isinstance(message, str) and message, response.text[:300]
            assert TOKEN not in response.text

    run()
    assert seen, "no request was made"
    if mode is GenerationMode.POSITIVE and not label.startswith("DELETE"):
        assert any(200 <= s < 300 for s in seen), (label, sorted(set(seen)))  # valid input really got through
    if mode is GenerationMode.NEGATIVE:
        assert any(400 <= s < 500 for s in seen), (label, sorted(set(seen)))
