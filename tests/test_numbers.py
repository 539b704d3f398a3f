"""Quantities in English text, and the corrections that name only a value."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rapo.embed import make_embedder
from rapo.memory import Memory
from rapo.numbers import find_quantities, same_quantity, words_to_number

_ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen " \
        "sixteen seventeen eighteen nineteen".split()
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()


def _say(n: int) -> str:
    """An English cardinal, written independently of the parser under test."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10 - 2] + ("-" + _ONES[n % 10] if n % 10 else "")
    if n < 1000:
        return _ONES[n // 100] + " hundred" + (" and " + _say(n % 100) if n % 100 else "")
    return _say(n // 1000) + " thousand" + (" " + _say(n % 1000) if n % 1000 else "")


@given(st.integers(min_value=0, max_value=999_999))
def test_every_cardinal_in_words_reads_as_its_number(n: int) -> None:
    assert words_to_number(_say(n)) == n
    (q,) = find_quantities(f"It comes to {_say(n)} points.")
    assert q.value == n and q.unit == "point"


@given(st.integers(min_value=0, max_value=10**9), st.sampled_from(["", "$"]))
def test_digits_with_separators_read_as_their_number(n: int, sign: str) -> None:
    (q,) = find_quantities(f"The total is {sign}{n:,}.")
    assert q.value == n and q.unit == ("dollar" if sign else None)


@pytest.mark.parametrize("text, value, unit", [
    ("$250k", 250_000, "dollar"),
    ("237 thousand dollars", 237_000, "dollar"),
    ("two hundred and thirty-six dollars", 236, "dollar"),
    ("12%", 12, "percent"),
    ("15 percent", 15, "percent"),
    ("3.5 hours", 3.5, "hour"),
])
def test_written_forms(text: str, value: float, unit: str) -> None:
    (q,) = find_quantities(f"It is {text} now.")
    assert (q.value, q.unit) == (value, unit)


def test_identifiers_and_word_parts_are_not_quantities() -> None:
    assert find_quantities("Order A17 and loan P152 for someone") == []
    assert words_to_number("five six") is None and words_to_number("twenty thirty") is None


def test_same_quantity_needs_the_same_unit_where_both_say_one() -> None:
    a, b, c = (find_quantities(t)[0] for t in ("150 dollars", "$150", "150 days"))
    bare = find_quantities("150")[0]
    assert same_quantity(a, b) and same_quantity(a, bare) and not same_quantity(a, c)


def _memory(*turns: str) -> Memory:
    m = Memory(make_embedder("hashing"))
    for i, t in enumerate(turns):
        m.add_turn(t, turn=i)
    return m


def test_a_correction_naming_only_the_old_value_updates_the_fact_that_held_it() -> None:
    m = _memory("The refund limit for order A17 is 120 dollars.", "The fee for order B2 is 7 dollars.",
                "Sorry, the 120 dollars should have been 150.")
    assert m.ledger.value("refund limit|a17") == "150 dollars"
    assert m.ledger.value("fee|b2") == "7 dollars"
    fact = m.ledger.get(m.ledger._current_by_key["refund limit|a17"])
    assert fact.text == "The refund limit for order A17 is 150 dollars."  # says what it is about
    assert fact.said == "Sorry, the 120 dollars should have been 150."
    items = m.select("What is the refund limit for order A17?")
    assert any("150 dollars" in i.text for i in items) and not any("120" in i.text for i in items)


def test_new_value_first_and_words_for_numbers() -> None:
    m = _memory("Order A9 has a return window of seventy-eight days.", "My error: it's 25 days, not 78 days.")
    (fact,) = m.ledger.current()
    assert fact.value == "25 days" and fact.text == "Order A9 has a return window of 25 days."


def test_an_ambiguous_or_subject_naming_sentence_is_not_read_as_a_value_correction() -> None:
    # two facts hold 120: the correction cannot be placed, so nothing changes
    m = _memory("The fee for B2 is 120 dollars.", "The fee for C3 is 120 dollars.", "No, the 120 dollars is 150.")
    assert m.ledger.value("fee|b2") == m.ledger.value("fee|c3") == "120 dollars"
    # a sentence that names its own subject keeps the rules' reading
    m = _memory("The fee for B2 is 120 dollars.", "The fee for C3 is 150 dollars, not 120 dollars.")
    assert m.ledger.value("fee|b2") == "120 dollars" and m.ledger.value("fee|c3") == "150 dollars"


def test_it_in_the_same_text_is_the_thing_named_before() -> None:
    m = _memory("Loan L196 asks for 9,162 dollars. It was filed by applicant P28.")
    texts = {f.text for f in m.ledger.current()}
    assert "L196 was filed by applicant P28." in texts
    assert any(f.entity_ids == ("l196",) and f.value == "applicant P28" for f in m.ledger.current())
    # across turns, a new statement about "it" is not guessed (only a correction of it is)
    m = _memory("Loan L196 asks for 9,162 dollars.", "It was filed by applicant P28.")
    assert all(f.value != "applicant P28" for f in m.ledger.current())


@given(st.lists(st.sampled_from(["order", "A17", "costs", "$250k", "twelve", "days", "and", "1,200", "3.5",
                                 "hundred", "B2", "the", "fee", "is", "not", "7%"]), max_size=12))
def test_the_cheap_precheck_never_hides_two_quantities(words: list[str]) -> None:
    from rapo.numbers import may_hold_two

    text = " ".join(words)
    if len(find_quantities(text)) >= 2:
        assert may_hold_two(text)
