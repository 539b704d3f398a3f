"""Fault tolerance: injected failures are retried away; a dead agent is failed over; a breaker opens."""


import pytest

from rapo.backends.faulty import KINDS, FaultyBackend
from rapo.backends.resilient import CircuitBreaker, ResilientBackend
from rapo.backends.retry import BackendUnavailable, RetryPolicy
from rapo.backends.scripted import ScriptedBackend
from rapo.backends.sim import SimBackend
from rapo.bench.generator import generate
from rapo.orchestrator import Orchestrator
from test_store import bench_team


async def _no_sleep(_: float) -> None:
    return None


def resilient(inner, **kw):
    return ResilientBackend(inner, RetryPolicy(max_attempts=8, base_delay_s=0.001, max_delay_s=0.01),
                            sleep=_no_sleep, **kw)


async def _run(backend, conversations):
    orch = Orchestrator(bench_team(), backend)
    out = []
    for c in conversations:
        result = await orch.arun(c.user_texts(), orch.new_conversation(c.id))
        out.append((result.error, [(r.agent, r.value) for r in result.records]))
    return out


async def test_twenty_percent_faults_change_nothing_but_the_retries():
    convs = generate(40, seed=5, transitions=(2, 20))
    clean = await _run(SimBackend(seed=1), convs)
    faulty = FaultyBackend(SimBackend(seed=1), rate=0.2, seed=9)
    noisy = await _run(resilient(faulty), convs)
    assert all(err is None for err, _ in noisy)  # every conversation completed
    assert noisy == clean  # same agents, same answers: retried calls get the same reply
    assert all(faulty.injected[k] > 0 for k in KINDS), faulty.injected
    assert sum(faulty.injected.values()) > 0.15 * faulty.calls


async def test_dead_agent_is_failed_over_to_the_next_best():
    def reply(messages, model):
        if model == "m-dead":
            raise ConnectionError("connection refused")
        return "ok\nAnswer: 5 dollars"

    from test_orchestrator import make_team

    team = make_team()
    team = team.model_copy(update={"agents": [team.agents[0].model_copy(update={"model": "m-dead"}), *team.agents[1:]]})
    orch = Orchestrator(team, resilient(ScriptedBackend(reply)))
    rec = await orch.astep(orch.new_conversation(), "Look up the fee.", requirement={"lookup": 1.0})
    assert rec.agent != "retriever" and rec.value == "5 dollars"
    assert rec.failovers and rec.failovers[0].startswith("retriever:") and "connection refused" in rec.failovers[0]


async def test_nothing_answers_gives_a_clear_error_and_keeps_the_turns_done():
    calls = {"n": 0}

    def reply(messages, model):
        calls["n"] += 1
        raise ConnectionError("connection refused")

    orch = Orchestrator(bench_team(), resilient(ScriptedBackend(reply)))
    result = await orch.arun(["The fee for order A1 is 3 dollars.", "What is the fee for order A1?"])
    assert result.error and "no agent of the team could answer" in result.error and "connection refused" in result.error
    assert len(result.records) == 2 and result.records[0].answer.startswith("Noted")


async def test_breaker_opens_after_repeated_failures_and_fails_fast():
    now = {"t": 0.0}
    breaker = CircuitBreaker(threshold=2, cooldown_s=10, clock=lambda: now["t"])
    calls = {"n": 0}

    def reply(messages, model):
        calls["n"] += 1
        raise ConnectionError("down")

    backend = ResilientBackend(ScriptedBackend(reply), RetryPolicy(max_attempts=2, base_delay_s=0.001, max_delay_s=0.001),
                               breaker, sleep=_no_sleep)
    from rapo.types import Message

    msgs = [Message(role="user", content="hi")]
    for _ in range(2):
        with pytest.raises(BackendUnavailable):
            await backend.complete(msgs, model="m")
    seen = calls["n"]
    with pytest.raises(BackendUnavailable, match="circuit open"):
        await backend.complete(msgs, model="m")
    assert calls["n"] == seen  # no request while open
    now["t"] = 11.0
    with pytest.raises(BackendUnavailable):
        await backend.complete(msgs, model="m")
    assert calls["n"] > seen  # half-open again after the cooldown
