"""FAISS structures for L2-normalised vectors (inner product = cosine), and recall vs exact search."""

from __future__ import annotations

import logging

import faiss
import numpy as np

from lexray.errors import LexrayError
from lexray.index.config import FaissConfig

log = logging.getLogger(__name__)

# IVF training wants at least this many points per coarse cell (FAISS warns below it).
_MIN_POINTS_PER_CELL = 39


class IndexBuildError(LexrayError, ValueError):
    """The chosen FAISS structure cannot be built for these vectors (e.g. too few for IVF-PQ)."""


def set_threads(cfg: FaissConfig) -> None:
    """Apply the configured OpenMP thread count (0 keeps FAISS's default)."""
    if cfg.threads > 0:
        faiss.omp_set_num_threads(cfg.threads)


def build(vectors: np.ndarray, cfg: FaissConfig) -> faiss.Index:
    """A FAISS index over ``vectors`` (N, D) float32 of the configured kind, vectors added.

    Raises:
        IndexBuildError: IVF-PQ asked for with too few vectors or a width ``pq_m`` does not divide.
    """
    n, d = vectors.shape
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    set_threads(cfg)
    if cfg.kind == "flat":
        index: faiss.Index = faiss.IndexFlatIP(d)
    elif cfg.kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, cfg.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = cfg.hnsw_ef_construction
        index.hnsw.efSearch = cfg.hnsw_ef_search
    elif cfg.kind == "ivfpq":
        if d % cfg.pq_m:
            raise IndexBuildError(f"pq_m={cfg.pq_m} must divide the embedding width {d}; set faiss.pq_m")
        min_train = max(2**cfg.pq_nbits, _MIN_POINTS_PER_CELL)
        if n < min_train:
            raise IndexBuildError(
                f"IVF-PQ needs at least {min_train} vectors to train (have {n}); use faiss.kind=flat or hnsw"
            )
        nlist = max(1, min(cfg.ivf_nlist, n // _MIN_POINTS_PER_CELL))
        if nlist < cfg.ivf_nlist:
            log.info("IVF-PQ: %d vectors, using nlist=%d instead of %d", n, nlist, cfg.ivf_nlist)
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFPQ(quantizer, d, nlist, cfg.pq_m, cfg.pq_nbits, faiss.METRIC_INNER_PRODUCT)
        index.train(vectors)
        index.nprobe = min(cfg.ivf_nprobe, nlist)
    else:  # the config loader already restricts kind; this guards direct construction
        raise IndexBuildError(f"unknown FAISS kind {cfg.kind!r}; use flat, hnsw or ivfpq")
    if n:
        index.add(vectors)
    return index


def configure_search(index: faiss.Index, cfg: FaissConfig) -> None:
    """Set query-time parameters (efSearch, nprobe) on a loaded index; they are not all persisted."""
    if isinstance(index, faiss.IndexHNSW):
        index.hnsw.efSearch = cfg.hnsw_ef_search
    elif isinstance(index, faiss.IndexIVF):
        index.nprobe = min(cfg.ivf_nprobe, index.nlist)


def recall_at_k(approx_ids: np.ndarray, exact_ids: np.ndarray) -> float:
    """Mean |approx top-k ∩ exact top-k| / k over queries; both (Q, k) id arrays (-1 = no result)."""
    if approx_ids.shape != exact_ids.shape:
        raise ValueError(f"shape mismatch {approx_ids.shape} vs {exact_ids.shape}")
    q, k = exact_ids.shape
    if q == 0 or k == 0:
        return 1.0
    hits = 0
    for a, e in zip(approx_ids, exact_ids, strict=True):
        hits += len(set(a[a >= 0].tolist()) & set(e[e >= 0].tolist()))
    return hits / (q * k)


def measure_recall(
    index: faiss.Index, vectors: np.ndarray, n_queries: int, k: int = 10, seed: int = 0
) -> float | None:
    """recall@k of ``index`` against exact inner-product search, using stored vectors as queries.

    Each query is itself in the index and would be found trivially, so it is dropped from both result
    lists (k + 1 are fetched) and recall is measured on the remaining neighbours.

    Returns None for an exact (flat) index, where recall is 1 by construction.
    """
    if isinstance(index, faiss.IndexFlat) or len(vectors) < 2:
        return None
    k = min(k, len(vectors) - 1)
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(vectors), size=min(n_queries, len(vectors)), replace=False))
    base = np.ascontiguousarray(vectors, dtype=np.float32)  # no copy when already float32 C-ordered
    queries = np.ascontiguousarray(base[rows])  # (Q, D)
    _, exact_ids = faiss.knn(queries, base, k + 1, metric=faiss.METRIC_INNER_PRODUCT)
    _, approx_ids = index.search(queries, k + 1)

    def without_self(ids: np.ndarray) -> np.ndarray:
        out = np.full((len(ids), k), -1, dtype=np.int64)
        for i, (row, r) in enumerate(zip(ids, rows, strict=True)):
            kept = row[row != r][:k]
            out[i, : len(kept)] = kept
        return out

    return recall_at_k(without_self(approx_ids), without_self(exact_ids))
