"""On-disk cache of frozen text-tower features (the LLM2CLIP trick).

With the text tower frozen, a report's features never change, so they are computed once and read back
for every later step, epoch and run. Entries are keyed by the text encoder's ``fingerprint`` (its
weights, pooling, instruction, max length) and the SHA-256 of the exact text: a different model or a
single changed character is a miss, never a stale hit.

Layout: ``<root>/<fingerprint>/shard-<n>.npz`` holding ``keys`` (hex digests) and ``features``
(float32, un-normalised). New entries go to a new shard written atomically, so concurrent readers
never see half a file and nothing is rewritten.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def text_key(text: str) -> str:
    """SHA-256 hex digest of the exact text (UTF-8)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class TextFeatureCache:
    """Features of texts under one text-encoder fingerprint, in memory and on disk."""

    def __init__(self, root: str | Path, fingerprint: str, dim: int) -> None:
        """Open (or create) the cache for ``fingerprint`` under ``root``, loading every shard."""
        if not fingerprint:
            raise ValueError("a text feature cache needs the text encoder's fingerprint")
        self.directory = Path(root) / fingerprint
        self.fingerprint = fingerprint
        self.dim = dim
        self._rows: dict[str, int] = {}
        self._chunks: list[np.ndarray] = []
        self._matrix = np.zeros((0, dim), dtype=np.float32)
        self.hits = 0
        self.misses = 0
        self._load()

    def _load(self) -> None:
        if not self.directory.is_dir():
            return
        for shard in sorted(self.directory.glob("shard-*.npz")):
            with np.load(shard) as data:
                keys, feats = data["keys"], data["features"]
            if feats.shape[1] != self.dim:
                raise ValueError(f"{shard}: features of size {feats.shape[1]}, the encoder gives {self.dim}")
            self._add(list(keys), feats)
        log.info("text feature cache %s: %d entries", self.directory, len(self._rows))

    def _add(self, keys: Sequence[str], feats: np.ndarray) -> None:
        start = len(self._matrix) + sum(len(c) for c in self._chunks)
        fresh = [i for i, k in enumerate(keys) if k not in self._rows]
        for j, i in enumerate(fresh):
            self._rows[keys[i]] = start + j
        if fresh:
            self._chunks.append(np.asarray(feats[fresh], dtype=np.float32))

    def _consolidate(self) -> None:
        if self._chunks:
            self._matrix = np.concatenate([self._matrix, *self._chunks], axis=0)
            self._chunks = []

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, text: str) -> bool:
        return text_key(text) in self._rows

    def put(self, texts: Sequence[str], features: np.ndarray) -> None:
        """Store features (n, dim) of ``texts`` in memory and in a new shard on disk."""
        features = np.asarray(features, dtype=np.float32)
        if features.shape != (len(texts), self.dim):
            raise ValueError(f"expected features of shape {(len(texts), self.dim)}, got {features.shape}")
        keys = [text_key(t) for t in texts]
        new = [i for i, k in enumerate(keys) if k not in self._rows]
        if not new:
            return
        # Deduplicate within the call too: the first occurrence wins.
        seen: dict[str, int] = {}
        for i in new:
            seen.setdefault(keys[i], i)
        idx = list(seen.values())
        self.directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".shard-", suffix=".npz")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, keys=np.array([keys[i] for i in idx]), features=features[idx])
        n = len(list(self.directory.glob("shard-*.npz")))
        target = self.directory / f"shard-{n:06d}-{os.getpid()}-{keys[idx[0]][:8]}.npz"
        os.replace(tmp, target)
        self._add([keys[i] for i in idx], features[idx])

    def get(
        self,
        texts: Sequence[str],
        compute: Callable[[list[str]], np.ndarray] | None = None,
    ) -> np.ndarray:
        """Features (n, dim) of ``texts``; misses are computed with ``compute`` and stored.

        Raises:
            KeyError: a text is missing and no ``compute`` function was given.
        """
        keys = [text_key(t) for t in texts]
        missing = sorted({k: i for i, k in reversed(list(enumerate(keys))) if k not in self._rows}.values())
        self.misses += len(missing)
        self.hits += len(texts) - len(missing)
        if missing:
            if compute is None:
                raise KeyError(f"{len(missing)} texts are not in the cache {self.directory}")
            todo = [texts[i] for i in missing]
            self.put(todo, compute(todo))
        self._consolidate()
        return self._matrix[[self._rows[k] for k in keys]]
