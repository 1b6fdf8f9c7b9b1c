"""Resumable embedding: items embedded in chunks saved under ``INDEX/.work`` as they finish.

Rerunning an interrupted build finds the chunks of the same job (same model, items and chunking) and
embeds only the missing or damaged ones. Within a chunk, :func:`lexray.embedding.embed_safely` decides
what a bad record is, as everywhere else in lexray: one bad record skips only itself.

Launched as several processes (a model that is a ``lexray.training.ShardedEmbedder``), the processes
embed whole missing chunks, one each per turn; the main process alone reads what is done, decides what
is left and writes every chunk, so a resumed multi-process build agrees on its plan by construction. A
chunk is embedded exactly as one process would (the same batches), so the result equals a one-process
build row for row.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from lexray.embedding import embed_safely
from lexray.index._layout import WORK_DIR, IndexFormatError
from lexray.index.config import IndexConfig, Modality
from lexray.index.model import Embedder, ModelRef

if TYPE_CHECKING:
    from lexray.training.sharded import MapTasks, R

log = logging.getLogger(__name__)


def lead_build(model: Any, plan: Callable[[Embedder, MapTasks], R]) -> R:
    """``plan(local_model, map_tasks)`` on the main process, its :class:`ChunkTask` embedded by every process.

    ``model`` is a :class:`lexray.training.ShardedEmbedder` under a launch (every process calls this; all
    return the plan's result or raise its error), else a plain model this process works with alone.
    """
    # Function-level: the index (read by the service) loads no torch until a build runs.
    from lexray.training.sharded import ShardedEmbedder

    crew = model if isinstance(model, ShardedEmbedder) else ShardedEmbedder(model, 0, 1)
    return crew.lead(lambda map_tasks: plan(crew.model, map_tasks), lambda task: embed_task(crew.model, task))


@dataclass(frozen=True)
class ChunkTask:
    """One chunk to embed, as the main process hands it to a process."""

    modality: Modality
    payloads: list[Any]  # the chunk's image paths or report texts
    batch_size: int
    dim: int  # the width every vector must have (the index's)


def embed_task(model: Embedder, task: ChunkTask) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Embed one handed-out chunk with this process's ``model`` (see :func:`_embed_chunk`)."""
    fn = model.embed_images if task.modality == "image" else model.embed_texts
    return _embed_chunk(fn, task.payloads, task.batch_size, task.dim)


@dataclass(frozen=True)
class Items:
    """What one modality embeds: payloads for the model, metadata rows and cache keys, aligned."""

    payloads: list[Any]  # image paths or report texts, as the model's embed_* method takes them
    rows: list[dict[str, Any]]  # the metadata row stored for each payload
    keys: list[str]  # content identity of each payload (path, size and mtime; or study id and text hash)


@dataclass(frozen=True)
class Embedded:
    """The outcome of embedding one modality's items."""

    vectors: np.ndarray  # (n_ok, D) L2-normalised float32, in item order
    ok: np.ndarray  # (n,) bool: which items have a vector
    reasons: list[str]  # per item, why it has none ("" when ok)
    reused_chunks: int  # chunks read back from an earlier, interrupted run


def normalise(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row-normalised float32 copy and a mask of rows that were usable (finite, non-zero)."""
    v = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(v, axis=1)  # (N,)
    ok = np.isfinite(norms) & (norms > 1e-12)
    out = np.zeros_like(v)
    out[ok] = v[ok] / norms[ok, None]
    return out, ok


def _embed_chunk(
    fn: Callable[..., np.ndarray], payloads: list[Any], batch_size: int, dim: int
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Embed one chunk with the project's one rule for bad records (:func:`lexray.embedding.embed_safely`).

    Returns the (n_ok, D) normalised vectors, the (n,) ok mask and a reason per item ("" when ok).

    Raises:
        IndexFormatError: the model's vectors are not ``dim`` wide.
        EmbeddingError: no item of the chunk embeds (a broken model or environment, not bad data).
    """
    raw, failed = embed_safely(fn, payloads, batch_size)
    if raw.shape[1] != dim:
        raise IndexFormatError(
            f"the model returned {raw.shape[1]}-d vectors, expected {dim}-d (its embed_dim)"
        )
    vectors, ok = normalise(raw)  # failed rows are zeros, so they are not ok
    reasons = [""] * len(payloads)
    for i, why in failed:
        reasons[i] = why
    for i in np.flatnonzero(~ok):
        reasons[i] = reasons[i] or "the model returned a zero or non-finite vector"
    return vectors[ok], ok, reasons


def job_dir(root: Path, modality: Modality, ref: ModelRef, config: IndexConfig, keys: list[str]) -> Path:
    """The work folder of one embedding job: the same model, settings and items give the same folder."""
    h = hashlib.sha256()
    h.update(json.dumps([modality, ref.to_dict(), config.chunk_size, config.text_field]).encode())
    for k in keys:
        h.update(k.encode())
        h.update(b"\0")
    return root / WORK_DIR / f"{modality}-{h.hexdigest()[:20]}"


def _read_chunk(chunk_file: Path, n: int, dim: int) -> tuple[np.ndarray, np.ndarray, list[str]] | None:
    """A finished chunk of ``n`` items, or None when it is unreadable or from another job shape."""
    try:
        with np.load(chunk_file, allow_pickle=False) as z:
            vecs, ok, why = z["vectors"], z["ok"], [str(r) for r in z["reasons"]]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None
    return (vecs, ok, why) if len(ok) == n and vecs.shape[1:] == (dim,) else None


def embed_items(
    model: Embedder,
    modality: Modality,
    items: Items,
    job: Path,
    config: IndexConfig,
    progress: bool,
    map_tasks: MapTasks,
) -> Embedded:
    """Embed all items chunk by chunk, reusing the chunks already in ``job``.

    ``map_tasks`` computes the missing chunks' :class:`ChunkTask` with :func:`embed_task` (across the
    processes of a launch, see :func:`lead_build`); ``model`` gives the width. Each chunk is written as soon
    as it is embedded, in chunk order.
    """
    dim = int(model.embed_dim)
    cs = max(1, config.chunk_size)
    job.mkdir(parents=True, exist_ok=True)
    n = len(items.payloads)
    bar = tqdm(total=n, desc=f"embed {modality}s", unit=modality, disable=not progress, leave=False)
    chunks: list[tuple[np.ndarray, np.ndarray, list[str]] | None] = []
    for c, start in enumerate(range(0, n, cs)):
        chunk_file = job / f"chunk-{c:06d}.npz"
        size = min(cs, n - start)
        done = _read_chunk(chunk_file, size, dim) if chunk_file.is_file() else None
        if done is None and chunk_file.is_file():
            log.warning("ignoring unreadable chunk %s", chunk_file)
        if done is not None:
            bar.update(size)
        chunks.append(done)
    reused = sum(done is not None for done in chunks)
    missing = [c for c, done in enumerate(chunks) if done is None]
    tasks = [
        ChunkTask(modality, items.payloads[c * cs : (c + 1) * cs], config.batch_size, dim) for c in missing
    ]
    for c, done in zip(missing, map_tasks(tasks), strict=True):
        tmp = job / f".chunk-{c:06d}.tmp.npz"
        np.savez(tmp, vectors=done[0], ok=done[1], reasons=np.asarray(done[2], dtype=str))
        os.replace(tmp, job / f"chunk-{c:06d}.npz")
        chunks[c] = done
        bar.update(len(done[1]))
    bar.close()
    parts = [done for done in chunks if done is not None]  # all of them by now (narrows the type)
    vectors = np.concatenate([d[0] for d in parts]) if parts else np.zeros((0, dim), dtype=np.float32)
    mask = np.concatenate([d[1] for d in parts]) if parts else np.zeros(0, dtype=bool)
    reasons = [why for d in parts for why in d[2]]
    return Embedded(vectors.astype(np.float32, copy=False), mask, reasons, reused)
