"""Configuration of index building (``lexray index build --config ... --set a.b=c``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from lexray.data.study import TextField
from lexray.index.model import DEFAULT_MODEL_CLASS

IndexKind = Literal["flat", "hnsw", "ivfpq"]
Modality = Literal["image", "text"]


@dataclass(frozen=True)
class FaissConfig:
    """Which FAISS index answers queries, and its parameters (inner product on L2-normalised vectors)."""

    kind: IndexKind = "flat"  # "flat" exact search; "hnsw" graph search; "ivfpq" compressed, for huge corpora
    hnsw_m: int = 32  # HNSW: neighbours per node (memory and recall grow with it)
    hnsw_ef_construction: int = 100  # HNSW: build candidate list; at 1M vectors 40 capped recall@10 near 0.85
    hnsw_ef_search: int = 128  # HNSW: per-query candidate list (1M x 256: recall@10 0.99, p50 0.3 ms)
    ivf_nlist: int = 1024  # IVF-PQ: number of coarse cells (capped at n/39 for small corpora)
    ivf_nprobe: int = 16  # IVF-PQ: cells visited per query
    pq_m: int = 32  # IVF-PQ: sub-quantisers; must divide the embedding width
    pq_nbits: int = 8  # IVF-PQ: bits per sub-quantiser code
    recall_queries: int = (
        200  # stored vectors used as queries to measure recall@10 of approximate kinds vs exact
    )
    threads: int = 0  # FAISS OpenMP threads (0 = FAISS default)


@dataclass(frozen=True)
class IndexConfig:
    """Everything ``lexray index build`` needs besides the model run and the manifest."""

    modalities: tuple[Modality, ...] = ("image", "text")  # which sides to embed: images, report texts or both
    model_class: str = DEFAULT_MODEL_CLASS  # "module:Class" that loads the run directory (from_pretrained)
    batch_size: int = 32  # items per embed_* call
    chunk_size: int = 512  # items per on-disk chunk; an interrupted build resumes from the last whole chunk
    image_root: str = ""  # base for relative image paths ("" = the manifest's folder)
    text_field: TextField = "report_text"  # Study text embedded (see lexray.data.study.TextField)
    faiss: FaissConfig = FaissConfig()  # the search structure
    keep_versions: int = 1  # older committed versions kept beside the current one (0 = only current)
