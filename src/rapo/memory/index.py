"""Retrieval over passages: one protocol, a lexical (BM25) and an embedding index behind it, and
reciprocal-rank fusion of their rankings.

Both indexes grow with each passage; nothing is re-indexed when a turn arrives. bm25s, the field's
fast BM25, builds a static index (it cannot add documents: xhluca/bm25s#5, #98, #129), so the lexical
index keeps raw term frequencies and applies BM25's formula at query time; `tests/test_memory_index.py`
checks its scores against bm25s's on random corpora.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from rapo.types import Embedder

__all__ = ["Retriever", "LexicalIndex", "EmbeddingIndex", "analyse", "fuse"]

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
# English function words (the closed classes), which carry no topic: dropping them keeps "What did
# she say about it?" from matching every passage through "what", "she" and "it".
STOPWORDS = frozenset(
    """a an the and or but nor of to in on at for with by from as into onto over under about above below
    between through during before after again further then once than too very so such no not only own
    same is are was were be been being am do does did doing done have has had having can could would
    should will shall may might must i me my mine myself you your yours yourself he him his himself she
    her hers herself it its itself we us our ours ourselves they them their theirs themselves this that
    these those what which who whom whose when where why how there here all any both each few more most
    other some just also if because while until up down out off s t d ll m re ve i'm it's that's""".split()
)

try:  # Snowball stemming (PyStemmer): "ships", "shipped" and "shipping" meet at "ship"
    import Stemmer as _Stemmer

    _STEM = _Stemmer.Stemmer("english").stemWord
except ImportError:  # pragma: no cover - PyStemmer is a core dependency; plain words still work
    def _STEM(word: str) -> str:
        return word


@lru_cache(maxsize=262_144)
def _term(word: str) -> str:
    return _STEM(word.split("'", 1)[0])


def analyse(text: str) -> list[str]:
    """The terms BM25 counts: lowercased words without function words, stemmed."""
    return [_term(w) for w in _WORD.findall(text.lower()) if w not in STOPWORDS]


@runtime_checkable
class Retriever(Protocol):
    """An index over passages numbered 0..n-1 in the order they were added."""

    def add(self, texts: Sequence[str]) -> None: ...

    def search(self, query: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Up to k passage numbers, best first, with their scores (only passages that match at all)."""
        ...

    def __len__(self) -> int: ...


def _grow(a: np.ndarray, need: int) -> np.ndarray:
    if need <= a.shape[0]:
        return a
    out = np.zeros((max(need, a.shape[0] + a.shape[0] // 2 + 4),) + a.shape[1:], dtype=a.dtype)
    out[: a.shape[0]] = a
    return out


def _top(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    hits = np.flatnonzero(scores > 0)
    if hits.size > k:
        hits = hits[np.argpartition(-scores[hits], k - 1)[:k]]
    hits = hits[np.lexsort((hits, -scores[hits]))]  # best first; ties: the earlier passage
    return hits, scores[hits]


class LexicalIndex:
    """Okapi BM25 in Lucene's form (bm25s's default): idf = ln(1 + (N - df + .5) / (df + .5)),
    tf part tf / (tf + k1 (1 - b + b dl / avgdl)). Postings are appended per passage."""

    def __init__(self, k1: float = 1.5, b: float = 0.75) -> None:
        self.k1, self.b = k1, b
        self._postings: dict[str, tuple[list[int], list[int]]] = {}
        self._arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # postings as arrays, until they grow
        self._length = np.zeros(0, dtype=np.float64)
        self._n = 0
        self._total = 0.0

    def __len__(self) -> int:
        return self._n

    def add(self, texts: Sequence[str]) -> None:
        self.add_terms([analyse(t) for t in texts])

    def add_terms(self, docs: Sequence[Sequence[str]]) -> None:
        self._length = _grow(self._length, self._n + len(docs))
        for terms in docs:
            doc = self._n
            counts: dict[str, int] = {}
            for t in terms:
                counts[t] = counts.get(t, 0) + 1
            for t, c in counts.items():
                ids, tfs = self._postings.setdefault(t, ([], []))
                ids.append(doc)
                tfs.append(c)
            self._length[doc] = len(terms)
            self._total += len(terms)
            self._n += 1

    def scores(self, query: str) -> np.ndarray:
        return self.scores_of_terms(analyse(query))

    def scores_of_terms(self, terms: Sequence[str]) -> np.ndarray:
        n = self._n
        out = np.zeros(n, dtype=np.float64)
        if n == 0:
            return out
        avg = self._total / n if self._total else 1.0
        norm = self.k1 * (1.0 - self.b + self.b * self._length[:n] / avg)
        counts: dict[str, int] = {}
        for t in terms:  # a word asked twice counts twice, as in bm25s
            counts[t] = counts.get(t, 0) + 1
        for t, times in counts.items():
            posting = self._postings.get(t)
            if posting is None:
                continue
            cached = self._arrays.get(t)
            if cached is None or cached[0].size != len(posting[0]):
                cached = self._arrays[t] = (np.asarray(posting[0], dtype=np.int64),
                                            np.asarray(posting[1], dtype=np.float64))
            ids, tf = cached
            idf = math.log(1.0 + (n - ids.size + 0.5) / (ids.size + 0.5))
            out[ids] += times * idf * tf / (tf + norm[ids])
        return out

    def search(self, query: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        return _top(self.scores(query), k)


class EmbeddingIndex:
    """Cosine similarity to the passages' unit vectors (rows of one matrix, grown by half)."""

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder
        self._vectors = np.zeros((0, embedder.dim), dtype=np.float32)
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def add(self, texts: Sequence[str]) -> None:
        if texts:
            self.add_vectors(self.embedder.embed(list(texts)))

    def add_vectors(self, vectors: np.ndarray) -> None:
        self._vectors = _grow(self._vectors, self._n + len(vectors))
        self._vectors[self._n : self._n + len(vectors)] = vectors
        self._n += len(vectors)

    def vectors(self) -> np.ndarray:
        return self._vectors[: self._n]

    def scores(self, query: str) -> np.ndarray:
        return self.scores_of_vector(self.embedder.embed([query])[0])

    def scores_of_vector(self, q: np.ndarray) -> np.ndarray:
        return (self._vectors[: self._n] @ q).astype(np.float64)

    def search(self, query: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        return _top(self.scores(query), k)


def fuse(rankings: Sequence[np.ndarray], n: int, weights: Sequence[float] | None = None, k0: float = 60.0) -> np.ndarray:
    """Reciprocal-rank fusion (Cormack et al. 2009): each ranking (passage numbers, best first) adds
    w / (k0 + rank) to its passages. Ranks, not scores, so BM25 and cosine need no common scale."""
    out = np.zeros(n, dtype=np.float64)
    for r, ranking in enumerate(rankings):
        w = 1.0 if weights is None else float(weights[r])
        if len(ranking):
            out[ranking] += w / (k0 + np.arange(1, len(ranking) + 1))
    return out
