"""Answer parsing, normalisation, the capability-weighted vote and early-stopping fan-out."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rapo.consensus import (
    FanOutResult,
    consensus_weights,
    extract_answer,
    fan_out,
    normalise_answer,
    vote,
)
from rapo.embed import HashingEmbedder
from rapo.theory import lipschitz_constant
from rapo.types import RapoError

# --- extract_answer ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The limit was raised.\nAnswer: 150 dollars", "150 dollars"),
        ("answer: first\nthinking...\nANSWER:   second  \n\n", "second"),
        ("Rationale.\n**Answer:** order A17\nHope this helps.", "order A17"),
        ("no label here\n\nlast line  \n   \n", "last line"),
        ("The answer: is not a label line", "The answer: is not a label line"),
        ("", ""),
    ],
)
def test_extract_answer(text: str, expected: str) -> None:
    assert extract_answer(text) == expected


# --- normalise_answer --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("$150", "150 dollars"),
        ("150.0", "150"),
        ("1,200", "1200"),
        ("$1,200.50", "1200.5 dollars"),
        ("Yes.", "yes"),
        ("yes, it is", "yes"),
        ("No, it isn't.", "no"),
        ("no it is not", "no"),
        ("True", "yes"),
        ("The Gold tier", "gold tier"),
        ("  Order   A17. ", "order a17"),
        ("12%", "12 percent"),
        ("**150 Dollars**", "150 dollars"),
        ("-0.0", "0"),
        ("-3.50", "-3.5"),
        (".5", "0.5"),
        ("A", "a"),  # a lone multiple-choice letter is not an article
        ("no limit applies", "no limit applies"),
    ],
)
def test_normalise_answer_examples(raw: str, expected: str) -> None:
    assert normalise_answer(raw) == expected


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=40))
def test_normalise_is_idempotent_on_any_text(raw: str) -> None:
    once = normalise_answer(raw)
    assert normalise_answer(once) == once


_ANSWERISH = st.lists(
    st.sampled_from(
        ["$", "1,200", "150.0", "the", "a", "Yes", "no", ",", ".", " ", "%", "-", "Dollars", "order",
         "A17", "it is", "**", "0.50", ".5", "'", "usd", "True"]
    ),
    max_size=8,
).map("".join)


@settings(max_examples=400, deadline=None)
@given(_ANSWERISH)
def test_normalise_is_idempotent_on_answer_like_text(raw: str) -> None:
    once = normalise_answer(raw)
    assert normalise_answer(once) == once


@settings(max_examples=300, deadline=None)
@given(st.integers(-10**9, 10**9), st.integers(0, 99))
def test_numeric_forms_of_the_same_number_agree(whole: int, cents: int) -> None:
    value = Decimal(whole) + (Decimal(cents) / 100 if whole >= 0 else -Decimal(cents) / 100)
    plain = format(value, "f")
    grouped = f"{value:,.2f}"
    forms = {plain, f"{value:.2f}", f"{value:.4f}", grouped, f"{grouped}."}
    assert len({normalise_answer(f) for f in forms}) == 1
    money = {f"{plain} dollars", f"{grouped} Dollars.", f"{plain} USD"}
    if value >= 0:
        money |= {f"${plain}", f"${grouped}", f"The ${grouped}"}
    assert {normalise_answer(f) for f in money} == {normalise_answer(plain) + " dollars"}


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10**6))
def test_different_numbers_stay_different(n: int) -> None:
    assert normalise_answer(f"{n:,}") != normalise_answer(f"{n + 1:,}")
    assert normalise_answer(str(n)) == str(n)


# --- consensus_weights and vote ------------------------------------------------------------------


def test_consensus_weights_formula() -> None:
    vectors = np.array([[1.0, 0.0], [1.0, 1.0], [-1.0, 0.0], [0.0, 0.0]])
    caps = np.array([0.25, 1.0, 0.5, 0.9])
    w = consensus_weights(vectors, caps)
    assert w[0, 1] == pytest.approx(np.sqrt(0.25) * (1 / np.sqrt(2)))
    assert w[1, 0] == w[0, 1]
    assert w[0, 2] == 0.0  # opposite answers do not pull (cos clipped at 0)
    assert np.all(w[3] == 0.0)  # an empty embedding has no similarity
    assert np.all(np.diag(w) == 0.0)
    with pytest.raises(RapoError, match="one entry per answer"):
        consensus_weights(vectors, caps[:2])
    with pytest.raises(RapoError, match=">= 0"):
        consensus_weights(vectors, -caps)


def _embed(values: list[str]) -> np.ndarray:
    return HashingEmbedder(dim=128).embed(values)


def test_vote_majority_cluster_wins_across_spellings() -> None:
    values = ["$150", "150 dollars", "120 dollars", "150.00 Dollars."]
    caps = np.array([0.6, 0.6, 0.9, 0.5])
    res = vote(values, _embed(values), caps)
    assert res.value == "150 dollars"
    assert res.winner == 0  # the most capable member of the winning cluster (first on ties)
    assert res.support == pytest.approx({"150 dollars": 1.7, "120 dollars": 0.9})
    assert res.agreement == pytest.approx(1.7 / 2.6)
    assert res.clusters == {"150 dollars": [0, 1, 3], "120 dollars": [2]}
    assert res.dynamics.converged
    w = consensus_weights(_embed(values), caps)
    assert res.dynamics.L == pytest.approx(lipschitz_constant(w, 1.0))
    assert res.dynamics.alpha < 1 / (2 * res.dynamics.L)


def test_vote_capability_breaks_a_one_one_tie() -> None:
    values = ["yes", "No."]
    res = vote(values, _embed(values), np.array([0.55, 0.8]))
    assert (res.value, res.winner) == ("no", 1)
    res = vote(values, _embed(values), np.array([0.8, 0.55]))
    assert (res.value, res.winner) == ("yes", 0)


@pytest.mark.parametrize("third_near, expected", [("b", "b"), ("a", "a")])
def test_vote_equal_support_goes_to_cluster_nearest_the_consensus(
    third_near: str, expected: str
) -> None:
    # "a" (one agent, capability 1) and "b" (two agents, 0.5 each) tie on support; a weak third
    # answer "c" sits near one of them, pulling the capability-weighted centroid its way.
    c_vec = [1.0, 0.1] if third_near == "b" else [0.1, 1.0]
    vectors = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 0.0], c_vec])
    res = vote(["a", "b", "b", "c"], vectors, np.array([1.0, 0.5, 0.5, 0.2]))
    assert res.support == pytest.approx({"a": 1.0, "b": 1.0, "c": 0.2})
    assert res.value == expected
    assert res.winner == {"a": 0, "b": 1}[expected]


def test_vote_full_tie_goes_to_lowest_index() -> None:
    res = vote(["y", "x"], np.array([[1.0, 0.0], [1.0, 0.0]]), np.array([1.0, 1.0]))
    assert (res.value, res.winner) == ("y", 0)


def test_vote_empty_answers_cannot_win_and_zero_capabilities_count_heads() -> None:
    values = ["", "", "42"]
    res = vote(values, _embed(values), np.array([0.9, 0.9, 0.1]))
    assert res.value == "42" and res.winner == 2
    assert res.agreement == pytest.approx(0.1 / 1.9)
    res = vote(["7", "7.0", "8"], _embed(["7", "7.0", "8"]), np.zeros(3))
    assert res.value == "7" and res.agreement == pytest.approx(2 / 3)


def test_vote_rejects_mismatched_inputs() -> None:
    with pytest.raises(RapoError, match="one row per answer"):
        vote(["a", "b"], np.zeros((3, 4)), np.ones(3))
    with pytest.raises(RapoError, match="at least one"):
        vote([], np.zeros((0, 4)), np.ones(0))


# --- fan_out -------------------------------------------------------------------------------------


@dataclass
class Reply:
    text: str
    latency: float


def _instant(text: str, latency: float):  # noqa: ANN202 - a call factory
    async def call() -> Reply:
        return Reply(text, latency)

    return call


async def _fan(calls, weights, threshold) -> FanOutResult[Reply]:  # noqa: ANN001
    return await fan_out(
        calls,
        value_of=lambda r: extract_answer(r.text),
        latency_of=lambda r: r.latency,
        weights=weights,
        threshold=threshold,
    )


async def test_fan_out_majority_cluster_wins() -> None:
    calls = [
        _instant("Answer: $150", 1.0),
        _instant("Answer: 120 dollars", 1.1),
        _instant("I think\nAnswer: 150 dollars", 1.2),
    ]
    res = await _fan(calls, [1.0, 1.0, 1.0], threshold=0.6)
    assert res.decided and res.value == "150 dollars"
    assert res.used == [0, 1, 2] and not res.stopped_early
    assert res.latency_s == pytest.approx(1.2)
    assert res.agreement == pytest.approx(2 / 3)


async def test_fan_out_early_stop_cancels_the_slow_call() -> None:
    cancelled = asyncio.Event()
    started = time.perf_counter()

    def sleeper(text: str, seconds: float):  # noqa: ANN202
        async def call() -> Reply:
            t0 = time.perf_counter()
            try:
                await asyncio.sleep(seconds)
            except asyncio.CancelledError:
                cancelled.set()
                raise
            return Reply(text, time.perf_counter() - t0)

        return call

    calls = [sleeper("Answer: 42", 0.05), sleeper("Answer: 41", 5.0), sleeper("Answer: 42.0", 0.1)]
    res = await _fan(calls, [1.0, 1.0, 1.0], threshold=0.6)
    wall = time.perf_counter() - started
    assert wall < 1.0
    assert cancelled.is_set()
    assert res.cancelled == [1] and res.results[1] is None
    assert res.stopped_early and res.value == "42" and res.used == [0, 2]
    assert 0.09 <= res.latency_s < 1.0


async def test_fan_out_orders_by_virtual_latency_not_completion() -> None:
    # All return at once; on the virtual timeline "b" reaches 2 of 4 votes at t = 2.0.
    calls = [
        _instant("Answer: a", 3.0),
        _instant("Answer: b", 1.0),
        _instant("Answer: b", 2.0),
        _instant("Answer: c", 0.5),
    ]
    res = await _fan(calls, [1.0] * 4, threshold=0.5)
    assert res.decided and res.value == "b"
    assert res.latency_s == pytest.approx(2.0)
    assert res.used == [1, 2, 3]
    assert res.results[0] is None and res.results[2] is not None
    assert res.stopped_early and res.cancelled == []


async def test_fan_out_capability_weights_break_a_tie() -> None:
    calls = [_instant("Answer: No", 1.0), _instant("Answer: yes.", 2.0)]
    res = await _fan(calls, [0.6, 0.9], threshold=0.5)
    assert (res.value, res.latency_s, res.used) == ("yes", 2.0, [0, 1])
    res = await _fan(calls, [0.9, 0.6], threshold=0.5)
    assert (res.value, res.latency_s, res.used) == ("no", 1.0, [0])
    assert res.stopped_early


async def test_fan_out_without_agreement_waits_for_all() -> None:
    calls = [_instant("Answer: a", 0.3), _instant("Answer: b", 0.7), _instant("Answer: c", 0.5)]
    res = await _fan(calls, [1.0, 1.0, 1.0], threshold=0.5)
    assert not res.decided and not res.stopped_early
    assert res.used == [0, 1, 2] and res.latency_s == pytest.approx(0.7)
    assert res.value == "a"  # equal weight: the earliest on the timeline leads


async def test_fan_out_errors_count_as_no_vote() -> None:
    async def boom() -> Reply:
        raise ValueError("backend down")

    calls = [boom, _instant("Answer: 5", 1.0), _instant("Answer: 5", 2.0)]
    res = await _fan(calls, [1.0, 1.0, 1.0], threshold=0.6)
    assert res.errors == {0: "backend down"}
    assert res.value == "5" and res.used == [1, 2] and res.results[0] is None
    # the failed call's weight still counts in the total: 2 of 3 < 0.7
    res = await _fan(calls, [1.0, 1.0, 1.0], threshold=0.7)
    assert not res.decided and res.agreement == pytest.approx(2 / 3)


async def test_fan_out_all_failing_raises_the_first_exception() -> None:
    def failing(message: str, delay: float):  # noqa: ANN202
        async def call() -> Reply:
            await asyncio.sleep(delay)
            raise RuntimeError(message)

        return call

    with pytest.raises(RuntimeError, match="first"):
        await _fan([failing("first", 0.02), failing("second", 0.0)], [1.0, 1.0], threshold=0.5)


async def test_fan_out_validates_arguments() -> None:
    with pytest.raises(RapoError, match="at least one call"):
        await _fan([], [], threshold=0.5)
    with pytest.raises(RapoError, match="one per call"):
        await _fan([_instant("Answer: 1", 0.1)], [1.0, 2.0], threshold=0.5)
    with pytest.raises(RapoError, match="threshold"):
        await _fan([_instant("Answer: 1", 0.1)], [1.0], threshold=1.5)
