"""Statement extraction: the benchmark's forms, everyday variations, and phrasing invariance."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rapo.extract import (
    STOP_ATTRIBUTE,
    TYPE_NOUNS,
    extract_statements,
    normalise_word,
    parse_subject,
)

NEW_FORMS = [
    "The refund limit for order A17 is 120 dollars.",
    "Order A17's refund limit is 120 dollars.",
    "For order A17, the refund limit is 120 dollars.",
    "Please note that the refund limit of order A17 is 120 dollars.",
]
UPDATE_FORMS = [
    "Correction: the refund limit for order A17 is now 150 dollars.",
    "Update: A17's refund limit has changed to 150 dollars.",
    "The refund limit for order A17 was changed to 150 dollars.",
    "Actually, order A17's refund limit is 150 dollars, not 120 dollars.",
]


def one(text: str):
    out = extract_statements(text)
    assert len(out) == 1, (text, out)
    return out[0]


@pytest.mark.parametrize("text", NEW_FORMS)
def test_benchmark_new_fact_forms_share_one_key(text: str) -> None:
    s = one(text)
    assert s.key == "refund limit|a17"
    assert s.attribute == "refund limit"
    assert s.entity_ids == ("a17",)
    assert s.value == "120 dollars"
    assert s.value_ids == ()
    assert not s.is_update


@pytest.mark.parametrize("text", UPDATE_FORMS)
def test_benchmark_update_forms_are_updates_with_the_new_value(text: str) -> None:
    s = one(text)
    assert s.key == "refund limit|a17"
    assert s.value == "150 dollars"
    assert s.is_update


def test_links_carry_value_ids() -> None:
    a = one("The customer for order A17 is customer C5.")
    b = one("The tier for customer C5 is Gold.")
    c = one("The discount rate for the Gold tier is 15 percent.")
    assert (a.key, a.value, a.value_ids) == ("customer|a17", "customer C5", ("c5",))
    assert (b.key, b.value, b.value_ids) == ("tier|c5", "Gold", ("gold",))
    assert (c.key, c.value, c.value_ids) == ("discount rate|gold", "15 percent", ())
    # the same name, written the other way round, keys the same
    assert one("Gold tier's discount rate is 20 percent.").key == "discount rate|gold"


def test_multi_statement_turn_is_split_into_clauses() -> None:
    text = (
        "The refund limit for order A17 is 120 dollars; the shipping fee for order B22 is "
        "7 dollars, and the delivery time for order C30 is 4 days."
    )
    got = [(s.key, s.value) for s in extract_statements(text)]
    assert got == [
        ("refund limit|a17", "120 dollars"),
        ("shipping fee|b22", "7 dollars"),
        ("delivery time|c30", "4 days"),
    ]


def test_frame_and_pronoun_carry_the_entity_to_later_clauses() -> None:
    got = extract_statements(
        "For order A17, the refund limit is 120 dollars, and the shipping fee is 5 dollars."
    )
    assert [(s.key, s.value) for s in got] == [
        ("refund limit|a17", "120 dollars"),
        ("shipping fee|a17", "5 dollars"),
    ]
    got = extract_statements(
        "Hi! Just so you know, the credit score of applicant P12 is 710 points and its annual "
        "income is 85 thousand dollars."
    )
    assert [(s.key, s.value) for s in got] == [
        ("credit score|p12", "710 points"),
        ("annual income|p12", "85 thousand dollars"),
    ]


@pytest.mark.parametrize(
    "text, key, value, update",
    [
        ("Refund limit for A17: 150 dollars.", "refund limit|a17", "150 dollars", False),
        ("A17 refund limit = 150 dollars", "refund limit|a17", "150 dollars", False),
        ("The refund limits for order A17 are 150 dollars now.", "refund limit|a17", "150 dollars", True),
        ("The new refund limit for A17 is $1,500 (was $1,200).", "refund limit|a17", "$1,500", True),
        ("FYI the refund limit on order A17 was set to 90 dollars.", "refund limit|a17", "90 dollars", False),
        ("Heads up: order A17's refund limit has been raised to 200 dollars.", "refund limit|a17", "200 dollars", True),
        ("Correction. The weight of module M3 is 40 grams.", "weight|m3", "40 grams", True),
        ("By the way, the Steel grade's tolerance is 20 micrometres.", "tolerance|steel", "20 micrometres", False),
        ("The status of ticket 4411 is open.", "status|4411", "open", False),
        ("Our shipping policy is 30 days.", "shipping policy", "30 days", False),
        ("We changed the shipping fee for order B22 to 9 dollars.", "shipping fee|b22", "9 dollars", True),
        ("The shipping fee for order B22 went up to 9 dollars.", "shipping fee|b22", "9 dollars", True),
        ("Thanks! So, just to confirm, the power draw of module M3 is now 12 watts.", "power draw|m3", "12 watts", True),
        ("The approval limit for loan L40 equals 5000 dollars.", "approval limit|l40", "5000 dollars", False),
        ("the delivery time for order c30 is 4 days", "delivery time|c30", "4 days", False),
        ("Customer C5 is Gold.", "|c5", "Gold", False),
    ],
)
def test_everyday_variations(text: str, key: str, value: str, update: bool) -> None:
    s = one(text)
    assert (s.key, s.value, s.is_update) == (key, value, update)


@pytest.mark.parametrize(
    "text",
    [
        "What is the refund limit for order A17?",
        "Can you tell me the refund limit of order A17?",
        "Remind me: what is A17's refund limit?",
        "Is it true that the refund limit for order A17 is 120 dollars?",
        "Which is higher: the refund limit for order A17 or the refund limit for order B22?",
        "Please check whether the refund limit for order A17 is 120 dollars.",
        "If the refund limit for order A17 is 120 dollars, we can refund it.",
        "Tell me the refund limit for order A17",
        "The refund limit for order A17 is not 120 dollars.",
        "It is raining. Thanks for your help!",
        "",
        "   ",
    ],
)
def test_questions_requests_and_non_statements_yield_nothing(text: str) -> None:
    assert extract_statements(text) == []


def test_agent_reply_rationale_and_answer_line() -> None:
    reply = (
        "Since the customer for order A17 is customer C5, and C5's tier is Gold, the discount "
        "rate is 15 percent.\nAnswer: 15 percent"
    )
    got = [(s.key, s.value) for s in extract_statements(reply)]
    assert got == [
        ("customer|a17", "customer C5"),
        ("tier|c5", "Gold"),
        ("discount rate", "15 percent"),
    ]
    active = one("We changed the shipping fee for order B22 to 9 dollars.")
    assert active.text == "We changed the shipping fee for order B22 to 9 dollars."


def test_near_duplicates_keep_distinct_keys() -> None:
    keys = {
        one("The refund limit for order A17 is 120 dollars.").key,
        one("The refund limit for order A71 is 90 dollars.").key,
        one("The refund window for order A17 is 30 days.").key,
        one("The refund limit for order A18 is 60 dollars.").key,
    }
    assert keys == {"refund limit|a17", "refund limit|a71", "refund window|a17", "refund limit|a18"}


def test_parse_subject_orders_ids_and_drops_type_nouns() -> None:
    assert parse_subject("the refund limit shared by order B22 and order A17") == (
        "refund limit shared",
        ("a17", "b22"),
    )
    assert parse_subject("customer C5") == ("customer", ("c5",))


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_never_raises_on_arbitrary_text(text: str) -> None:
    out = extract_statements(text)
    for s in out:
        assert s.key and s.value
        assert s.key.split("|")[0] == s.attribute


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.text(alphabet="abcdefghijklmnopqrstuvwxyz .,;:?!'A17Is", max_size=40), max_size=5)
)
def test_never_raises_on_sentence_like_text(parts: list[str]) -> None:
    text = " is ".join(parts)
    assert isinstance(extract_statements(text), list)


_RESERVED = (
    STOP_ATTRIBUTE
    | TYPE_NOUNS
    | set(
        """is are was were now still set changed updated equals becomes will should has have been not
        and but while whereas so plus instead rather than no longer previously formerly down up
        from note update actually correction please also then first next finally lastly well okay
        hi hello hey thanks great good right yes sure fyi btw important reminder remember if when
        once unless whether list find check verify confirm compare plan draft write explain
        describe estimate sum total schedule outline review recap determine raised lowered reduced
        increased anymore effective""".split()
    )
)
attr_word = st.from_regex(r"[a-z]{3,9}", fullmatch=True).filter(lambda w: w not in _RESERVED)


@settings(max_examples=150, deadline=None)
@given(
    words=st.lists(attr_word, min_size=1, max_size=3),
    letter=st.sampled_from("ABCDEFGHJKLMNPQRSTUVWXYZ"),
    number=st.integers(1, 999),
    amount=st.integers(0, 99999),
    unit=st.sampled_from(["dollars", "percent", "days", "grams", "points", "watts"]),
)
def test_key_is_invariant_to_phrasing(
    words: list[str], letter: str, number: int, amount: int, unit: str
) -> None:
    attr = " ".join(words)
    ident = f"{letter}{number}"
    value = f"{amount} {unit}"
    forms = [
        f"The {attr} for order {ident} is {value}.",
        f"Order {ident}'s {attr} is {value}.",
        f"For order {ident}, the {attr} is {value}.",
        f"Please note that the {attr} of order {ident} is {value}.",
        f"Correction: the {attr} for order {ident} is now {value}.",
        f"Update: {ident}'s {attr} has changed to {value}.",
        f"The {attr} for order {ident} was changed to {value}.",
        f"Actually, order {ident}'s {attr} is {value}, not 1 {unit}.",
    ]
    expected = f"{' '.join(normalise_word(w) for w in words)}|{ident.lower()}"
    for text in forms:
        s = one(text)
        assert s.key == expected, text
        assert s.value == value, text
        assert s.entity_ids == (ident.lower(),)
