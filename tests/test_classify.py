"""Requirement classifier: accuracy on held-out everyday requests, and a valid distribution."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from rapo.bench.generator import generate
from rapo.classify import DEFAULT_PROTOTYPES, RequirementClassifier
from rapo.embed import HashingEmbedder
from rapo.types import DEFAULT_REASONING_TYPES, RapoError

DATA = yaml.safe_load((Path(__file__).parent / "data" / "requirements.yaml").read_text())
CLF = RequirementClassifier(HashingEmbedder())


def test_labelled_set_is_big_varied_and_held_out() -> None:
    assert set(DATA) == set(DEFAULT_REASONING_TYPES)
    assert all(len(v) >= 10 for v in DATA.values())
    texts = [t for v in DATA.values() for t in v]
    assert len(texts) >= 80 and all(isinstance(t, str) for t in texts)
    protos = {p.lower() for v in DEFAULT_PROTOTYPES.values() for p in v}
    assert not protos & {t.lower() for t in texts}


def test_accuracy_on_held_out_requests() -> None:
    texts = [t for v in DATA.values() for t in v]
    gold = [k for k, v in DATA.items() for _ in v]
    probs = CLF.classify_many(texts)
    pred = [CLF.types[i] for i in probs.argmax(axis=1)]
    acc = float(np.mean([p == g for p, g in zip(pred, gold)]))
    if acc < 0.85:
        confusion = Counter((g, p) for g, p in zip(gold, pred) if g != p)
        misses = "\n".join(
            f"  {g:>13} -> {p:<13} {t}" for t, g, p in zip(texts, gold, pred) if g != p
        )
        pytest.fail(f"accuracy {acc:.3f} < 0.85\nconfusions: {dict(confusion)}\n{misses}")


@pytest.mark.parametrize(
    "text, label",
    [
        ("What is the refund limit for order A17?", "lookup"),
        ("What is the refund limit for order A17 minus the shipping fee for order B22?", "arithmetic"),
        ("Which is lower: the cost of component K4 or the cost of component K5?", "comparison"),
        ("What is the smallest credit score among applicant P1, applicant P2 and applicant P3?", "aggregation"),
        ("What is the interest rate for the risk band of the applicant for loan L40?", "deduction"),
        ("Is it true that the weight of module M3 is 40 grams?", "verification"),
        ("Plan the next three steps for shipping order A17.", "planning"),
        ("Summarise what we know about loan L40.", "summarisation"),
    ],
)
def test_benchmark_forms(text: str, label: str) -> None:
    assert CLF.label(text) == label


def test_distribution_is_soft_and_batch_matches_single() -> None:
    texts = ["Which is higher, A17's limit or B22's?", "Sum up the meeting", "hello"]
    batch = CLF.classify_many(texts)
    assert batch.shape == (3, len(DEFAULT_REASONING_TYPES))
    np.testing.assert_allclose(batch, np.stack([CLF.classify(t) for t in texts]), atol=1e-12)
    # a plain greeting carries no evidence: no type gets near-certainty
    assert batch[2].max() < 0.6
    assert CLF.classify_many([]).shape == (0, len(DEFAULT_REASONING_TYPES))


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_distribution_sums_to_one_and_is_non_negative(text: str) -> None:
    p = CLF.classify(text)
    assert p.shape == (len(DEFAULT_REASONING_TYPES),)
    assert np.all(p >= 0) and np.all(np.isfinite(p))
    assert abs(float(p.sum()) - 1.0) < 1e-9


def test_custom_types_and_prototypes() -> None:
    clf = RequirementClassifier(
        HashingEmbedder(),
        types=("lookup", "translation"),
        prototypes={"translation": ["Translate this into French.", "How do you say hello in Spanish?"]},
    )
    assert clf.label("Please translate the following sentence into French") == "translation"
    assert clf.label("What is the refund limit for order A17?") == "lookup"
    with pytest.raises(RapoError, match="no prototype sentences"):
        RequirementClassifier(HashingEmbedder(), types=("lookup", "poetry"))
    with pytest.raises(RapoError, match="not one of the types"):
        RequirementClassifier(HashingEmbedder(), prototypes={"poetry": ["a poem"]})
    with pytest.raises(RapoError, match="temperature"):
        RequirementClassifier(HashingEmbedder(), temperature=0)


def _cue_scores_by_plain_regex(clf: RequirementClassifier, text: str) -> list[float]:
    """What the cue scores are by definition: every case-insensitive cue run on the text as written."""
    return [sum(w for rx, w in cues if rx.search(text)) for cues in clf._cues]


_BENCH_TEXTS = [t for c in generate(40, seed=4) for t in c.user_texts()]


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.sampled_from(_BENCH_TEXTS),
                 st.text(alphabet="abcdefghilmnoprstuwxyz ABCDTW?.,0123456789'%$-", max_size=80),
                 st.text(max_size=40)))
def test_fast_cue_scoring_equals_running_every_cue_on_the_text(text: str) -> None:
    # ASCII text takes the lowercase, prefiltered path; it must score exactly as the plain regexes do.
    assert CLF._cue_scores([text])[0].tolist() == _cue_scores_by_plain_regex(CLF, text)
