"""Retrieval index: embeddings of a manifest's images and reports, FAISS structures and metadata on disk.

``Reject`` is the data stage's reject record (one type for the whole project): the index fills ``record``
with the study id and ``reason`` with a code of :mod:`lexray.index._layout`.
"""

from lexray.data.study import Reject
from lexray.index._layout import FORMAT_VERSION, IndexBusyError, IndexFormatError
from lexray.index.config import FaissConfig, IndexConfig
from lexray.index.model import DEFAULT_MODEL_CLASS, Embedder, ModelLoadError, ModelRef, load_model, make_ref
from lexray.index.reader import ImageRecord, RetrievalIndex
from lexray.index.search import Hit, Searcher, SearchResult
from lexray.index.store import BuildReport, add_to_index, build_index

__all__ = [
    "DEFAULT_MODEL_CLASS",
    "FORMAT_VERSION",
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
