"""The loop end to end on the scripted backend: routing, context, supersession, consensus, failures."""

import re

import numpy as np
import pytest

from rapo.backends.scripted import ScriptedBackend
from rapo.orchestrator import Orchestrator, is_request
from rapo.team import team_from_dict
from rapo.tokens import count_tokens
from rapo.types import RapoError

TYPES = ["lookup", "arithmetic", "deduction", "comparison", "aggregation", "planning", "verification",
         "summarisation"]


def make_team(**over):
    agents = [
        {"name": "retriever", "role": "You retrieve facts.", "model": "m-retriever",
         "capabilities": {"lookup": 0.95, "arithmetic": 0.5}},
        {"name": "calculator", "role": "You compute.", "model": "m-calculator",
         "capabilities": {"lookup": 0.6, "arithmetic": 0.95}},
        {"name": "reasoner", "role": "You reason.", "model": "m-reasoner",
         "capabilities": {"lookup": 0.7, "arithmetic": 0.7, "deduction": 0.95}},
    ]
    data = {"agents": agents, "routing": {"exploration": "none", "beta": 0.0, "delta": 0.0},
            "consensus": {"mode": "never"}, "prompts": {"context_budget_tokens": 120}}
    for k, v in over.items():
        data[k] = {**data.get(k, {}), **v} if isinstance(v, dict) else v
    return team_from_dict(data)


def answer_from_facts(messages, model):
    """A stand-in model: answers with the last value stated for the refund limit of A17 in its prompt."""
    text = "\n".join(m.content for m in messages)
    found = re.findall(r"refund limit[^.\n]*?(?:is now|is|to) (\d+ dollars)", text)
    return f"The value is {found[-1] if found else 'missing'}.\nAnswer: {found[-1] if found else 'unknown'}"


def test_is_request():
    assert is_request("What is the refund limit for order A17?")
    assert is_request("Please summarise the open orders.")
    assert not is_request("The refund limit for order A17 is 120 dollars.")


async def test_best_capability_agent_answers_when_exploration_off():
    backend = ScriptedBackend(lambda m, model: "ok\nAnswer: 1")
    orch = Orchestrator(make_team(), backend)
    conv = orch.new_conversation("c1")
    rec = await orch.astep(conv, "What is 2 plus 3?", requirement={"arithmetic": 1.0})
    assert rec.agent == "calculator" and backend.calls[-1].model == "m-calculator"
    rec = await orch.astep(conv, "Look up the order.", requirement={"lookup": 1.0})
    assert rec.agent == "retriever"
    scores = {s.agent: s for s in rec.routing.scores}
    assert scores["retriever"].capability == pytest.approx(orch.matrix.mean()[0] @ np.eye(8)[0])
    assert rec.requirement_source == "declared"


async def test_fact_forty_turns_back_reaches_prompt_under_budget():
    backend = ScriptedBackend(answer_from_facts)
    orch = Orchestrator(make_team(), backend)
    conv = orch.new_conversation()
    turns = ["The refund limit for order A17 is 120 dollars."]
    turns += [f"The shipping fee for order B{i} is {10 + i} dollars." for i in range(40, 80)]
    for t in turns:
        await orch.astep(conv, t)
    transcript_tokens = sum(count_tokens(t) for t in turns)
    rec = await orch.astep(conv, "What is the refund limit for order A17?")
    assert rec.value == "120 dollars"
    assert any("A17 is 120 dollars" in c.text and c.reason == "named" for c in rec.context)
    context_tokens = sum(count_tokens(c.text) for c in rec.context)
    assert context_tokens <= 120 < transcript_tokens
    prompt = "\n".join(m.content for m in rec.prompt)
    assert prompt.count("shipping fee") <= orch.team.prompts.k_relevant  # not the transcript


async def test_superseded_value_never_reaches_a_prompt_and_near_duplicate_keeps_its_own():
    backend = ScriptedBackend(answer_from_facts)
    orch = Orchestrator(make_team(), backend)
    conv = orch.new_conversation()
    await orch.astep(conv, "The refund limit for order A17 is 120 dollars.")
    await orch.astep(conv, "The refund limit for order A71 is 90 dollars.")
    for i in range(10):
        await orch.astep(conv, f"The delivery time for order D{i} is {i + 2} days.")
    await orch.astep(conv, "Correction: A17's refund limit is now 150 dollars.")
    rec = await orch.astep(conv, "What is the refund limit for order A17?")
    prompts = [c.messages for c in backend.calls]
    assert all("120 dollars" not in m.content for p in prompts for m in p)
    assert rec.value == "150 dollars"
    rec2 = await orch.astep(conv, "What is the refund limit for order A71?")
    assert any("A71 is 90 dollars" in c.text for c in rec2.context)
    assert all("120" not in c.text for c in rec2.context)


