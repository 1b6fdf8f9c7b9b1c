"""The index tests' toy embedder, noting in ``$LEXRAY_TEST_EMBED_LOG/rank-R.txt`` how many items each
process embedded, so a launched build shows that every process took part."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from toy_embedder import ToyEmbedder

LOG_ENV = "LEXRAY_TEST_EMBED_LOG"


class RecordingEmbedder(ToyEmbedder):
    """:class:`ToyEmbedder` that writes one line per successful call: the modality and the item count."""

    def _note(self, modality: str, n: int) -> None:
        folder = os.environ.get(LOG_ENV)
        if folder:
            with open(Path(folder) / f"rank-{os.environ.get('RANK', '0')}.txt", "a") as fh:
                fh.write(f"{modality} {n}\n")

    def embed_texts(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        out = super().embed_texts(texts, batch_size)
        self._note("text", len(texts))
        return out

    def embed_images(self, images: Sequence[Any], batch_size: int = 32) -> np.ndarray:
        out = super().embed_images(images, batch_size)
        self._note("image", len(images))
        return out
