"""A tiny deterministic embedder for index and service tests (no torch, no weights).

Texts: a sum of per-word random vectors (seeded by the word's hash), so equal texts give equal vectors
and texts sharing words are close. Images: the 8x8 thumbnail of the grey-scale pixels through a fixed
random projection. Both L2-normalised float32. ``from_pretrained(dir)`` reads ``toy.json`` so the index
can store and reload it like a real run directory.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from lexray.data.images import load_radiograph


def _word_vector(word: str, dim: int) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(word.encode()).digest()[:8], "little")
    return np.random.default_rng(seed).standard_normal(dim).astype(np.float32)


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


class ToyEmbedder:
    """Deterministic stand-in for lexray.clip.DualEncoder's embedding protocol."""

    def __init__(self, dim: int = 32) -> None:
        self.dim = dim
        self._proj = np.random.default_rng(1234).standard_normal((64, dim)).astype(np.float32)  # (64, D)
        self.calls = {"image": 0, "text": 0}

    @property
    def embed_dim(self) -> int:
        return self.dim

    @classmethod
    def from_pretrained(cls, path: str | Path) -> ToyEmbedder:
        return cls(**json.loads((Path(path) / "toy.json").read_text()))

    def save_pretrained(self, path: str | Path) -> Path:
        p = Path(path)
        p.mkdir(parents=True, exist_ok=True)
        (p / "toy.json").write_text(json.dumps({"dim": self.dim}))
        return p

    def embed_texts(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        self.calls["text"] += 1
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            words = re.findall(r"[a-z]+", t.lower()) or ["<empty>"]
            out[i] = sum(_word_vector(w, self.dim) for w in words)
        return _unit(out)

    def embed_images(self, images: Sequence[np.ndarray | str | Path], batch_size: int = 32) -> np.ndarray:
        self.calls["image"] += 1
        out = np.zeros((len(images), self.dim), dtype=np.float32)
        for i, im in enumerate(images):
            pixels = im if isinstance(im, np.ndarray) else load_radiograph(im).pixels  # (H, W) in [0, 1]
            thumb = PILImage.fromarray((np.clip(pixels, 0, 1) * 255).astype(np.uint8)).resize((8, 8))
            x = np.asarray(thumb, dtype=np.float32).reshape(-1) / 255.0 - 0.5  # (64,)
            out[i] = x @ self._proj + 1e-3
        return _unit(out)


class BrokenEmbedder(ToyEmbedder):
    """The toy embedder on a broken device: every text fails to embed."""

    def embed_texts(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        raise RuntimeError("CUDA error: device lost (simulated)")
