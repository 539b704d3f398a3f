"""Facts ledger: supersession, provenance rules, and what `select` puts in a prompt."""

from __future__ import annotations

import pytest

from rapo.embed import HashingEmbedder
from rapo.ledger import Ledger
from rapo.tokens import count_tokens
from rapo.types import RapoError

ATTRS = [
    ("shipping fee", "dollars"),
    ("delivery time", "days"),
    ("item count", "items"),
    ("credit score", "points"),
    ("weight", "grams"),
    ("power draw", "watts"),
    ("tolerance", "micrometres"),
    ("refund window", "days"),
]
KINDS = ["order", "applicant", "module", "component"]


def filler(i: int) -> str:
    attr, unit = ATTRS[i % len(ATTRS)]
    kind = KINDS[(i // len(ATTRS)) % len(KINDS)]
    return f"The {attr} for {kind} {'BDEFGH'[i % 6]}{100 + i} is {10 + i} {unit}."


def values(selection) -> list[str]:
    return [s.fact.value for s in selection]


@pytest.fixture()
def ledger() -> Ledger:
    return Ledger(HashingEmbedder())


def test_far_back_fact_is_named_and_selection_fits_a_budget_the_transcript_exceeds(
    ledger: Ledger,
) -> None:
    transcript = ["The refund limit for order A17 is 120 dollars."]
    ledger.add_text(transcript[0], turn=0, source="user")
    for t in range(1, 41):
        text = filler(2 * t) + " " + filler(2 * t + 1)
        transcript.append(text)
        ledger.add_text(text, turn=t, source="user")
    assert len(ledger) == 81
    question = "What is the refund limit for order A17?"
    budget = 120
    assert count_tokens(" ".join(transcript)) > budget
    sel = ledger.select(question, budget_tokens=budget, k_relevant=8)
    named = [s for s in sel if s.reason == "named"]
    assert [(s.fact.key, s.fact.value, s.fact.turn) for s in named] == [
        ("refund limit|a17", "120 dollars", 0)
    ]
    assert sum(count_tokens(s.fact.text) for s in sel) <= budget
    assert 1 < len(sel) <= 9  # some relevant extras, at most k_relevant of them
    assert [s.fact.turn for s in sel] == sorted(s.fact.turn for s in sel)


def test_supersession_keeps_history_and_the_near_duplicate(ledger: Ledger) -> None:
    ledger.add_text("The refund limit for order A17 is 120 dollars.", turn=0, source="user")
    ledger.add_text("The refund limit for order A71 is 90 dollars.", turn=1, source="user")
    for t in range(2, 30):
        ledger.add_text(filler(t), turn=t, source="user")
    [upd] = ledger.add_text(
        "Correction: A17's refund limit is now 150 dollars.", turn=30, source="user"
    )
    old, new = ledger.history("refund limit|a17")
    assert (old.value, new.value) == ("120 dollars", "150 dollars")
    assert old.superseded_by == new.id and new.supersedes == old.id and new is upd
    assert not old.current and new.current
    [a71] = ledger.history("refund limit|a71")
    assert a71.current and a71.value == "90 dollars" and a71.supersedes is None

    sel = ledger.select("What is the refund limit for order A17?", budget_tokens=200)
    assert "150 dollars" in values(sel)
    assert "120 dollars" not in values(sel)
    assert [s.fact.value for s in sel if s.reason == "named"] == ["150 dollars"]
    current = {f.key: f.value for f in ledger.current()}
    assert current["refund limit|a17"] == "150 dollars"
    assert current["refund limit|a71"] == "90 dollars"


def test_three_hop_chain_is_selected_as_named_then_dependencies(ledger: Ledger) -> None:
    ledger.add_text("The customer for order A17 is customer C5.", turn=0, source="user")
    for t in range(1, 15):
        ledger.add_text(filler(t), turn=t, source="user")
    ledger.add_text("The tier for customer C5 is Gold.", turn=15, source="user")
    ledger.add_text("The tier for customer C6 is Silver.", turn=16, source="user")
    ledger.add_text("The discount rate for the Silver tier is 5 percent.", turn=17, source="user")
    ledger.add_text("The discount rate for the Gold tier is 15 percent.", turn=18, source="user")
    ledger.add_text("The customer for order A71 is customer C6.", turn=19, source="user")
    sel = ledger.select(
        "What is the discount rate for the tier of the customer for order A17?",
        budget_tokens=0,
        k_relevant=0,
    )
    got = [(s.fact.key, s.fact.value, s.reason) for s in sel]
    assert got == [
        ("customer|a17", "customer C5", "named"),
        ("tier|c5", "Gold", "dependency"),
        ("discount rate|gold", "15 percent", "dependency"),
    ]
    # a user who skips the chain wording still gets the chain through the link facts
    sel = ledger.select("What discount rate applies to order A17?", budget_tokens=0, k_relevant=0)
    assert "15 percent" in values(sel) and "5 percent" not in values(sel)


def test_questions_naming_several_subjects(ledger: Ledger) -> None:
    for i, (ident, v) in enumerate([("A17", 100), ("B22", 200), ("C30", 110)]):
        ledger.add_text(f"The refund limit for order {ident} is {v} dollars.", turn=i, source="user")
        ledger.add_text(f"The refund window for order {ident} is {v // 10} days.", turn=i, source="user")
    ledger.add_text("The shipping fee for order B22 is 7 dollars.", turn=5, source="user")
    agg = ledger.select(
        "What is the total refund limit across order A17, order B22 and order C30?",
        budget_tokens=0,
        k_relevant=0,
    )
    assert sorted(values(agg)) == ["100 dollars", "110 dollars", "200 dollars"]
    cmp_ = ledger.select(
        "Which is higher, A17's refund limit or B22's?", budget_tokens=0, k_relevant=0
    )
    assert sorted(values(cmp_)) == ["100 dollars", "200 dollars"]
    ari = ledger.select(
        "What is the refund limit for order A17 plus the shipping fee for order B22?",
        budget_tokens=0,
        k_relevant=0,
    )
    assert sorted(values(ari)) == ["100 dollars", "7 dollars"]


def test_agent_facts_never_override_user_facts(ledger: Ledger) -> None:
    [user] = ledger.add_text("The refund limit for order A17 is 120 dollars.", turn=0, source="user")
    [claim] = ledger.add_text(
        "The refund limit for order A17 is 200 dollars.", turn=1, source="solver", origin="agent"
    )
    assert claim.origin == "agent" and not claim.current and claim.superseded_by == user.id
    assert user.current and ledger.value("refund limit|a17") == "120 dollars"
    n = len(ledger)
    [same] = ledger.add_text(
        "So the refund limit for order A17 is 120 dollars.", turn=2, source="solver", origin="agent"
    )
    assert same is user and len(ledger) == n  # a restatement adds nothing

    # agents may correct agents; a user then overrides both
    [a1] = ledger.add_text("The total for order A17 is 300 dollars.", turn=3, source="x", origin="agent")
    [a2] = ledger.add_text("The total for order A17 is 310 dollars.", turn=4, source="y", origin="agent")
    assert a1.superseded_by == a2.id and a2.current
    u = ledger.add("the total for order A17", "305 dollars", turn=5, source="api")
    assert a2.superseded_by == u.id and u.origin == "api" and u.key == "total|a17"
    assert ledger.value("total|a17") == "305 dollars"

    sel = ledger.select(
        "What is the total for order A17?", budget_tokens=100, exclude_origin={"agent"}
    )
    assert all(s.fact.origin != "agent" for s in sel)
    assert "305 dollars" in values(sel)


def test_structured_add_by_key_or_subject_and_errors(ledger: Ledger) -> None:
    f1 = ledger.add("refund limit|A17", "120 dollars", turn=0, source="crm")
    f2 = ledger.add("A17's refund limit", "130 dollars", turn=1, source="crm")
    assert f1.key == f2.key == "refund limit|a17"
    assert f2.supersedes == f1.id and f1.superseded_by == f2.id
    assert f1.text == "The refund limit for a17 is 120 dollars."
    assert ledger.get(f2.id) is f2
    with pytest.raises(RapoError, match="no fact with id"):
        ledger.get(99)
    with pytest.raises(RapoError, match="subject"):
        ledger.add("  ", "1", turn=0, source="x")
    with pytest.raises(RapoError, match="value"):
        ledger.add("the refund limit for order A17", " ", turn=0, source="x")
    with pytest.raises(RapoError, match="budget_tokens"):
        ledger.select("anything", budget_tokens=-1)


def test_named_facts_exceed_budget_but_relevant_ones_respect_it(ledger: Ledger) -> None:
    ledger.add_text("The refund limit for order A17 is 120 dollars.", turn=0, source="user")
    for t in range(1, 20):
        ledger.add_text(f"The refund limit for order Z{t} is {t} dollars.", turn=t, source="user")
    sel = ledger.select("What is the refund limit for order A17?", budget_tokens=5)
    assert [(s.reason, s.fact.value) for s in sel] == [("named", "120 dollars")]
    sel = ledger.select("What is the refund limit for order A17?", budget_tokens=40, k_relevant=2)
    relevant = [s for s in sel if s.reason == "relevant"]
    assert len(relevant) == 2
    assert sum(count_tokens(s.fact.text) for s in sel) <= 40
    scores = [s.score for s in relevant]
    others = {f.id for f in ledger.current()} - {s.fact.id for s in sel}
    assert all(ledger._emb[o] @ ledger.embedder.embed(["What is the refund limit for order A17?"])[0]
               <= min(scores) + 1e-6 for o in others)


def test_ten_thousand_facts(ledger: Ledger) -> None:
    for i in range(10_000):
        ledger.add_text(filler(i), turn=i, source="user")
    ledger.add_text("The refund limit for order A17 is 120 dollars.", turn=10_000, source="user")
    assert len(ledger) == 10_001
    assert 10_001 <= ledger._emb.shape[0] <= 1.5 * 10_001  # grown by half each time, never per fact
    sel = ledger.select("What is the refund limit for order A17?", budget_tokens=150)
    assert [s.fact.value for s in sel if s.reason == "named"] == ["120 dollars"]
    assert sum(count_tokens(s.fact.text) for s in sel) <= 150
    assert len(sel) <= 9
