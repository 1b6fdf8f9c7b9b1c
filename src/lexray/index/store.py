"""Building an index and appending to it: collect the usable records, embed each side, commit a version.

A build and an append are the same operation: an append starts from the committed version (its rows,
vectors and FAISS structure, to which the new vectors are added) where a build starts from nothing.
The on-disk layout is described in :mod:`lexray.index._layout`, the crash-safe commit in
:mod:`lexray.index._versions`, resumable embedding in :mod:`lexray.index._embed` and reading in
:mod:`lexray.index.reader` (``RetrievalIndex`` and ``ImageRecord`` are also importable from here).

Under ``accelerate launch`` (a model from ``lexray.training.sharded.shard_across_launch``), every process
calls the same function: the main process holds the lock, decides, writes and commits, the others embed
the chunks it hands out (``ShardedEmbedder.lead``), and all of them return the same report.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from lexray.data.manifest import studies_to_table
from lexray.data.study import Reject, Study
from lexray.index import _faiss
from lexray.index._embed import Embedded, Items, embed_items, job_dir, lead_build
from lexray.index._layout import (
    ALREADY_INDEXED,
    DUPLICATE_STUDY,
    EMPTY_REPORT,
    EMPTY_STUDY_ID,
    IMAGE_COLUMNS,
    META_COLUMNS,
    MISSING_IMAGE,
    REJECTS_FILE,
    UNEMBEDDABLE,
    IndexFormatError,
)
from lexray.index._versions import Side, clean_staging, locked, write_version
from lexray.index.config import IndexConfig, Modality
from lexray.index.model import Embedder, ModelRef
from lexray.index.reader import ImageRecord, RetrievalIndex

if TYPE_CHECKING:
    from lexray.training.sharded import MapTasks

__all__ = ["BuildReport", "ImageRecord", "RetrievalIndex", "add_to_index", "build_index"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuildReport:
    """What a build or an append did."""

    path: Path  # the index directory
    version: str  # the committed version directory name
    studies: int  # studies in the index after the operation
    vectors: dict[str, int]  # vectors per modality after the operation
    added: dict[str, int]  # vectors per modality added by this operation
    rejects: tuple[Reject, ...] = ()  # records skipped by this operation (record = the study id)
    resumed_chunks: int = 0  # embedded chunks reused from an interrupted earlier run
    recall_at_10: dict[str, float | None] = field(default_factory=dict)  # approximate vs exact; None = exact


def _collect(
    studies: Sequence[Study], config: IndexConfig, image_root: Path, existing: set[str]
) -> tuple[list[Study], list[dict[str, Any]], dict[str, Items], list[Reject]]:
    """Accepted studies, their existing image files, items per embedded modality, and the rejects.

    Rejects are duplicate or empty study ids, missing image files and empty report texts.
    """
    rejects: list[Reject] = []
    accepted: list[Study] = []
    seen = set(existing)
    for s in studies:
        if not s.study_id:
            rejects.append(Reject(s.source, "", EMPTY_STUDY_ID, "give every study an id in the manifest"))
            continue
        if s.study_id in seen:
            if s.study_id in existing:
                rejects.append(Reject(s.source, s.study_id, ALREADY_INDEXED, "already in the index"))
            else:
                rejects.append(
                    Reject(s.source, s.study_id, DUPLICATE_STUDY, "duplicate study_id in the manifest")
                )
            continue
        seen.add(s.study_id)
        accepted.append(s)
    image_rows: list[dict[str, Any]] = []
    image_keys: list[str] = []
    for s in accepted:
        for img in s.images:
            p = img.resolve(image_root)
            if not p.is_file():
                why = f"{p}: file not found; check the path or --set image_root=DIR"
                rejects.append(Reject(s.source, s.study_id, MISSING_IMAGE, why))
                continue
            real, st = p.resolve(), p.stat()
            row = {
                "study_id": s.study_id,
                "path": str(real),
                "view": img.view or "",
                "image_id": img.image_id or "",
            }
            image_rows.append(row)
            image_keys.append(f"{real}|{st.st_size}|{st.st_mtime_ns}")
    items: dict[str, Items] = {}
    if "image" in config.modalities:
        items["image"] = Items([Path(r["path"]) for r in image_rows], image_rows, image_keys)
    if "text" in config.modalities:
        payloads, rows, keys = [], [], []
        for s in accepted:
            text = s.text(config.text_field).strip()
            if not text:
                rejects.append(
                    Reject(s.source, s.study_id, EMPTY_REPORT, f"empty {config.text_field}; nothing to embed")
                )
                continue
            payloads.append(text)
            rows.append({"study_id": s.study_id})
            keys.append(s.study_id + "|" + hashlib.sha256(text.encode()).hexdigest()[:16])
        items["text"] = Items(payloads, rows, keys)
    return accepted, image_rows, items, rejects


def _frame(rows: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    return (
        pd.DataFrame(rows, columns=columns).astype(str) if rows else pd.DataFrame(columns=columns, dtype=str)
    )


def _side(
    modality: Modality, items: Items, done: Embedded, config: IndexConfig, start: Side | None
) -> tuple[Side, float | None]:
    """The side's rows, vectors and FAISS structure after adding the embedded items to ``start``."""
    meta = _frame([r for r, good in zip(items.rows, done.ok, strict=True) if good], META_COLUMNS[modality])
    if start is None:
        vectors, index = done.vectors, _faiss.build(done.vectors, config.faiss)
    else:
        # The stored structure keeps its HNSW graph or trained IVF-PQ quantiser; new vectors join it.
        old_meta, old_vectors, index = start
        meta = pd.concat([old_meta, meta], ignore_index=True)
        if len(done.vectors):
            index.add(np.ascontiguousarray(done.vectors))
        vectors = np.concatenate([np.asarray(old_vectors), done.vectors])
    return (meta, vectors, index), _faiss.measure_recall(index, vectors, config.faiss.recall_queries)


