"""A tiny deterministic embedder for evaluation tests: hashed bag of words, L2-normalised."""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence

import numpy as np
import pytest


class BagOfWordsEmbedder:
    """Embeds text (and "images" given as caption strings) as hashed word counts; fully deterministic."""

    def __init__(self, dim: int = 64) -> None:
        self.dim = dim

    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in re.findall(r"[a-z]+", str(t).lower()):
                out[i, zlib.crc32(w.encode()) % self.dim] += 1.0
        norm = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norm > 0, norm, 1.0)

    def embed_texts(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        return self._embed(texts)

    def embed_images(self, images: Sequence, batch_size: int = 32) -> np.ndarray:
        # A test "image" is a caption string, or a path to a .txt file holding one.
        return self._embed([open(p).read() if str(p).endswith(".txt") else p for p in images])


@pytest.fixture
def bow() -> BagOfWordsEmbedder:
    return BagOfWordsEmbedder()


class KeywordLabeler:
    """A stand-in for lexray's labeler: 'no X' -> negative, 'possible X' -> uncertain, 'X' -> positive."""

    TERMS = {"Edema": "edema", "Cardiomegaly": "cardiomegaly", "Pleural Effusion": "effusion"}

    class Result:
        def __init__(self, observations):
            self.observations = observations

    def __call__(self, text):
        t = text.lower()
        obs = {}
        for name, term in self.TERMS.items():
            if f"no {term}" in t:
                obs[name] = "negative"
            elif f"possible {term}" in t:
                obs[name] = "uncertain"
            elif term in t:
                obs[name] = "positive"
            else:
                obs[name] = "absent"
        return self.Result(obs)


@pytest.fixture
def keyword_labeler() -> KeywordLabeler:
    return KeywordLabeler()