async def test_statement_turns_cost_no_call_and_are_acknowledged():
    backend = ScriptedBackend(lambda m, model: "x\nAnswer: y")
    orch = Orchestrator(make_team(), backend)
    conv = orch.new_conversation()
    rec = await orch.astep(conv, "The refund limit for order A17 is 120 dollars.")
    assert rec.calls == 0 and not backend.calls and "120 dollars" in rec.answer


def _timed(replies, latency):
    """A scripted backend whose calls report the given latency per model."""
    class Timed(ScriptedBackend):
        async def complete(self, messages, *, model, max_tokens=None, sample=0):
            c = await super().complete(messages, model=model, max_tokens=max_tokens, sample=sample)
            return c.model_copy(update={"latency_s": latency[model]})

    return Timed(lambda m, model: replies[model])


def _consensus_team(**cons):
    return make_team(consensus={"mode": "always", "m": 3, "threshold": 0.6, **cons})


async def test_consensus_returns_majority_and_stops_early():
    replies = {"m-retriever": "It is 150.\nAnswer: 150 dollars", "m-calculator": "It is 150.\nAnswer: $150",
               "m-reasoner": "It is 90.\nAnswer: 90 dollars"}
    latency = {"m-retriever": 1.0, "m-calculator": 1.2, "m-reasoner": 5.0}
    orch = Orchestrator(_consensus_team(), _timed(replies, latency))
    conv = orch.new_conversation()
    rec = await orch.astep(conv, "What is the refund limit for order A17?", requirement={"lookup": 1.0})
    assert rec.value == "150 dollars"
    assert rec.agent in ("retriever", "calculator")
    rnd = rec.consensus.rounds[0]
    assert rnd.stopped_early and rnd.values["reasoner"] is None  # the slow dissenter was not waited for
    assert rec.latency_s == pytest.approx(1.2)  # max of the two that agreed, not the 5 s call
    assert rec.consensus.agreement >= 0.6 and len(rec.consensus.rounds) == 1
    assert rnd.alpha < 1 / (2 * rnd.lipschitz) and rnd.residuals[-1] < rnd.residuals[0] + 1e-12


async def test_consensus_disagreement_runs_an_extra_round_with_peers_answers():
    seen = []

    def reply(messages, model):
        text = "\n".join(m.content for m in messages)
        seen.append("Other agents answered" in text)
        if "Other agents answered" in text:
            return "On reflection.\nAnswer: 150 dollars"
        return {"m-retriever": "a\nAnswer: 150 dollars", "m-calculator": "b\nAnswer: 140 dollars",
                "m-reasoner": "c\nAnswer: 130 dollars"}[model]

    orch = Orchestrator(_consensus_team(threshold=0.9), ScriptedBackend(reply))
    rec = await orch.astep(orch.new_conversation(), "What is the refund limit for order A17?")
    assert len(rec.consensus.rounds) == 2 and any(seen)
    assert rec.value == "150 dollars" and rec.consensus.agreement == pytest.approx(1.0)
    assert rec.calls == 6


async def test_learning_from_consensus_updates_the_matrix():
    replies = {"m-retriever": "a\nAnswer: 7", "m-calculator": "b\nAnswer: 7", "m-reasoner": "c\nAnswer: 8"}
    orch = Orchestrator(_consensus_team(threshold=0.5), ScriptedBackend(lambda m, model: replies[model]))
    before = orch.matrix.mean().copy()
    conv = orch.new_conversation()
    for _ in range(5):
        await orch.astep(conv, "What is 3 plus 4?", requirement={"arithmetic": 1.0})
    after = orch.matrix.mean()
    a = TYPES.index("arithmetic")
    assert after[2, a] < before[2, a]  # the dissenter loses arithmetic credit
    assert after[1, a] > before[1, a]


async def test_failure_mid_conversation_keeps_turns_done():
    calls = {"n": 0}

    def flaky(messages, model):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RapoError("endpoint http://127.0.0.1:9 unreachable after 4 attempts")
        return "fine\nAnswer: 1"

    orch = Orchestrator(make_team(), ScriptedBackend(flaky))
    result = await orch.arun(["The fee for order A1 is 3 dollars.", "What is the fee for order A1?",
                              "What is the fee for order A1 plus 2?", "What is it now?"])
    assert result.error and "unreachable" in result.error
    assert [r.turn for r in result.records] == [1, 2, 3]
    assert result.records[1].answer == "fine\nAnswer: 1" and result.records[2].error is None
    assert len(result.conversation.ledger) >= 1