def _side_rejects(modality: Modality, items: Items, done: Embedded, sources: dict[str, str]) -> list[Reject]:
    out = []
    for row, good, why in zip(items.rows, done.ok, done.reasons, strict=True):
        if not good:
            sid = row["study_id"]
            detail = f"{row['path']}: {why}" if modality == "image" else why
            out.append(Reject(sources[sid], sid, UNEMBEDDABLE[modality], detail))
    return out


def _commit_studies(
    root: Path,
    studies: Sequence[Study],
    model: Embedder,
    ref: ModelRef,
    config: IndexConfig,
    image_root: Path,
    current: RetrievalIndex | None,
    progress: bool,
    map_tasks: MapTasks,
) -> BuildReport:
    """Embed ``studies`` and commit them as a new version: the whole index, or added to ``current``.

    ``map_tasks`` embeds the missing chunks (see :func:`lexray.index._embed.embed_items`).
    """
    existing = set(current.studies["study_id"]) if current is not None else set()
    accepted, image_rows, items, rejects = _collect(studies, config, image_root, existing)
    if current is None and not accepted:
        raise ValueError("no usable study to index; see the rejects (duplicate or empty study ids)")
    sources = {s.study_id: s.source for s in accepted}
    images = _frame(image_rows, IMAGE_COLUMNS)  # for display only, unless images are a side
    if current is not None:
        images = pd.concat([current.images, images], ignore_index=True)
    sides: dict[str, Side] = {}
    added: dict[str, int] = {}
    recall: dict[str, float | None] = {}
    jobs, reused = [], 0
    for modality in current.modalities if current is not None else config.modalities:
        job = job_dir(root, modality, ref, config, items[modality].keys)
        jobs.append(job)
        done = embed_items(model, modality, items[modality], job, config, progress, map_tasks)
        reused += done.reused_chunks
        rejects.extend(_side_rejects(modality, items[modality], done, sources))
        start = None
        if current is not None:
            start = (current.meta(modality), current.vectors(modality), current.faiss_index(modality))
        sides[modality], recall[modality] = _side(modality, items[modality], done, config, start)
        added[modality] = len(done.vectors)
        if modality == "image":
            images = sides[modality][0]
    table = studies_to_table(replace(s, images=()) for s in accepted)  # images.parquet lists the files
    old_rejects: list[Reject] = []
    if current is not None:
        table = pa.concat_tables([current.studies_table.replace_schema_metadata(None), table])
        old_rejects = current.rejects()
    version = write_version(
        root, config, ref, int(model.embed_dim), table, images, sides, [*old_rejects, *rejects], recall
    )
    for job in jobs:
        shutil.rmtree(job, ignore_errors=True)
    _log_rejects(rejects)
    return BuildReport(
        path=root,
        version=version,
        studies=table.num_rows,
        vectors={m: len(s[0]) for m, s in sides.items()},
        added=added,
        rejects=tuple(rejects),
        resumed_chunks=reused,
        recall_at_10=recall,
    )


