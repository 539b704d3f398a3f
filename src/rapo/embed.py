"""Embedders: a numpy feature-hashing default and sentence-transformers as an option."""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from typing import Sequence

import numpy as np

_WORD = re.compile(r"[a-z0-9]+")


@lru_cache(maxsize=65536)
def _bucket(feature: str, dim: int) -> tuple[int, float]:
    digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
    h = int.from_bytes(digest, "little")
    return h % dim, (1.0 if (h >> 63) & 1 else -1.0)


class HashingEmbedder:
    """Signed feature hashing of word unigrams, bigrams and character trigrams, L2-normalised.

    Deterministic across processes (blake2b, not Python's salted hash), no model download, and
    fast enough to embed every fact and step of 1,000 conversations in seconds.
    """

    def __init__(self, dim: int = 384, char_ngrams: bool = True) -> None:
        self.dim = dim
        self.char_ngrams = char_ngrams
        self._cache: dict[str, np.ndarray] = {}

    def _features(self, text: str) -> list[tuple[str, float]]:
        words = _WORD.findall(text.lower())
        feats: list[tuple[str, float]] = [("w:" + w, 1.0) for w in words]
        feats += [("b:" + a + "_" + b, 0.7) for a, b in zip(words, words[1:])]
        if self.char_ngrams:
            for w in words:
                padded = f"#{w}#"
                feats += [("c:" + padded[i : i + 3], 0.3) for i in range(len(padded) - 2)]
        return feats

    def _one(self, text: str) -> np.ndarray:
        cached = self._cache.get(text)
        if cached is not None:
            return cached
        vec = np.zeros(self.dim, dtype=np.float32)
        feats = self._features(text)
        if feats:
            idx, sign = zip(*(_bucket(f, self.dim) for f, _ in feats))
            weights = np.fromiter((w for _, w in feats), dtype=np.float32, count=len(feats))
            np.add.at(vec, np.asarray(idx), np.asarray(sign, dtype=np.float32) * weights)
            norm = float(np.linalg.norm(vec))
            if norm > 0:
                vec /= norm
        if len(self._cache) < 200_000:
            self._cache[text] = vec
        return vec

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._one(t) for t in texts])


class SentenceTransformerEmbedder:
    """Real sentence embeddings (optional extra `embed`); loads from a local path or the HF cache."""

    def __init__(self, model: str = "sentence-transformers/all-MiniLM-L6-v2") -> None:
        try:
            from sentence_transformers import SentenceTransformer  # type: ignore[import-not-found]
        except ImportError as exc:  # pragma: no cover - depends on the extra
            from rapo.types import RapoError

            raise RapoError(
                "sentence embeddings need the optional extra: pip install 'rapo[embed]'"
            ) from exc
        self._model = SentenceTransformer(model)
        self.dim = int(self._model.get_sentence_embedding_dimension())

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = self._model.encode(list(texts), normalize_embeddings=True)
        return np.asarray(out, dtype=np.float32)


def make_embedder(spec: str = "hashing") -> HashingEmbedder | SentenceTransformerEmbedder:
    """`hashing`, `hashing:512`, or `st:<model name or path>`."""
    if spec.startswith("hashing"):
        _, _, dim = spec.partition(":")
        return HashingEmbedder(dim=int(dim) if dim else 384)
    if spec.startswith("st:"):
        return SentenceTransformerEmbedder(spec[3:])
    from rapo.types import RapoError

    raise RapoError(f"unknown embedder {spec!r}: use 'hashing', 'hashing:<dim>' or 'st:<model>'")
