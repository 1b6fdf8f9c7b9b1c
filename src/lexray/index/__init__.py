"""Retrieval index: embeddings of a manifest's images and reports, FAISS structures and metadata on disk."""

from lexray.index.config import FaissConfig, IndexConfig
from lexray.index.model import DEFAULT_MODEL_CLASS, Embedder, ModelLoadError, ModelRef, load_model, make_ref
from lexray.index.search import Hit, Searcher, SearchResult
from lexray.index.store import (
    BuildReport,
    ImageRecord,
    IndexBusyError,
    IndexFormatError,
    Reject,
    RetrievalIndex,
    add_to_index,
    build_index,
)

__all__ = [
    "DEFAULT_MODEL_CLASS",
    "BuildReport",
    "Embedder",
    "FaissConfig",
    "Hit",
    "ImageRecord",
    "IndexBusyError",
    "IndexConfig",
    "IndexFormatError",
    "ModelLoadError",
    "ModelRef",
    "Reject",
    "RetrievalIndex",
    "SearchResult",
    "Searcher",
    "add_to_index",
    "build_index",
    "load_model",
    "make_ref",
]
