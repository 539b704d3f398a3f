"""Per-turn latency against a backend whose calls take real, overlapping time.

The simulated model returns at once, which hid a bug: a turn's own work was its wall time minus the
*sum* of every wait on the shared backend, so a consensus (three calls at once) or a neighbour
conversation's calls made a turn's latency negative. These tests run real sleeps, concurrently.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from fake_openai_server import FakeOpenAIServer

from rapo.bench.runner import BenchConfig, run_benchmark
from rapo.bench.systems import Handoff, Rapo, RoundRobin, TimedBackend
from rapo.timing import TurnTimer
from rapo.team import bench_team
from rapo.tokens import count_message_tokens, count_tokens
from rapo.types import Completion

DELAY = 0.15


class RealTimeBackend:
    """A stand-in for a real endpoint: each call holds one of `slots` and sleeps; it reports the
    time it measured after getting its slot, as OpenAIBackend does (queueing not included)."""

    def __init__(self, slots: int = 64, delay_s: float = DELAY) -> None:
        self.slots, self.delay_s = asyncio.Semaphore(slots), delay_s
        self.in_flight = self.max_in_flight = 0

    async def complete(self, messages, *, model, max_tokens=None, sample=0):
        async with self.slots:
            t = time.perf_counter()
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                await asyncio.sleep(self.delay_s)
            finally:
                self.in_flight -= 1
            text = "Checked the facts.\nAnswer: 42"
            return Completion(text=text, prompt_tokens=count_message_tokens(m.content for m in messages),
                              output_tokens=count_tokens(text), latency_s=time.perf_counter() - t, model=model)

    async def aclose(self) -> None:
        return None


def test_waited_is_the_union_of_intervals_not_their_sum():
    timer = TurnTimer(start=0.0, end=5.0, intervals=[(0.5, 2.0), (0.0, 1.0), (1.5, 1.8), (3.0, 4.0)])
    assert timer.waited() == pytest.approx(3.0)  # [0, 2] and [3, 4]; the sum would be 4.8
    assert timer.own() == pytest.approx(2.0)
    assert timer.latency(0.0) == pytest.approx(5.0)  # measured: the wall time
    assert timer.latency(9.0) == pytest.approx(11.0)  # a virtual model time longer than the wait wins


async def test_overlapping_calls_and_shared_backend_give_wall_time_latency():
    """rapo's consensus (3 calls at once), the handoff baseline and round-robin, 4 conversations
    each, all at once on one backend: every turn's latency is its own wall time, never below the
    one call it waited for, never negative, and never the sum of the overlapping calls."""
    inner = RealTimeBackend()
    backend = TimedBackend(inner)
    team = bench_team()  # consensus on every answer, 3 agents
    systems = [Rapo("rapo", team, backend), Handoff(team, backend), RoundRobin(team, backend)]
    turns = ["The order number is 1234 and it ships to Leeds.", "What is the order number?",
             "What is 40 plus 2?"]

    async def conversation(system, cid):
        session = system.session(cid)
        out = []
        for text in turns:
            t0 = time.perf_counter()
            outcome = await session.step(text)
            out.append((system.name, outcome, time.perf_counter() - t0))
        return out

    runs = await asyncio.gather(*(conversation(s, f"c{i}") for s in systems for i in range(4)))
    assert inner.max_in_flight >= 6  # calls of different turns and conversations really overlapped
    rows = [row for run in runs for row in run]
    for name, outcome, wall in rows:
        assert outcome.latency_s >= 0, (name, outcome.latency_s)
        assert outcome.latency_s <= wall + 1e-3, (name, outcome.latency_s, wall)
        if outcome.calls:
            assert outcome.latency_s >= DELAY * 0.95, (name, outcome.latency_s)
            assert outcome.latency_s >= wall * 0.9, (name, outcome.latency_s, wall)
    # a fresh team's capabilities are its priors: the first two are unlikely both right, so all three
    # are asked in one round (consensus.prefetch); either way the calls overlap
    consensus = [o for n, o, _ in rows if n == "rapo" and o.calls >= 2]
    assert consensus, "the bench team asks several agents at once on questions"
    for o in consensus:  # 150 ms calls at once: about one call's time, not their sum
        assert o.latency_s < 2 * DELAY, o.latency_s
    handoff = [o for n, o, _ in rows if n == "handoff"]
    assert all(o.latency_s >= 2 * DELAY * 0.95 for o in handoff)  # supervisor, then agent: in series


@pytest.fixture
def slow_server():
    server = FakeOpenAIServer().start()
    server.state.default_delay_s = 0.05
    yield server
    server.stop()


def test_bench_against_an_endpoint_that_takes_real_time_reports_no_negative_latency(slow_server):
    """`rapo bench --backend openai` on a loopback server answering in 50 ms, 4 conversations at
    once: every turn's latency is at least zero, and every question turn waited for its calls."""
    cfg = BenchConfig(conversations=4, transitions=(2, 4), systems=["rapo", "handoff"], sensitivity=[],
                      backend="openai", base_url=slow_server.base_url, model="m", concurrency=4, workers=1,
                      n_boot=20)
    res = run_benchmark(cfg, progress=False)
    fields = res["records"]["fields"]
    lat, calls = fields.index("lat"), fields.index("calls")
    rows = res["records"]["rows"]
    assert slow_server.state.max_in_flight >= 2
    assert all(r[lat] >= 0 for r in rows), min(r[lat] for r in rows)
    assert all(r[lat] >= 0.05 * 0.9 for r in rows if r[calls] > 0)
    assert all(s["latency_mean_s"] > 0 for s in res["systems"].values())
    assert res["ratios"]["latency_reduction_vs_handoff"] < 1.0
