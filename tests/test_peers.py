"""The peers (LangGraph, AutoGen AgentChat, OpenAI Agents SDK): each runs a 5-transition conversation,
every agent reply comes from the fake model, and on the simulated model a stated fact is answered."""

from __future__ import annotations

import pytest

from rapo.bench.peers import PEER_NAMES, FakeModel, FakeModelConfig, bench_team, make_peer, peer_available
from rapo.bench.peers.common import is_supervisor_prompt
from rapo.types import Completion, Message

TURNS = [
    "The refund limit for order A17 is 120 dollars.",
    "The shipping fee for order A17 is 12 dollars.",
    "What is the refund limit for order A17?",
    "Correction: the refund limit for order A17 is now 150 dollars.",
    "What is the refund limit for order A17?",
]


class MarkingModel(FakeModel):
    """Numbers every agent reply, so the test can see each reply came from this model and in order."""

    def __init__(self, names: list[str]) -> None:
        super().__init__(agent_names=names)
        self.replies: list[str] = []
        self.seen: list[list[Message]] = []

    async def complete(self, messages, *, model, max_tokens=None, sample=0) -> Completion:  # type: ignore[override]
        c = await super().complete(messages, model=model)
        if is_supervisor_prompt(messages):
            return c
        text = f"reply #{len(self.replies)} from {model}\nAnswer: ok"
        self.replies.append(text)
        self.seen.append(list(messages))
        return c.model_copy(update={"text": text})


def _need(name: str) -> None:
    why = peer_available(name)
    if why:
        pytest.skip(why)


@pytest.mark.parametrize("persist", [False, True])
@pytest.mark.parametrize("name", PEER_NAMES)
async def test_peer_runs_five_transitions_with_fake_model(name: str, persist: bool) -> None:
    _need(name)
    if name == "autogen" and persist:
        pytest.skip("AutoGen's team keeps its state in memory; it has no persistence option here")
    team = bench_team()
    model = MarkingModel([a.name for a in team.agents])
    peer = make_peer(name, team, model, persist=persist)
    session = peer.session("t1")
    outcomes = [await session.step(t) for t in TURNS]
    await peer.aclose()
    assert len(model.replies) == 5  # one agent reply per transition, each from the fake model
    assert [o.reply for o in outcomes] == model.replies
    models = {a.name: a.model for a in team.agents}
    for o, reply in zip(outcomes, model.replies):
        assert o.agent in models and reply.endswith("Answer: ok") and models[o.agent] in reply
    # the answering agent got the full history: every user turn so far is in its last prompt
    last_prompt = [m.content for m in model.seen[-1]]
    for turn in TURNS:
        assert turn in last_prompt
    assert model.seen[-1][0].role == "system"


async def test_autogen_round_robin_moves_between_agents() -> None:
    _need("autogen")
    team = bench_team()
    model = MarkingModel([a.name for a in team.agents])
    session = make_peer("autogen", team, model).session("t")
    agents = [(await session.step(t)).agent for t in TURNS]
    names = [a.name for a in team.agents]
    assert agents == [names[i % 4] for i in range(5)]


@pytest.mark.parametrize("name", PEER_NAMES)
async def test_peer_on_simulated_model_answers_from_history(name: str) -> None:
    _need(name)
    team = bench_team()
    model = FakeModel(FakeModelConfig(mode="sim"))
    session = make_peer(name, team, model).session("sim")
    for t in TURNS[:2]:
        await session.step(t)
    out = await session.step("What is the refund limit for order A17?")
    assert out.reply.strip().endswith("120 dollars")
    assert out.prompt_tokens > 0 and out.calls >= 1


def test_fake_model_config_is_checked() -> None:
    with pytest.raises(ValueError):
        FakeModelConfig(mode="fast")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        FakeModelConfig(mode="delay", delay_s=-1)


# -- the benchmark scripts on a tiny size (not timed: they only must run and print their keys) ---------

import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = {
    "overhead.py": (["--lengths", "5,10", "--budget", "10", "--ledger-sizes", "0,50"],
                    ["rapo_us_per_transition", "langgraph_us_per_transition", "autogen_us_per_transition",
                     "openai_agents_us_per_transition", "best_peer", "ratio", "by_transitions"]),
    "memory.py": (["--quick", "--in-flight", "20", "--big", "40"],
                  ["rapo_bytes_per_conversation", "langgraph_bytes_per_conversation", "autogen_bytes_per_conversation",
                   "openai_agents_bytes_per_conversation", "best_peer", "ratio",
                   "rapo_mb_1000_agents_1000_conversations", "rapo_mb_10000_conversations"]),
    "throughput.py": (["--conversations", "4"],
                      ["rapo_conversations_per_s", "langgraph_conversations_per_s", "autogen_conversations_per_s",
                       "openai_agents_conversations_per_s", "best_peer", "ratio"]),
}


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_benchmark_script_prints_its_json_keys(script: str) -> None:
    args, keys = SCRIPTS[script]
    out = subprocess.run([sys.executable, str(BENCH / script), *args, "--json"], capture_output=True, text=True,
                         timeout=120, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(keys) <= set(res)
    rapo_key = keys[0]
    assert isinstance(res[rapo_key], (int, float))
    assert res[rapo_key] > 0 if script != "memory.py" else res[rapo_key] >= 0
    installed = [p for p in PEER_NAMES if peer_available(p) is None]
    if installed:
        assert res["best_peer"] in installed and res["ratio"] > 0
    else:
        assert res["best_peer"] is None
