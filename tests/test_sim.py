"""The simulated language model: reads only its prompt, recalls less when long, routes, times calls."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import numpy as np
import pytest

import rapo.backends.sim as sim_module
from rapo.backends.sim import DEFAULT_SKILLS, PROFILES, SimBackend, SimProfile, hashed_skill
from rapo.tokens import count_message_tokens, count_tokens
from rapo.types import Backend, Message, RapoError

PERFECT = {"sim-perfect": {t: 1.0 for t in ("lookup", "arithmetic", "comparison", "aggregation", "deduction", "verification")}}


def U(text: str) -> Message:
    return Message(role="user", content=text)


def answer_of(text: str) -> str:
    return text.strip().splitlines()[-1].removeprefix("Answer: ").strip()


async def ask(backend: SimBackend, messages: list[Message], model: str = "sim-perfect", sample: int = 0) -> str:
    return answer_of((await backend.complete(messages, model=model, sample=sample)).text)


def filler(n_tokens: int) -> str:
    """Statements about unrelated orders, about ``n_tokens`` long."""
    out: list[str] = []
    i = 0
    while count_tokens(" ".join(out)) < n_tokens:
        out.append(f"The shipping fee for order D{100 + i % 800} is {3 + i % 40} dollars.")
        i += 1
    return " ".join(out)


# ---------------------------------------------------------------------------- isolation and determinism


def test_sim_does_not_import_the_generator() -> None:
    source = Path(sim_module.__file__).read_text()
    imports = [l for l in source.splitlines() if re.match(r"\s*(from|import)\s", l)]
    assert imports and not any("generator" in l for l in imports)
    assert "rapo.bench.generator" not in source
    assert isinstance(SimBackend(), Backend)


async def test_same_prompt_same_reply_whatever_happened_before() -> None:
    msgs = [U("The refund limit for order A17 is 120 dollars. The shipping fee for order B22 is 9 dollars."), U("What is the refund limit for order A17 plus the shipping fee for order B22?")]
    first = SimBackend(seed=3)
    a = await first.complete(msgs, model="sim-retriever", sample=2)
    for k in range(5):  # unrelated traffic, other models, other samples
        await first.complete([U(f"The weight for module M{k + 10} is {100 + k} grams.")], model="sim-reasoner", sample=k)
    b = await first.complete(msgs, model="sim-retriever", sample=2)
    c = await SimBackend(seed=3).complete(msgs, model="sim-retriever", sample=2)
    assert a == b == c
    replies = {(await first.complete(msgs, model="sim-retriever", sample=s)).text for s in range(20)}
    assert len(replies) > 3  # samples are independent draws (the rationale wording varies)
    other_seed = {(await SimBackend(seed=4).complete(msgs, model="sim-retriever", sample=s)).text for s in range(20)}
    assert other_seed != replies


# ---------------------------------------------------------------------------- facts and recall


async def test_short_prompt_lookup_is_right_with_the_skilled_agent() -> None:
    sim = SimBackend()
    msgs = [U("The refund limit for order A17 is 120 dollars."), U("What is the refund limit for order A17?")]
    answers = [await ask(sim, msgs, "sim-retriever", s) for s in range(200)]
    assert answers.count("120 dollars") / 200 >= 0.95
    assert np.all(PROFILES["default"].recall(800, np.linspace(0, 1, 11)) == 1.0)


async def test_missing_fact_gives_wrong_value_or_says_so() -> None:
    sim = SimBackend()
    msgs = [U("The refund limit for order A18 is 130 dollars. The shipping fee for order A17 is 9 dollars."), U("What is the refund limit for order A17?")]
    replies = [(await sim.complete(msgs, model="sim-perfect", sample=s)).text for s in range(200)]
    answers = [answer_of(r) for r in replies]
    abstained = [r for r, a in zip(replies, answers) if a == "unknown"]
    guessed = [a for a in answers if a != "unknown"]
    assert all(re.search(r"don't have|can't find", r) for r in abstained)
    assert 0.2 <= len(abstained) / 200 <= 0.4  # profile abstain_prob = 0.3
    assert all(re.fullmatch(r"\d+ dollars", a) for a in guessed)
    assert "130 dollars" in guessed  # the near-duplicate key confuses it, as designed
    assert len(set(guessed)) > 10


async def test_assistant_messages_are_not_trusted_for_facts() -> None:
    sim = SimBackend(profile="no-penalty", skills=PERFECT)
    msgs = [
        Message(role="assistant", content="The refund limit for order A17 is 120 dollars."),
        U("What is the refund limit for order A17?"),
    ]
    answers = [await ask(sim, msgs, sample=s) for s in range(50)]
    assert "120 dollars" not in answers
    with_system = [Message(role="system", content="The refund limit for order A17 is 120 dollars."), msgs[1]]
    assert await ask(sim, with_system) == "120 dollars"


async def test_latest_statement_supersedes() -> None:
    sim = SimBackend(skills=PERFECT)
    msgs = [
        U("The refund limit for order A17 is 120 dollars."),
        Message(role="assistant", content="Noted."),
        U("Correction: the refund limit for order A17 is now 150 dollars."),
        U("Is it true that the refund limit for order A17 is 120 dollars?"),
    ]
    assert {await ask(sim, msgs, sample=s) for s in range(30)} == {"no"}
    msgs[-1] = U("What is the refund limit for order A17?")
    assert {await ask(sim, msgs, sample=s) for s in range(30)} == {"150 dollars"}
    same_message = [U("The refund limit for order A17 is 120 dollars. Actually, A17's refund limit is 90 dollars, not 120 dollars. What is the refund limit for order A17?")]
    assert await ask(sim, same_message) == "90 dollars"


async def test_long_prompt_lowers_recall_under_default_only() -> None:
    middle = "The refund limit for order A17 is 120 dollars."
    msgs = [U(filler(3000) + " " + middle + " " + filler(3000)), U("What is the refund limit for order A17?")]
    assert count_message_tokens(m.content for m in msgs) > 6000
    n = 150
    default = [await ask(SimBackend("default", skills=PERFECT), msgs, sample=s) for s in range(n)]
    flat = [await ask(SimBackend("no-penalty", skills=PERFECT), msgs, sample=s) for s in range(n)]
    acc_default, acc_flat = default.count("120 dollars") / n, flat.count("120 dollars") / n
    assert acc_flat == 1.0
    expected = float(PROFILES["default"].recall(count_message_tokens(m.content for m in msgs), np.array([0.5]))[0])
    assert expected < 0.7
    assert abs(acc_default - expected) < 0.12


def test_recall_curve_shape() -> None:
    p = PROFILES["default"]
    pos = np.linspace(0, 1, 21)
    r = p.recall(8000, pos)
    assert r[10] == r.min() and r[0] == r[-1] == r.max() < 1.0  # U shape: lost in the middle
    assert np.all(p.recall(20000, pos) <= p.recall(8000, pos)) and p.recall(10**6, pos).min() == p.recall_floor
    assert np.all(PROFILES["no-penalty"].recall(50000, pos) == 1.0)
    small, default = PROFILES["small-model"], PROFILES["default"]
    assert small.recall(1200, pos).mean() < 1.0 == default.recall(1200, pos).mean()


# ---------------------------------------------------------------------------- skill


@pytest.mark.parametrize(("model", "qtype"), [("sim-calculator", "arithmetic"), ("sim-retriever", "arithmetic"), ("sim-reasoner", "deduction")])
async def test_accuracy_matches_skill_table(model: str, qtype: str) -> None:
    question = {
        "arithmetic": "What is the refund limit for order A17 plus the shipping fee for order B22?",
        "deduction": "What is the discount rate for the tier of the customer for order A17?",
    }[qtype]
    right = {"arithmetic": "129 dollars", "deduction": "15 percent"}[qtype]
    facts = U(
        "The refund limit for order A17 is 120 dollars. The shipping fee for order B22 is 9 dollars. "
        "The customer for order A17 is customer C5. The tier for customer C5 is Gold. The discount rate for the Gold tier is 15 percent."
    )
    sim = SimBackend()
    answers = [await ask(sim, [facts, U(question)], model, s) for s in range(400)]
    assert abs(answers.count(right) / 400 - DEFAULT_SKILLS[model][qtype]) <= 0.05
    assert "unknown" not in answers  # wrong answers are plausible values, not abstentions


def test_unknown_models_get_a_stable_hashed_profile() -> None:
    sim = SimBackend(skills={"custom": {"lookup": 0.5}})
    assert sim.skill("custom", "lookup") == 0.5
    values = [sim.skill("mystery-model", t) for t in ("lookup", "arithmetic", "deduction")]
    assert all(0.8 <= v <= 0.95 for v in values) and len(set(values)) == 3
    assert values[0] == hashed_skill("mystery-model", "lookup") == SimBackend().skill("mystery-model", "lookup")
    with pytest.raises(RapoError):
        SimBackend(skills={"x": {"lookup": 1.5}})
    with pytest.raises(RapoError):
        SimBackend(profile="huge-model")


# ---------------------------------------------------------------------------- reasoning, hand-written


FACTS = (
    "The refund limit for order A17 is 120 dollars; order B22's refund limit is 200 dollars, and for order E30, the refund limit is 90 dollars. "
    "The shipping fee for order B22 is 9 dollars. "
    "Please note that the customer of order A17 is customer C5. The tier for customer C5 is Gold. "
    "The discount rate for the Gold tier is 15 percent. The discount rate for the Silver tier is 10 percent."
)


@pytest.mark.parametrize(
    ("question", "answer"),
    [
        ("What is the refund limit for order A17 plus the shipping fee for order B22?", "129 dollars"),
        ("What is the refund limit for order A17 minus the shipping fee for order B22?", "111 dollars"),
        ("What do you get if you subtract the refund limit for order A17 from the refund limit for order B22?", "80 dollars"),
        ("What is the refund limit for order E30 multiplied by 3?", "270 dollars"),
        ("Which is higher: the refund limit for order A17 or the refund limit for order B22?", "order B22"),
        ("Which has the lower refund limit, order A17 or order E30?", "order E30"),
        ("What is the total refund limit across order A17, order B22 and order E30?", "410 dollars"),
        ("What is the largest refund limit among order A17, order B22 and order E30?", "order B22"),
        ("Which of order A17, order B22 and order E30 has the smallest refund limit?", "order E30"),
        ("What is the tier of the customer for order A17?", "Gold"),
        ("What is the discount rate for the tier of the customer for order A17?", "15 percent"),
        ("Which has the higher discount rate, the Gold tier or the Silver tier?", "the Gold tier"),
        ("Is it true that the refund limit for order A17 is 120 dollars?", "yes"),
        ("Can you confirm that A17's customer is customer C6?", "no"),
        ("Remind me: what is A17's customer?", "customer C5"),
    ],
)
async def test_computes_each_type_correctly(question: str, answer: str) -> None:
    reply = (await SimBackend(skills=PERFECT).complete([U(FACTS), U(question)], model="sim-perfect")).text
    assert answer_of(reply) == answer
    assert reply.splitlines()[-1] == f"Answer: {answer}"
    assert len(reply.splitlines()[0]) > 20  # a rationale precedes the answer line


async def test_rationale_wording_varies_and_restates_facts() -> None:
    sim = SimBackend(skills=PERFECT)
    msgs = [U(FACTS), U("What is the refund limit for order A17 plus the shipping fee for order B22?")]
    texts = [(await sim.complete(msgs, model="sim-perfect", sample=s)).text for s in range(30)]
    assert len({t.splitlines()[0] for t in texts}) >= 5
    assert all("120 dollars" in t and "9 dollars" in t for t in texts)


async def test_statement_turn_is_acknowledged_briefly() -> None:
    sim = SimBackend()
    for s in range(20):
        c = await sim.complete([U("The weight for module M3 is 300 grams; the cost for module M3 is 40 dollars.")], model="sim-generalist", sample=s)
        assert c.text.startswith("Noted") and 10 <= c.output_tokens <= 25 and "Answer:" not in c.text


# ---------------------------------------------------------------------------- routing


ROUTER = (
    "You are the supervisor. The agents are:\n"
    "- sim-retriever: looks up and recalls stated facts\n"
    "- sim-calculator: arithmetic, calculation, aggregation of totals\n"
    "- sim-reasoner: multi-step deduction and logic, verification of claims\n"
    "- sim-generalist: a general assistant\n"
    "Reply with the name of one agent only."
)


async def test_routing_names_a_listed_agent_matching_the_question() -> None:
    sim = SimBackend()
    cases = {
        "What is the refund limit for order A17?": "sim-retriever",
        "What is the total refund limit across order A17, order B22 and order E30?": "sim-calculator",
        "What is the discount rate for the tier of the customer for order A17?": "sim-reasoner",
    }
    for q, best in cases.items():
        picks = []
        for s in range(100):
            c = await sim.complete([Message(role="system", content=ROUTER), U(q)], model="sim-generalist", sample=s)
            m = re.fullmatch(r"Agent: (\S+)", c.text)
            assert m and c.output_tokens <= 5
            picks.append(m.group(1))
        assert set(picks) <= {"sim-retriever", "sim-calculator", "sim-reasoner", "sim-generalist"}
        assert picks.count(best) >= 90


async def test_routing_errs_more_on_long_prompts() -> None:
    p = PROFILES["default"]
    assert p.routing_error(500) < p.routing_error(6000) <= p.route_err_max
    assert PROFILES["no-penalty"].routing_error(500) == PROFILES["no-penalty"].routing_error(20000)
    sim = SimBackend()
    long_msgs = [Message(role="system", content=ROUTER), U(filler(8000)), U("What is the refund limit for order A17?")]
    picks = [(await sim.complete(long_msgs, model="sim-generalist", sample=s)).text for s in range(200)]
    wrong = 1 - picks.count("Agent: sim-retriever") / 200
    assert abs(wrong - p.routing_error(count_message_tokens(m.content for m in long_msgs))) < 0.08


# ---------------------------------------------------------------------------- tokens and time


async def test_virtual_latency_formula_is_exact() -> None:
    prof = PROFILES["default"]
    msgs = [U(FACTS), U("What is the refund limit for order A17?")]
    c = await SimBackend().complete(msgs, model="sim-retriever")
    assert c.prompt_tokens == count_message_tokens(m.content for m in msgs)
    assert c.output_tokens == count_tokens(c.text)
    assert c.latency_s == prof.ttft_s + c.prompt_tokens / prof.prefill_tok_s + c.output_tokens / prof.decode_tok_s
    assert c.model == "sim-retriever"
    short = await SimBackend().complete(msgs, model="sim-retriever", max_tokens=6)
    assert short.output_tokens == 6 and c.text.startswith(short.text)


async def test_real_clock_queues_beyond_the_slots() -> None:
    prof = SimProfile(name="tiny", ttft_s=1.0, prefill_tok_s=1e9, decode_tok_s=1e9, slots=2)
    sim = SimBackend(profile=prof, clock="real", time_scale=0.05)
    msgs = [U("What is the refund limit for order A17?")]
    t0 = time.perf_counter()
    await sim.complete(msgs, model="sim-retriever")
    single = time.perf_counter() - t0
    t0 = time.perf_counter()
    results = await asyncio.gather(*(sim.complete(msgs, model="sim-retriever", sample=s) for s in range(4)))
    four = time.perf_counter() - t0
    assert 1.7 <= four / single <= 2.6
    assert max(r.latency_s for r in results) > 1.8  # the queued calls report their wait, in model seconds


async def test_a_question_it_cannot_read_gets_i_dont_know_not_an_acknowledgement() -> None:
    sim = SimBackend(seed=0)
    c = await sim.complete([U("The refund limit for order A17 is 120 dollars. How is the weather in Paris?")],
                           model="sim-retriever")
    assert c.text.splitlines()[-1] == "Answer: I don't know" and not c.text.startswith("Noted")
    from rapo.consensus import ballot, extract_answer

    assert ballot(extract_answer(c.text)) == ""  # an abstention casts no vote
    ack = await sim.complete([U("The refund limit for order A17 is 120 dollars.")], model="sim-retriever")
    assert ack.text.startswith("Noted")


async def _slips(profile: str, n: int = 300) -> tuple[int, int]:
    """(questions where two agents both slipped, of those the ones with the same wrong value)."""
    sim = SimBackend(profile=profile, seed=4, skills={"sim-a": {"arithmetic": 0.7}, "sim-b": {"arithmetic": 0.7}})
    both = same = 0
    for i in range(n):
        facts = f"The refund limit for order A{10 + i % 80} is {100 + i} dollars."
        q = f"What is the refund limit for order A{10 + i % 80} multiplied by 3?"
        a = answer_of((await sim.complete([Message(role="system", content="You are A."), U(f"{facts} {q}")],
                                          model="sim-a")).text)
        b = answer_of((await sim.complete([Message(role="system", content="You are B, another agent."),
                                           U(f"{facts} {q}")], model="sim-b")).text)
        right = f"{3 * (100 + i)} dollars"
        if a != right and b != right:
            both += 1
            same += a == b
    return both, same


async def test_correlated_profile_makes_agents_share_their_mistakes() -> None:
    assert PROFILES["correlated"].error_correlation == 0.5
    both_ind, same_ind = await _slips("default")
    both_cor, same_cor = await _slips("correlated")
    # independent: P(both slip) ~ 0.09 and almost never the same number; correlated: far more often both,
    # and then usually with the same value
    assert both_ind < 45 and same_ind <= 2
    assert both_cor > both_ind + 15 and same_cor >= 0.5 * both_cor
