"""The benchmark end to end: schema, honesty of the inputs, and the HTTP path against the sim-server."""

import ast
import json
import time
from pathlib import Path

import pytest
from loopback import free_port, serve

from rapo.bench.generator import generate
from rapo.bench.runner import BenchConfig, _run_job, run_benchmark, write_results

SRC = Path(__file__).resolve().parents[1] / "src" / "rapo"


def small_cfg(**kw):
    base = dict(conversations=12, transitions=(1, 12), workers=1, sensitivity=["no-penalty"],
                sensitivity_conversations=6, n_boot=50)
    base.update(kw)
    return BenchConfig(**base)


@pytest.fixture(scope="module")
def results():
    return run_benchmark(small_cfg(), progress=False)


def test_results_follow_the_documented_schema(results, tmp_path):
    systems = results["systems"]
    assert set(systems) == {"round-robin", "round-robin-vote", "handoff", "handoff-vote", "rapo",
                            "rapo-vote-always", "rapo-no-consensus", "rapo-static-prompts", "rapo-no-context-vectors",
                            "rapo-no-learning", "rapo-random-routing", "oracle", "oracle-vote"}
    for name, s in systems.items():
        for key in ("success_rate", "context_loss_rate", "rouge_l", "latency_mean_s", "latency_p95_s",
                    "latency_question_turns_mean_s", "calls_per_question", "prompt_tokens_per_turn",
                    "calls_per_turn", "by_transitions"):
            assert key in s, (name, key)
        for key in ("success_rate", "context_loss_rate", "rouge_l"):
            assert 0.0 <= s[key] <= 1.0
            lo, hi = s[key + "_ci"]
            assert lo <= s[key] + 1e-9 and s[key] <= hi + 1e-9
        assert set(s["by_transitions"]) == {str(t) for t in range(1, 13)}
    for key in ("latency_reduction_vs_handoff", "latency_reduction_vs_round_robin", "rouge_l_gain_vs_handoff",
                "question_latency_reduction_vs_handoff_vote", "success_gain_vs_handoff_vote",
                "success_gain_vs_oracle_vote"):
        assert key in results["ratios"]
    assert results["config"]["language"] == "controlled" and results["config"]["profile"] == "default"
    assert systems["oracle"]["calls_per_question"] == 1.0
    # the supervisor, three voters, and three more in the bounded second round when they disagree
    assert 4.0 <= systems["handoff-vote"]["calls_per_question"] <= 7.0
    # two agents, a third on disagreement, or at once where the capabilities (here still near the
    # team file's priors, a few conversations in) make the first two unlikely to agree
    assert 2.0 <= systems["rapo"]["calls_per_question"] < 3.5
    assert systems["oracle"]["context_loss_rate"] == 0.0
    assert systems["round-robin"]["calls_per_turn"] == 1.0 and systems["handoff"]["calls_per_turn"] == 2.0
    fields = results["records"]["fields"]
    rows = results["records"]["rows"]
    assert len(rows) == len(systems) * sum(len(c.turns) for c in generate(12, seed=0, transitions=(1, 12)))
    assert "no-penalty" in results["sensitivity"] and "default" in results["sensitivity"]
    path = write_results(results, tmp_path)
    again = json.loads(path.read_text())
    assert again["records"]["fields"] == fields and again["config"]["conversations"] == 12


def test_ratios_are_computed_from_the_summaries(results):
    s, r = results["systems"], results["ratios"]
    assert r["latency_reduction_vs_handoff"] == pytest.approx(
        1 - s["rapo"]["latency_mean_s"] / s["handoff"]["latency_mean_s"], abs=1e-5)
    assert r["rouge_l_gain_vs_handoff"] == pytest.approx(s["rapo"]["rouge_l"] / s["handoff"]["rouge_l"] - 1, abs=1e-5)


