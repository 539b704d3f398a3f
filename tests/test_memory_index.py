"""The incremental BM25 index gives bm25s's scores (the field's BM25, which cannot add documents),
however the corpus arrived; the embedding index and rank fusion behave as stated."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rapo.embed import HashingEmbedder
from rapo.memory.index import EmbeddingIndex, LexicalIndex, analyse, fuse

bm25s = pytest.importorskip("bm25s")

WORDS = [f"w{i}" for i in range(12)]
docs_strategy = st.lists(st.lists(st.sampled_from(WORDS), min_size=1, max_size=12), min_size=1, max_size=25)


@settings(max_examples=60, deadline=None)
@given(docs=docs_strategy, query=st.lists(st.sampled_from(WORDS + ["absent"]), min_size=1, max_size=5),
       split=st.integers(min_value=0, max_value=25))
def test_scores_equal_bm25s_whether_added_at_once_or_in_turns(docs: list[list[str]], query: list[str], split: int) -> None:
    reference = bm25s.BM25(k1=1.5, b=0.75, method="lucene")
    reference.index(docs, show_progress=False)
    expected = reference.get_scores(query)
    index = LexicalIndex()
    cut = min(split, len(docs))
    index.add_terms(docs[:cut])  # a conversation's index grows turn by turn
    index.add_terms(docs[cut:])
    assert np.allclose(index.scores_of_terms(query), expected, rtol=1e-5, atol=1e-6)


def test_search_returns_matching_passages_best_first() -> None:
    index = LexicalIndex()
    index.add(["Order B22 ships in 3 days.", "The refund limit for order A17 is 120 dollars.", "Shipping is free."])
    ids, scores = index.search("When does order B22 ship?", k=5)
    assert ids.tolist()[0] == 0 and np.all(np.diff(scores) <= 0)
    assert 1 not in ids.tolist() or scores[ids.tolist().index(1)] < scores[0]
    assert analyse("Shipping ships shipped") == ["ship", "ship", "ship"]  # stemmed, so forms meet
    assert analyse("What is it?") == []  # function words carry no topic


def test_embedding_index_grows_and_scores_by_cosine() -> None:
    emb = HashingEmbedder()
    index = EmbeddingIndex(emb)
    texts = [f"note number {i} about topic {i % 3}" for i in range(40)]
    for t in texts:
        index.add([t])
    assert len(index) == 40
    q = "note number 7 about topic 1"
    assert np.allclose(index.scores(q), emb.embed(texts) @ emb.embed([q])[0], atol=1e-5)
    assert index.search(q, 1)[0].tolist() == [7]


def test_reciprocal_rank_fusion() -> None:
    fused = fuse([np.array([2, 0]), np.array([0, 1])], 3, weights=[1.0, 0.5], k0=60)
    assert fused[0] == pytest.approx(1 / 62 + 0.5 / 61)
    assert fused[2] == pytest.approx(1 / 61) and fused[1] == pytest.approx(0.5 / 62)
