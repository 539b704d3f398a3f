"""The conversation generator and the controlled language it writes."""

from __future__ import annotations

from collections import Counter
from functools import lru_cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rapo.bench.generator import Conversation, generate
from rapo.bench.language import (
    ATTRIBUTES,
    KINDS,
    SCENARIOS,
    entity_display,
    join_statements,
    named_entity,
    normalise_answer,
    parse_question,
    parse_statements,
    render_statement,
)
from rapo.types import RapoError


@lru_cache(maxsize=None)
def _convs(n: int, seed: int = 0) -> tuple[Conversation, ...]:
    return tuple(generate(n, seed=seed))


def _questions(convs: tuple[Conversation, ...]):  # type: ignore[no-untyped-def]
    for c in convs:
        for t in c.turns:
            if t.question is not None:
                yield c, t, t.question


# ---------------------------------------------------------------------------- determinism and shape


def test_same_seed_gives_byte_identical_json() -> None:
    a = [c.model_dump_json() for c in generate(80, seed=7)]
    b = [c.model_dump_json() for c in generate(80, seed=7)]
    assert a == b


def test_different_seeds_differ() -> None:
    a = generate(20, seed=1)
    b = generate(20, seed=2)
    assert sum(x.turns[0].text != y.turns[0].text for x, y in zip(a, b)) >= 18


def test_transitions_spread_evenly_and_scenarios_round_robin() -> None:
    convs = generate(100, seed=0, transitions=(1, 50))
    lengths = [len(c.turns) for c in convs]
    assert lengths == [1 + i % 50 for i in range(100)]
    assert Counter(lengths) == {t: 2 for t in range(1, 51)}
    assert [c.scenario for c in convs[:3]] == list(SCENARIOS)
    assert all(t.index == i + 1 for c in convs for i, t in enumerate(c.turns))
    assert convs[5].user_texts() == [t.text for t in convs[5].turns]
    other = generate(12, seed=0, transitions=(5, 8), scenarios=["collaborative-design"])
    assert [len(c.turns) for c in other] == [5, 6, 7, 8] * 3
    assert {c.scenario for c in other} == {"collaborative-design"}