def test_systems_never_import_the_generator_or_its_truth():
    for path in [SRC / "orchestrator.py", SRC / "ledger.py", SRC / "extract.py", SRC / "classify.py",
                 SRC / "bench" / "systems.py", SRC / "backends" / "sim.py"]:
        tree = ast.parse(path.read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert not any("generator" in m for m in imported), (path, imported)


async def test_systems_see_only_the_text():
    """Corrupt every truth field of the conversations: what the systems do must not change."""
    convs = generate(6, seed=3, transitions=(8, 12))
    cfg = small_cfg()
    clean = {}
    for name in ("round-robin", "handoff", "rapo"):
        clean[name] = await _run_job(cfg, name, "default", convs, lambda: None)
    for c in convs:
        for t in c.turns:
            if t.question is not None:
                t.question.answer = "corrupted"
                for n in t.question.needed:
                    n.value, n.sentence, n.key = "0 nothing", "nothing", "nothing|x"
    for name in ("round-robin", "handoff", "rapo"):
        dirty = await _run_job(cfg, name, "default", convs, lambda: None)
        assert [(r.agent, r.value, r.ptok, r.otok, r.calls) for r in dirty] == \
            [(r.agent, r.value, r.ptok, r.otok, r.calls) for r in clean[name]]
        assert all(r.correct is False for r in dirty if r.q)  # only the scoring saw the change


@pytest.fixture(scope="module")
def sim_server():
    from rapo.bench.simserver import create_app

    port = free_port()
    server, thread = serve(create_app(profile="default", seed=777), port)
    yield f"http://127.0.0.1:{port}/v1"
    server.should_exit = True
    thread.join(timeout=10)


_ROW = ("system", "conv", "turn", "agent", "value", "correct", "loss", "ptok", "otok", "calls")


@pytest.mark.parametrize("concurrency", [1, 4])
def test_openai_backend_against_sim_server_matches_in_process(sim_server, concurrency):
    """Every per-turn record over HTTP equals the in-process one. rapo is compared at concurrency 1
    only: with conversations overlapping, its routing sees the other conversations' calls in flight
    (the load term) and its learning sees them finish in another order, by design, not by HTTP."""
    systems = ["round-robin", "handoff", "handoff-vote", "oracle", "oracle-vote"]
    if concurrency == 1:
        systems.append("rapo")
    common = dict(conversations=8, seed=777, transitions=(3, 10), systems=systems, sensitivity=[])
    local = run_benchmark(small_cfg(**common), progress=False)
    remote = run_benchmark(small_cfg(**common, backend="openai", base_url=sim_server, model="sim",
                                     concurrency=concurrency), progress=False)
    fields = local["records"]["fields"]
    keep = [fields.index(k) for k in _ROW]
    pick = lambda rows: sorted(tuple(row[i] for i in keep) for row in rows)  # noqa: E731
    assert pick(remote["records"]["rows"]) == pick(local["records"]["rows"])
    for name in systems:
        for key in ("success_rate", "context_loss_rate", "rouge_l", "calls_per_question"):
            assert remote["systems"][name][key] == local["systems"][name][key]
        if concurrency == 1:  # with calls overlapping, the systems' own-work measure is issue 13's to fix
            assert remote["systems"][name]["latency_mean_s"] == pytest.approx(
                local["systems"][name]["latency_mean_s"], rel=0.02)


def test_a_sim_server_of_another_seed_is_refused(sim_server):
    """The mismatch once reported as an HTTP bug: a server started with another seed than the run's."""
    from rapo.types import RapoError

    with pytest.raises(RapoError, match="simulates seed 777.*rapo sim-server --seed 0"):
        run_benchmark(small_cfg(conversations=2, systems=["handoff"], sensitivity=[], backend="openai",
                                base_url=sim_server, model="sim"), progress=False)


def test_real_clock_waits_and_measures_what_the_virtual_clock_computes():
    """On the real clock the simulated latency is slept (scaled) and measured; answers do not change."""
    common = dict(conversations=6, transitions=(3, 6), systems=["round-robin", "oracle"], sensitivity=[])
    virtual = run_benchmark(small_cfg(**common), progress=False)
    t0 = time.perf_counter()
    real = run_benchmark(small_cfg(**common, clock="real", time_scale=0.02, concurrency=3), progress=False)
    wall = time.perf_counter() - t0
    fields = virtual["records"]["fields"]
    key = lambda rows: sorted(tuple(r[fields.index(k)] for k in ("system", "conv", "turn", "value")) for r in rows)  # noqa: E731
    assert key(real["records"]["rows"]) == key(virtual["records"]["rows"])
    for name in ("round-robin", "oracle"):
        v, r = virtual["systems"][name]["latency_mean_s"], real["systems"][name]["latency_mean_s"]
        assert v * 0.95 <= r <= v * 1.5, (name, v, r)  # measured: never faster, a little event-loop overhead
    total_virtual = sum(virtual["systems"][n]["latency_mean_s"] * 6 for n in ("round-robin", "oracle"))
    assert wall >= total_virtual * 0.02 / 3 * 0.5  # it really slept (3 conversations at a time)


def test_peer_frameworks_run_as_benchmark_rows_and_langgraph_matches_the_handoff_baseline():
    """The LangGraph supervisor graph, run for real on the same simulated model, answers turn for turn
    as the `handoff` baseline does: the baseline is the pattern as its users write it, not a weak copy."""
    from rapo.bench.peers.common import peer_available

    if peer_available("langgraph") or peer_available("autogen"):
        pytest.skip(peer_available("langgraph") or peer_available("autogen"))
    res = run_benchmark(small_cfg(conversations=8, transitions=(2, 10), systems=["handoff", "langgraph", "autogen"],
                                  sensitivity=[]), progress=False)
    fields = res["records"]["fields"]
    pick = lambda name: [tuple(r[fields.index(k)] for k in ("conv", "turn", "agent", "value", "ptok", "calls"))  # noqa: E731
                         for r in res["records"]["rows"] if r[fields.index("system")] == name]
    assert pick("langgraph") == pick("handoff")
    assert res["systems"]["autogen"]["calls_per_turn"] == 1.0 and res["systems"]["autogen"]["questions"] > 0


def test_unknown_or_missing_peer_is_a_clear_error():
    from rapo.types import RapoError

    with pytest.raises(RapoError, match="unknown systems.*langgraph"):
        run_benchmark(small_cfg(systems=["crewai"]), progress=False)


def test_handoff_vote_asks_the_pick_then_the_agents_of_highest_declared_capability():
    from rapo.bench.systems import declared_rank
    from rapo.team import bench_team

    team = bench_team()
    order, weights = declared_rank(team, team.agent("retriever"), 3)
    assert [a.name for a in order] == ["retriever", "generalist", "calculator"]
    assert weights == pytest.approx([4.8 / 8, 6.75 / 8, 4.95 / 8])  # mean declared over the 8 types
    order, _ = declared_rank(team, team.agent("calculator"), 3)
    assert [a.name for a in order] == ["calculator", "generalist", "reasoner"]
