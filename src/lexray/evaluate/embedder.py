"""The embedding protocol evaluation needs from a model (``lexray.clip.DualEncoder`` implements it)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class EmbeddingModel(Protocol):
    """Embeds radiographs and report texts into one space; both return L2-normalised float32 arrays."""

    def embed_images(self, images: Sequence[Any], batch_size: int) -> np.ndarray:
        """(N, D) embeddings of images (file paths or pixel arrays)."""
        ...

    def embed_texts(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        """(N, D) embeddings of report texts."""
        ...