def test_sync_run_wrapper_and_classifier_requirement():
    orch = Orchestrator(make_team(), ScriptedBackend(lambda m, model: "x\nAnswer: 5 dollars"))
    result = orch.run(["The fee for order A1 is 3 dollars.", "What is the fee for order A1 plus the fee for order A1?"])
    rec = result.records[-1]
    assert result.error is None and rec.requirement_source == "classifier"
    assert max(rec.requirement, key=rec.requirement.get) == "arithmetic"
    assert abs(sum(rec.requirement.values()) - 1) < 1e-3


def test_unknown_backend_and_declared_type():
    with pytest.raises(RapoError, match="unknown backend|known"):
        Orchestrator(make_team().with_backend("nonsense"))
    orch = Orchestrator(make_team(), ScriptedBackend())
    with pytest.raises(RapoError, match="unknown reasoning types"):
        orch.run_step = None
        import asyncio

        asyncio.run(orch.astep(orch.new_conversation(), "hi?", requirement={"magic": 1.0}))


async def test_user_alpha_at_or_above_the_bound_is_warned_about_and_recorded():
    from rapo.theory import StepSizeWarning

    replies = {"m-retriever": "a\nAnswer: 7", "m-calculator": "b\nAnswer: 8", "m-reasoner": "c\nAnswer: 9"}
    orch = Orchestrator(_consensus_team(alpha=5.0, max_rounds=1), ScriptedBackend(lambda m, model: replies[model]))
    with pytest.warns(StepSizeWarning, match="1/\\(2L\\)"):
        rec = await orch.astep(orch.new_conversation(), "What is 3 plus 4?", requirement={"arithmetic": 1.0})
    rnd = rec.consensus.rounds[0]
    assert rnd.alpha == 5.0 and rnd.alpha >= 1 / (2 * rnd.lipschitz)
    ok = Orchestrator(_consensus_team(max_rounds=1), ScriptedBackend(lambda m, model: replies[model]))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", StepSizeWarning)
        rec = await ok.astep(ok.new_conversation(), "What is 3 plus 4?", requirement={"arithmetic": 1.0})
    rnd = rec.consensus.rounds[0]
    assert rnd.alpha == pytest.approx(0.9 / (2 * rnd.lipschitz))
    assert rnd.residuals and rnd.residuals[-1] < 1e-6  # the theorem, checked on this run


async def test_model_extraction_reads_what_the_rules_cannot():
    """'A17 refunds are capped at 150 dollars' has no copula: the rules miss it, a model does not."""
    def reply(messages, model):
        if "You extract facts" in messages[0].content:
            text = messages[-1].content
            return "refund limit for order A17: 150 dollars" if "capped" in text else "NONE"
        return answer_from_facts(messages, model)

    backend = ScriptedBackend(reply)
    for mode, expected in (("rules", "unknown"), ("both", "150 dollars"), ("model", "150 dollars")):
        orch = Orchestrator(make_team(extraction=mode), backend)
        conv = orch.new_conversation()
        first = await orch.astep(conv, "A17 refunds are capped at 150 dollars.")
        rec = await orch.astep(conv, "What is the refund limit for order A17?")
        assert rec.value == expected, mode
        assert first.calls == (0 if mode == "rules" else 1)


# -- auto mode: a vote that costs a third call only where the first two disagree ------------------


def _auto_team(**cons):
    return make_team(consensus={"mode": "auto", "m": 3, "threshold": 0.6, "prefetch": None, **cons})


async def test_auto_asks_all_at_once_where_the_first_two_are_unlikely_to_agree():
    """prefetch: the chance that the first two are not both right (1 - product of their learned
    capabilities) above it asks the third in the same round, so a split costs no second wait."""
    replies = {"m-retriever": "a\nAnswer: 150 dollars", "m-reasoner": "b\nAnswer: $150",
               "m-calculator": "c\nAnswer: 90 dollars"}
    for prefetch, calls, rounds_asked in ((0.0, 3, 3), (0.999, 2, 2)):
        backend = ScriptedBackend(lambda m, model: replies[model])
        orch = Orchestrator(_auto_team(prefetch=prefetch), backend)
        rec = await orch.astep(orch.new_conversation(), "What is the refund limit for order A17?",
                               requirement={"lookup": 1.0})
        assert rec.value == "150 dollars" and rec.calls == calls, prefetch
        assert len(rec.consensus.rounds) == 1 and len(rec.consensus.rounds[0].agents) == rounds_asked


