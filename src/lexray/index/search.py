"""Queries against an index: embed an image or a text with the index's model, look up the other side."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lexray.index.config import Modality
from lexray.index.model import Embedder, ImageInput, load_model
from lexray.index.reader import ImageRecord, RetrievalIndex

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Hit:
    """One search result."""

    rank: int  # 1-based position
    score: float  # cosine similarity of query and result
    study_id: str  # the study the result belongs to
    modality: Modality  # the side that was searched: "text" (a report) or "image" (one film)
    image: ImageRecord | None = None  # the matched image for image-side results


@dataclass(frozen=True)
class SearchResult:
    """Hits for one query and where the time went."""

    hits: list[Hit]  # best first
    embed_ms: float  # time spent embedding the query
    search_ms: float  # time spent in FAISS


class Searcher:
    """An index together with the model that embeds queries for it."""

    def __init__(self, index: RetrievalIndex, model: Embedder) -> None:
        if int(model.embed_dim) != index.embed_dim:
            raise ValueError(f"model width {model.embed_dim} != index width {index.embed_dim}")
        self.index = index
        self.model = model

    @classmethod
    def open(cls, path: str | Path, *, check_fingerprint: bool = True) -> Searcher:
        """Load the index at ``path`` and the model its reference names."""
        index = RetrievalIndex.load(path)
        return cls(index, load_model(index.model_ref, check_fingerprint=check_fingerprint))

    def search_vector(self, query: np.ndarray, target: Modality, k: int) -> list[Hit]:
        """Hits on the ``target`` side for one (D,) query vector."""
        scores, ids = self.index.search(target, query.reshape(1, -1), k)
        hits = []
        for score, row in zip(scores[0], ids[0], strict=True):
            if row < 0:  # FAISS pads with -1 when fewer than k results exist
                continue
            row = int(row)
            image = self.index.image(row) if target == "image" else None
            hits.append(Hit(len(hits) + 1, float(score), self.index.study_id_of(target, row), target, image))
        return hits

    def _timed(self, embed: Callable[[], np.ndarray], target: Modality, k: int) -> SearchResult:
        """Embed the query with ``embed`` and search ``target``, timing both steps."""
        t0 = time.perf_counter()
        q = embed()  # (1, D)
        t1 = time.perf_counter()
        hits = self.search_vector(np.asarray(q, dtype=np.float32)[0], target, k)
        t2 = time.perf_counter()
        return SearchResult(hits, (t1 - t0) * 1e3, (t2 - t1) * 1e3)

    def by_image(self, image: ImageInput, k: int = 5, target: Modality = "text") -> SearchResult:
        """Search with an image (pixels (H, W) in [0, 1] or a file path); reports by default."""
        return self._timed(lambda: self.model.embed_images([image], batch_size=1), target, k)

    def by_text(self, text: str, k: int = 5, target: Modality = "image") -> SearchResult:
        """Search with a report-like text; images by default."""
        if not text.strip():
            raise ValueError("the query text is empty")
        return self._timed(lambda: self.model.embed_texts([text], batch_size=1), target, k)
