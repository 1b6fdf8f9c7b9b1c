"""Versioned, crash-safe writes of an index directory.

A version is written whole into ``INDEX/.staging-*``, renamed to ``INDEX/v-*`` and only then named in
``CURRENT`` (replaced atomically): a crash at any point leaves the previous ``CURRENT`` and its version
untouched and loadable. One writer at a time holds ``INDEX/.lock``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import secrets
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import faiss
import numpy as np
import pandas as pd
import pyarrow as pa

from lexray.config import save_config
from lexray.data.manifest import write_rejects, write_table
from lexray.data.study import Reject
from lexray.index._layout import (
    CURRENT_FILE,
    FAISS_FILES,
    FORMAT_VERSION,
    IMAGES_FILE,
    INFO_FILE,
    LOCK_FILE,
    META_FILES,
    REJECTS_FILE,
    STAGING_PREFIX,
    STUDIES_FILE,
    VECTOR_FILES,
    IndexBusyError,
    IndexFormatError,
)
from lexray.index.config import IndexConfig
from lexray.index.model import ModelRef

Side = tuple[pd.DataFrame, np.ndarray, faiss.Index]  # metadata rows, (N, D) vectors, FAISS over them


@contextlib.contextmanager
def locked(root: Path) -> Iterator[None]:
    """Hold the index's writer lock for the block.

    Raises:
        IndexBusyError: another process holds it.
    """
    root.mkdir(parents=True, exist_ok=True)
    with open(root / LOCK_FILE, "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise IndexBusyError(
                f"another process is writing the index {root}; wait for it to finish"
            ) from exc
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def clean_staging(root: Path) -> None:
    """Remove the staging folders an interrupted writer left (call with the lock held)."""
    for p in root.glob(f"{STAGING_PREFIX}*"):
        shutil.rmtree(p, ignore_errors=True)


def _new_version() -> str:
    # Microseconds keep names in creation order, which pruning relies on.
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%f")
    return f"v-{stamp}-{secrets.token_hex(3)}"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as fh:
        np.save(fh, np.ascontiguousarray(array, dtype=np.float32))
        fh.flush()
        os.fsync(fh.fileno())


def _commit(root: Path, staging: Path, version: str, keep_versions: int) -> None:
    """Make ``staging`` the current version: rename, then atomically replace CURRENT, then prune."""
    for p in staging.iterdir():
        if p.is_file():
            with open(p, "rb") as fh:
                os.fsync(fh.fileno())
    final = root / version
    os.replace(staging, final)
    _fsync_dir(root)
    tmp = root / f".{CURRENT_FILE}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(version + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, root / CURRENT_FILE)  # the commit point
    _fsync_dir(root)
    versions = sorted(p for p in root.glob("v-*") if p.is_dir() and p.name != version)
    for old in versions[: max(0, len(versions) - keep_versions)]:
        shutil.rmtree(old, ignore_errors=True)


def write_version(
    root: Path,
    config: IndexConfig,
    ref: ModelRef,
    dim: int,
    studies: pa.Table,
    images: pd.DataFrame,
    sides: dict[str, Side],
    rejects: Sequence[Reject],
    recall: dict[str, float | None],
) -> str:
    """Write a complete version into a staging directory and commit it.

    Args:
        root: the index directory (the caller holds its lock).
        config: the resolved config, saved as config.yaml.
        ref: the model the vectors were made with.
        dim: the vectors' width.
        studies: every study of the version, in manifest schema (images left empty).
        images: every image row (the image side's metadata when images are embedded).
        sides: per embedded modality, its rows, vectors and FAISS structure (aligned).
        rejects: every record skipped by this version and the versions it extends.
        recall: per modality, recall@10 of the FAISS structure vs exact search (None = exact).

    Returns:
        The committed version's name.
    """
    version = _new_version()
    staging = root / f"{STAGING_PREFIX}{version}"
    staging.mkdir()
    write_table(studies, staging / STUDIES_FILE)
    images.to_parquet(staging / IMAGES_FILE, index=False)
    for modality, (meta, vectors, index) in sides.items():
        if not (len(meta) == len(vectors) == index.ntotal):
            raise IndexFormatError(
                f"{modality}: {len(meta)} rows, {len(vectors)} vectors, {index.ntotal} in FAISS"
            )
        if modality != "image":
            meta.to_parquet(staging / META_FILES[modality], index=False)
        _write_npy(staging / VECTOR_FILES[modality], vectors)
        faiss.write_index(index, str(staging / FAISS_FILES[modality]))
    write_rejects(list(rejects), staging / REJECTS_FILE)
    save_config(config, staging)
    info = {
        "format": FORMAT_VERSION,
        "version": version,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "model": ref.to_dict(),
        "embed_dim": dim,
        "modalities": sorted(sides),
        "counts": {
            "studies": studies.num_rows,
            "images": len(images),
            **{m: len(s[0]) for m, s in sides.items()},
        },
        "faiss": {m: {"kind": config.faiss.kind, "recall_at_10_vs_exact": recall.get(m)} for m in sides},
        "rejects": len(rejects),
    }
    (staging / INFO_FILE).write_text(json.dumps(info, indent=2), encoding="utf-8")
    _commit(root, staging, version, config.keep_versions)
    return version