async def test_auto_asks_two_and_stops_when_they_agree():
    replies = {"m-retriever": "a\nAnswer: 150 dollars", "m-reasoner": "b\nAnswer: $150",
               "m-calculator": "c\nAnswer: 90 dollars"}
    backend = ScriptedBackend(lambda m, model: replies[model])
    orch = Orchestrator(_auto_team(), backend)
    rec = await orch.astep(orch.new_conversation(), "What is the refund limit for order A17?",
                           requirement={"lookup": 1.0})
    assert rec.value == "150 dollars" and rec.calls == 2
    assert {c.model for c in backend.calls} == {"m-retriever", "m-reasoner"}  # the top two by routing for lookup
    rnd = rec.consensus.rounds[0]
    assert rec.consensus.triggered_by == "auto" and len(rnd.agents) == 2 and rnd.stopped_early


async def test_auto_adds_a_third_agent_only_on_disagreement_and_adds_latencies():
    replies = {"m-retriever": "a\nAnswer: 150 dollars", "m-reasoner": "b\nAnswer: 140 dollars",
               "m-calculator": "c\nAnswer: 150 dollars"}
    latency = {"m-retriever": 1.0, "m-reasoner": 2.0, "m-calculator": 0.5}
    orch = Orchestrator(_auto_team(), _timed(replies, latency))
    rec = await orch.astep(orch.new_conversation(), "What is the refund limit for order A17?",
                           requirement={"lookup": 1.0})
    assert rec.value == "150 dollars" and rec.calls == 3 and len(rec.consensus.rounds) == 1
    assert rec.latency_s == pytest.approx(2.0 + 0.5)  # the pair at once, then the third after it


async def test_an_abstention_is_no_agreement():
    """'I don't know' from one of the pair leaves the other alone: a third agent is asked."""
    replies = {"m-retriever": "a\nAnswer: 150 dollars", "m-reasoner": "b\nAnswer: I don't know",
               "m-calculator": "c\nAnswer: 150 dollars"}
    orch = Orchestrator(_auto_team(), ScriptedBackend(lambda m, model: replies[model]))
    rec = await orch.astep(orch.new_conversation(), "What is the refund limit for order A17?",
                           requirement={"lookup": 1.0})
    assert rec.calls == 3 and rec.value == "150 dollars"


async def test_auto_answers_alone_once_the_matrix_is_sure_of_the_agent():
    replies = {"m-retriever": "a\nAnswer: 150 dollars", "m-calculator": "b\nAnswer: 150 dollars",
               "m-reasoner": "c\nAnswer: 150 dollars"}
    backend = ScriptedBackend(lambda m, model: replies[model])
    orch = Orchestrator(_auto_team(solo_confidence=0.9), backend)
    conv = orch.new_conversation()
    first = await orch.astep(conv, "What is the refund limit for order A17?", requirement={"lookup": 1.0})
    assert first.calls == 2  # the declared prior alone is not enough
    lookup = TYPES.index("lookup")
    orch.matrix.successes[0, lookup] += 400  # many agreed lookups later
    rec = await orch.astep(conv, "What is the refund limit for order A17?", requirement={"lookup": 1.0})
    assert rec.calls == 1 and rec.consensus.triggered_by == "solo" and rec.agent == "retriever"
    crit = await orch.astep(conv, "What is the refund limit for order A17?", requirement={"lookup": 1.0},
                            critical=True)
    assert crit.calls == 2  # a critical step always has a second opinion


def test_the_handoff_note_quotes_only_the_question_on_a_line_of_its_own() -> None:
    """A question quoted inside a sentence ("handled the request (is it 9 items?) and answered")
    reads as a claim; a statement quoted from the previous turn may have been corrected since."""
    from rapo.bench.natural import read_facts
    from rapo.team import load_team

    orch = Orchestrator(load_team("src/rapo/data/bench-team.yaml"))
    res = orch.run(["The item count for order D138 is 9 items. Is it true that the item count for order D138 is 9 items?",
                    "Correction: the item count for order D138 is now 16 items.",
                    "What is the item count for order D138?"])
    note = res.records[-1].handoff
    assert note is not None and "answered" in note
    first, second = note.split("\n")
    assert "9 items" not in first
    assert second == "The previous request was: Is it true that the item count for order D138 is 9 items?"
    assert not any(f.value == "9 items" for f in read_facts([note]))  # nothing in it reads as a fact