def _image_root(config: IndexConfig, image_root: str | Path | None) -> Path:
    return Path(config.image_root) if config.image_root else Path(image_root or ".")


def build_index(
    studies: Sequence[Study],
    model: Embedder,
    model_ref: ModelRef,
    out: str | Path,
    config: IndexConfig = IndexConfig(),
    *,
    image_root: str | Path | None = None,
    progress: bool = True,
) -> BuildReport:
    """Embed ``studies`` with ``model`` and commit a new index version at ``out``.

    Args:
        studies: the manifest's studies; duplicates, missing images and empty reports are skipped.
        model: the embedder (its ``embed_dim`` fixes the width); a ``lexray.training.ShardedEmbedder``
            (from ``shard_across_launch``) splits the embedding across the processes of a launch.
        model_ref: stored so search and serve load the same model.
        out: the index directory (created; an existing index gets a new version on success only).
        config: what to embed and which FAISS structure to build.
        image_root: base for relative image paths (``config.image_root`` wins when set).
        progress: show progress bars.

    Raises:
        IndexBusyError: another build holds the directory.
        ValueError: no study is usable.
    """
    root = Path(out)
    if not config.modalities or len(set(config.modalities)) != len(config.modalities):
        raise ValueError(f"modalities must name image and/or text once each, got {list(config.modalities)}")

    def plan(local: Embedder, map_tasks: MapTasks) -> BuildReport:
        with locked(root):
            clean_staging(root)
            base = _image_root(config, image_root)
            return _commit_studies(root, studies, local, model_ref, config, base, None, progress, map_tasks)

    return lead_build(model, plan)


def add_to_index(
    path: str | Path,
    studies: Sequence[Study],
    model: Embedder,
    *,
    image_root: str | Path | None = None,
    progress: bool = True,
) -> BuildReport:
    """Append ``studies`` to the index at ``path`` as a new version (studies already present are skipped).

    The model must be the index's own (see :meth:`RetrievalIndex.model_ref`), split across a launch as
    in :func:`build_index`; the stored config decides the modalities and the FAISS structure (new
    vectors are added to the existing structure, so HNSW and IVF-PQ keep their graph and trained
    quantiser). An index of an older format is written in the current one.

    Raises:
        IndexFormatError: ``path`` is not an index, or the model's width differs from the index's.
        IndexBusyError: another process holds the directory.
    """
    root = Path(path)

    def plan(local: Embedder, map_tasks: MapTasks) -> BuildReport:
        with locked(root):
            clean_staging(root)
            current = RetrievalIndex.load(root, mmap=False)
            dim = int(local.embed_dim)
            if dim != current.embed_dim:
                raise IndexFormatError(
                    f"the model embeds {dim}-d vectors but the index at {root} holds {current.embed_dim}-d "
                    "ones; append with the index's own model"
                )
            base = _image_root(current.config, image_root)
            ref = current.model_ref
            return _commit_studies(
                root, studies, local, ref, current.config, base, current, progress, map_tasks
            )

    return lead_build(model, plan)


def _log_rejects(rejects: Sequence[Reject]) -> None:
    if rejects:
        counts: dict[str, int] = {}
        for r in rejects:
            counts[r.reason] = counts.get(r.reason, 0) + 1
        log.warning(
            "skipped %d records (%s); see %s in the index version", len(rejects), counts, REJECTS_FILE
        )