@pytest.mark.parametrize(
    "kwargs",
    [{"transitions": (0, 5)}, {"transitions": (6, 5)}, {"scenarios": ["space-travel"]}, {"n_conversations": -1}],
)
def test_bad_arguments_raise_rapo_error(kwargs: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises(RapoError):
        generate(**{"n_conversations": 3, **kwargs})


def test_every_conversation_asks_and_about_a_third_of_later_turns_are_questions() -> None:
    convs = _convs(200)
    assert all(any(t.question for t in c.turns) for c in convs)
    later = [t for c in convs for t in c.turns if t.index > 1]
    share = sum(t.question is not None for t in later) / len(later)
    assert 0.33 <= share <= 0.45
    one_turn = [c for c in convs if len(c.turns) == 1]
    for c in one_turn:
        q = c.turns[0].question
        assert q is not None and c.turns[0].text.endswith(q.text) and parse_statements(c.turns[0].text)


def test_all_question_types_occur_in_fair_shares() -> None:
    types = Counter(q.type for _, _, q in _questions(_convs(200)))
    total = sum(types.values())
    assert set(types) == {"lookup", "arithmetic", "comparison", "aggregation", "deduction", "verification"}
    assert all(n / total >= 0.07 for n in types.values()), types


# ---------------------------------------------------------------------------- ground truth


def _latest_before(conv: Conversation, turn_index: int) -> dict[tuple[str, str], tuple[str, str, int]]:
    """Latest (value, sentence, turn) per subject over turns 1..turn_index, re-read from the text."""
    latest: dict[tuple[str, str], tuple[str, str, int]] = {}
    for t in conv.turns[:turn_index]:
        for s in parse_statements(t.text):
            latest[(s.attr, s.entity)] = (s.value, s.text, t.index)
    return latest


def test_needed_sentences_are_in_earlier_turns_and_are_the_latest_statement() -> None:
    checked = 0
    for conv, turn, q in _questions(_convs(200)):
        latest = _latest_before(conv, turn.index)
        assert q.needed
        for n in q.needed:
            assert n.turn <= turn.index
            assert n.sentence in conv.turns[n.turn - 1].text
            assert latest[(n.attr, n.entity)] == (n.value, n.sentence, n.turn)
            assert n.key == f"{n.attr}|{n.entity}"
            checked += 1
    assert checked > 1000


def _num(v: str) -> int:
    return int(v.split(" ", 1)[0])


def _expected(q_text: str, latest: dict[tuple[str, str], tuple[str, str, int]]) -> str:
    """The answer recomputed here, from the re-read latest values, without rapo's solver."""
    pq = parse_question(q_text)
    assert pq is not None
    val = {k: v[0] for k, v in latest.items()}
    if pq.type == "lookup":
        return normalise_answer(val[pq.subjects[0]])
    if pq.type == "deduction":
        entity = pq.subjects[0][1]
        value = ""
        for i, attr in enumerate(pq.chain):
            if i:
                prev = ATTRIBUTES[pq.chain[i - 1]]
                entity = named_entity(value, prev.target) if prev.kind == "name" else value.lower()
            value = val[(attr, entity)]
        return normalise_answer(value)
    if pq.type == "verification":
        return "yes" if normalise_answer(val[pq.subjects[0]]) == normalise_answer(pq.claimed or "") else "no"
    nums = [_num(val[s]) for s in pq.subjects]
    unit = val[pq.subjects[0]].split(" ", 1)[1]
    if pq.type == "arithmetic":
        result = {"plus": lambda: nums[0] + nums[1], "minus": lambda: nums[0] - nums[1], "times": lambda: nums[0] * (pq.constant or 0)}[
            pq.operator or ""
        ]()
        return f"{result} {unit}"
    if pq.operator == "total":
        return f"{sum(nums)} {unit}"
    assert len(set(nums)) == len(nums), "comparisons and aggregations must have no ties"
    pick = max(nums) if pq.operator in ("higher", "largest") else min(nums)
    return normalise_answer(entity_display(pq.subjects[nums.index(pick)][1]))


def test_answers_recomputed_independently_match() -> None:
    n = 0
    for conv, turn, q in _questions(_convs(120, seed=3)):
        latest = _latest_before(conv, turn.index)
        assert _expected(q.text, latest) == q.answer, q.text
        assert q.answer == normalise_answer(q.answer)
        n += 1
    assert n > 400


def test_minus_results_are_positive_and_references_state_the_answer() -> None:
    for _, _, q in _questions(_convs(200)):
        if q.type == "arithmetic":
            assert _num(q.answer) > 0
        assert q.answer in normalise_answer(q.reference)
        if q.type == "verification":
            assert q.reference.lower().startswith(q.answer)


def test_parse_question_round_trips_every_generated_question() -> None:
    for _, turn, q in _questions(_convs(200)):
        pq = parse_question(turn.text)
        assert pq is not None, turn.text
        assert pq.type == q.type, turn.text
        needed = [(n.attr, n.entity) for n in q.needed]
        if q.type == "deduction":
            assert pq.subjects[0] == needed[0]
            assert list(pq.chain) == [a for a, _ in needed]
        else:
            assert set(pq.subjects) == set(needed), turn.text


def test_question_turns_hold_no_statements() -> None:
    for _, turn, _q in _questions(_convs(200)):
        if turn.index > 1:
            assert parse_statements(turn.text) == []


def test_dependency_distances_spread_to_the_first_turn() -> None:
    convs = _convs(200)
    for c in convs:
        if len(c.turns) >= 10:
            needs_first = any(n.turn == 1 for t in c.turns if t.question for n in t.question.needed)
            assert needs_first, c.id
    distances = [t.index - n.turn for c in convs for t in c.turns if t.question for n in t.question.needed]
    assert max(distances) >= 45
    hist = Counter(min(d // 10, 4) for d in distances)
    assert all(hist[b] >= 30 for b in range(5)), hist


def test_distractors_and_updates_occur() -> None:
    convs = _convs(100)
    updates = sum(s.update for c in convs for t in c.turns for s in parse_statements(t.text))
    assert updates > 200
    transposed = 0
    for c in convs:
        ids = {e for t in c.turns for s in parse_statements(t.text) for e in [s.entity] if e.split()[0] in KINDS}
        digits = {(e.split()[0], e.split()[1][0], e.split()[1][1:]) for e in ids}
        transposed += sum(
            (k, l, d[::-1]) in digits or (k, l, str(int(d) + 1)) in digits for k, l, d in digits if len(d) >= 2
        )
    assert transposed > 50
    superseded_claims = sum(
        1
        for c in convs
        for t in c.turns
        if t.question and t.question.type == "verification" and t.question.answer == "no"
    )
    assert superseded_claims > 20


# ---------------------------------------------------------------------------- the language itself


_all_attrs = sorted(ATTRIBUTES)


@st.composite
def _statement(draw: st.DrawFn) -> tuple[str, str, str, str, bool]:
    attr = ATTRIBUTES[draw(st.sampled_from(_all_attrs))]
    kind = KINDS[attr.owner]
    if kind.named:
        entity = named_entity(draw(st.sampled_from(kind.names)), kind.noun)
    else:
        entity = f"{kind.noun} {draw(st.sampled_from(kind.letters)).lower()}{draw(st.integers(1, 999))}"
    if attr.kind == "number":
        value = f"{draw(st.integers(0, 99999))} {attr.unit}"
    elif attr.kind == "name":
        value = draw(st.sampled_from(KINDS[attr.target].names))
    else:
        target = KINDS[attr.target]
        value = f"{target.noun} {draw(st.sampled_from(target.letters))}{draw(st.integers(1, 999))}"
    update = draw(st.booleans())
    return attr.name, entity, value, render_statement(attr.name, entity, value, draw(st.integers(0, 3)), update=update, old=value), update


@given(st.lists(_statement(), min_size=1, max_size=4), st.lists(st.sampled_from([" ", "; ", ", and "]), min_size=3, max_size=3))
@settings(max_examples=150, deadline=None)
def test_every_template_parses_back(stmts: list[tuple[str, str, str, str, bool]], seps: list[str]) -> None:
    text = join_statements([s[3] for s in stmts], seps[: len(stmts) - 1])
    parsed = parse_statements(text)
    assert [(p.attr, p.entity, p.value, p.update) for p in parsed] == [(a, e, v, u) for a, e, v, _, u in stmts]
    for p in parsed:
        assert text[p.pos : p.pos + len(p.text)] == p.text


def test_questions_never_parse_as_statements() -> None:
    text = "Is it true that the refund limit for order A17 is 120 dollars? Can you confirm that A17's refund limit is 120 dollars?"
    assert parse_statements(text) == []
    q = parse_question(text)
    assert q is not None and q.type == "verification" and q.claimed == "120 dollars"


def test_statements_survive_prompt_decoration() -> None:
    text = "Known facts:\n- [turn 3] The refund limit for order A17 is 120 dollars\n* Update: A17's refund limit has changed to 150 dollars."
    got = [(s.attr, s.entity, s.value) for s in parse_statements(text)]
    assert got == [("refund limit", "order a17", "120 dollars"), ("refund limit", "order a17", "150 dollars")]


@pytest.mark.parametrize("seed", [1, 2, 3, 7, 11])
def test_other_seeds_generate_self_consistent_text(seed):
    # The generator re-parses every turn it writes and raises if the parser reads it differently
    # (seed 1 once produced "module Q1000", an identifier past three digits).
    convs = generate(300, seed=seed)
    assert len(convs) == 300 and all(c.turns[-1].question is not None for c in convs)


def test_indices_pick_the_same_conversations_as_the_full_set() -> None:
    full = generate(30, seed=3, transitions=(2, 9))
    picked = generate(30, seed=3, transitions=(2, 9), indices=[29, 0, 7])
    assert [c.model_dump() if hasattr(c, "model_dump") else c for c in picked] == \
        [c.model_dump() if hasattr(c, "model_dump") else c for c in (full[29], full[0], full[7])]
    with pytest.raises(RapoError, match="indices"):
        generate(30, indices=[30])
