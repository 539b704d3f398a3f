"""The benchmark's ROUGE-L equals rouge-score's, and context loss reads the prompt as the simulator does."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rapo.bench.metrics import _lcs_length, context_lost, rouge_l, rouge_l_reference

WORDS = st.sampled_from(["the", "refund", "limit", "for", "order", "a17", "is", "150", "dollars", "answer", "no"])


def _lcs_table(a, b):
    t = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            t[i][j] = t[i - 1][j - 1] + 1 if a[i - 1] == b[j - 1] else max(t[i - 1][j], t[i][j - 1])
    return t[-1][-1]


@settings(max_examples=400, deadline=None)
@given(st.lists(WORDS, max_size=40), st.lists(WORDS, max_size=20))
def test_bit_parallel_lcs_equals_the_dynamic_programme(a, b):
    assert _lcs_length(a, b) == _lcs_table(a, b)


@settings(max_examples=300, deadline=None)
@given(st.lists(WORDS, max_size=40).map(" ".join), st.lists(WORDS, max_size=20).map(" ".join))
def test_rouge_l_equals_rouge_score(reply, reference):
    assert rouge_l(reply, reference) == pytest.approx(rouge_l_reference(reply, reference), abs=1e-12)


def test_rouge_l_on_a_real_reply():
    ref = "The refund limit for order A17 plus the shipping fee for order B22 is 162 dollars."
    rep = "The refund limit for order A17 is 150 dollars, and the shipping fee for order B22 is 12 dollars.\nAnswer: 162 dollars"
    assert rouge_l(rep, ref) == pytest.approx(rouge_l_reference(rep, ref), abs=1e-12)
    assert 0.5 < rouge_l(rep, ref) < 1.0 and rouge_l(ref, ref) == pytest.approx(1.0)


def test_context_loss_needs_the_current_value_in_the_prompt():
    class Need:
        key, value, entity = "refund limit|order a17", "150 dollars", "order a17"
        sentence = "The refund limit for order A17 is now 150 dollars."

    assert not context_lost(("Facts:\n- Correction: the refund limit for order A17 is now 150 dollars.",), [Need])
    assert context_lost(("- The refund limit for order A17 is 120 dollars.",), [Need])  # a superseded value
    assert context_lost(("- The refund limit for order A71 is 150 dollars.",), [Need])  # a near-duplicate key
    assert not context_lost(("A17: 150 dollars",), [Need])  # the value beside its subject, in any wording
    assert not context_lost(("x", "and The refund limit for order A17 is now 150 dollars. y"), [Need])  # as written
    assert context_lost(("order A17", "150 dollars"), [Need])  # subject and value apart: not the fact


def test_context_loss_reads_a_sentence_no_parser_knows():
    """A fact stated in words nobody's parser reads still counts when its sentence is in the prompt."""
    class Need:
        key, value, entity, written = "delivery time|order a17", "5 days", "order a17", "five days"
        sentence = "It ships in five days."

    assert not context_lost(("Order A17 is new. It ships in five days.",), [Need])
    assert not context_lost(("- order A17 delivery: five days",), [Need])  # the value as the sentence wrote it
    assert context_lost(("Order A17 is new.",), [Need])
