"""The on-disk retrieval index: vectors, FAISS structures, metadata and the model reference.

Layout of an index directory ``INDEX``::

    INDEX/CURRENT                 name of the committed version (replaced atomically)
    INDEX/v-<time>-<rand>/        one committed version
        index.json                format, model reference, embedding width, counts, measured recall
        config.yaml               the resolved :class:`IndexConfig`
        studies.parquet           one row per study (report sections, source, split)
        images.parquet            one row per image file (study_id, path, view, image_id)
        image_vectors.npy, image.faiss   (N_images, D) vectors aligned with images.parquet, and FAISS
        texts.parquet             one row per embedded report (study_id), aligned with ...
        text_vectors.npy, text.faiss     (N_texts, D) vectors and FAISS
        rejects.jsonl             records skipped with the reason
    INDEX/.work/<job>/            embedded chunks of an unfinished build (resume reuses them)

A build writes a complete version into ``INDEX/.staging-*``, renames it to ``INDEX/v-*`` and only then
replaces ``CURRENT``; a crash at any point leaves the previous ``CURRENT`` and its version untouched and
loadable. Vectors are embedded in chunks written to ``.work`` as they finish, so rerunning an
interrupted build embeds only the missing chunks.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import logging
import os
import secrets
import shutil
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pandas as pd
import yaml
from tqdm.auto import tqdm

from lexray.config import load_config, save_config
from lexray.data.study import Image, Study
from lexray.errors import LexrayError
from lexray.index import _faiss
from lexray.index.config import IndexConfig, Modality
from lexray.index.model import Embedder, ModelRef

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
CURRENT_FILE = "CURRENT"
INFO_FILE = "index.json"
STUDIES_FILE = "studies.parquet"
IMAGES_FILE = "images.parquet"
TEXTS_FILE = "texts.parquet"
REJECTS_FILE = "rejects.jsonl"
_WORK_DIR = ".work"
_STAGING_PREFIX = ".staging-"
_LOCK_FILE = ".lock"
_VECTOR_FILES = {"image": "image_vectors.npy", "text": "text_vectors.npy"}
_FAISS_FILES = {"image": "image.faiss", "text": "text.faiss"}
_META_FILES = {"image": IMAGES_FILE, "text": TEXTS_FILE}


class IndexFormatError(LexrayError, RuntimeError):
    """A directory is not a committed lexray index, or its files disagree with each other."""


class IndexBusyError(LexrayError, RuntimeError):
    """Another process is building or appending to the same index directory."""


@dataclass(frozen=True)
class Reject:
    """A record left out of the index, and why."""

    study_id: str  # the study the record belongs to
    modality: str  # "study", "image" or "text"
    item: str  # the image path, or "report" for texts, or the study id for whole studies
    reason: str  # what was wrong and how to fix it


@dataclass(frozen=True)
class BuildReport:
    """What a build or an append did."""

    path: Path  # the index directory
    version: str  # the committed version directory name
    studies: int  # studies in the index after the operation
    vectors: dict[str, int]  # vectors per modality after the operation
    added: dict[str, int]  # vectors per modality added by this operation
    rejects: tuple[Reject, ...] = ()  # records skipped by this operation
    resumed_chunks: int = 0  # embedded chunks reused from an interrupted earlier run
    recall_at_10: dict[str, float | None] = field(default_factory=dict)  # approximate vs exact; None = exact


# --------------------------------------------------------------------------------------------- items


@dataclass(frozen=True)
class _Items:
    """What one modality embeds: payloads for the model, metadata rows and cache keys, aligned."""

    payloads: list[Any]
    rows: list[dict[str, Any]]
    keys: list[str]


def _resolve_image(path: str, image_root: Path) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else (image_root / p)


def _study_text(study: Study, text_field: str) -> str:
    return study.report_text if text_field == "report_text" else str(getattr(study, text_field))


def _collect(
    studies: Sequence[Study], config: IndexConfig, image_root: Path, existing: set[str]
) -> tuple[list[Study], list[dict[str, Any]], dict[str, _Items], list[Reject]]:
    """Accepted studies, their existing image files, items per embedded modality, and the rejects.

    Rejects are duplicate or empty study ids, missing image files and empty report texts.
    """
    rejects: list[Reject] = []
    accepted: list[Study] = []
    seen = set(existing)
    for s in studies:
        if not s.study_id:
            rejects.append(Reject("", "study", "", "empty study_id; give every study an id in the manifest"))
            continue
        if s.study_id in seen:
            why = "already in the index" if s.study_id in existing else "duplicate study_id in the manifest"
            rejects.append(Reject(s.study_id, "study", s.study_id, why))
            continue
        seen.add(s.study_id)
        accepted.append(s)
    items: dict[str, _Items] = {}
    image_rows: list[dict[str, Any]] = []
    for s in accepted:
        for img in s.images:
            p = _resolve_image(img.path, image_root)
            if not p.is_file():
                rejects.append(
                    Reject(
                        s.study_id, "image", str(p), "file not found; check the path or --set image_root=DIR"
                    )
                )
                continue
            st = p.stat()
            image_rows.append(
                {
                    "study_id": s.study_id,
                    "path": str(p.resolve()),
                    "view": img.view or "",
                    "image_id": img.image_id or "",
                    "_key": f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}",
                }
            )
    plain_rows = [{k: v for k, v in r.items() if k != "_key"} for r in image_rows]
    if "image" in config.modalities:
        items["image"] = _Items(
            payloads=[Path(r["path"]) for r in image_rows],
            rows=plain_rows,
            keys=[r["_key"] for r in image_rows],
        )
    if "text" in config.modalities:
        payloads, rows, keys = [], [], []
        for s in accepted:
            text = _study_text(s, config.text_field).strip()
            if not text:
                rejects.append(
                    Reject(s.study_id, "text", "report", f"empty {config.text_field}; nothing to embed")
                )
                continue
            payloads.append(text)
            rows.append({"study_id": s.study_id})
            keys.append(s.study_id + "|" + hashlib.sha256(text.encode()).hexdigest()[:16])
        items["text"] = _Items(payloads, rows, keys)
    return accepted, plain_rows, items, rejects


# ----------------------------------------------------------------------------------------- embedding


def _normalise(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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
    """Embed one chunk; on failure retry item by item so one bad record only skips itself.

    Returns the (n_ok, D) vectors, the (n,) ok mask and a reason per item ("" when ok).
    """
    n = len(payloads)
    reasons = [""] * n
    try:
        raw = np.asarray(fn(payloads, batch_size=batch_size))
        if raw.shape != (n, dim):
            raise IndexFormatError(
                f"the model returned shape {raw.shape} for {n} items, expected ({n}, {dim})"
            )
        vectors, ok = _normalise(raw)
    except IndexFormatError:
        raise
    except Exception as exc:  # a bad record in the chunk: isolate it instead of losing the whole chunk
        log.warning("a batch failed (%s: %s); embedding this chunk item by item", type(exc).__name__, exc)
        vectors = np.zeros((n, dim), dtype=np.float32)
        ok = np.zeros(n, dtype=bool)
        last: Exception = exc
        for i, payload in enumerate(payloads):
            try:
                one = np.asarray(fn([payload], batch_size=1))
            except Exception as item_exc:  # recorded as the record's reject reason
                reasons[i] = f"{type(item_exc).__name__}: {item_exc}"
                last = item_exc
                continue
            v, good = _normalise(one.reshape(1, dim))
            vectors[i], ok[i] = v[0], bool(good[0])
        if not ok.any():
            # Every record failing is a broken model or environment, not bad data: stop loudly.
            raise RuntimeError(f"every item of a chunk of {n} failed to embed; last error: {last}") from last
    for i in np.flatnonzero(~ok):
        if not reasons[i]:
            reasons[i] = "the model returned a zero or non-finite vector"
    return vectors[ok], ok, reasons


def _job_dir(root: Path, modality: str, ref: ModelRef, config: IndexConfig, keys: list[str]) -> Path:
    h = hashlib.sha256()
    h.update(json.dumps([modality, ref.to_dict(), config.chunk_size, config.text_field]).encode())
    for k in keys:
        h.update(k.encode())
        h.update(b"\0")
    return root / _WORK_DIR / f"{modality}-{h.hexdigest()[:20]}"


def _embed_items(
    model: Embedder,
    modality: str,
    items: _Items,
    job: Path,
    config: IndexConfig,
    progress: bool,
) -> tuple[np.ndarray, np.ndarray, list[str], int]:
    """Embed all items chunk by chunk, reusing chunks already in ``job``.

    Returns (n_ok, D) vectors, the (n,) ok mask, per-item reasons and the number of reused chunks.
    """
    fn = model.embed_images if modality == "image" else model.embed_texts
    dim = int(model.embed_dim)
    n = len(items.payloads)
    cs = max(1, config.chunk_size)
    job.mkdir(parents=True, exist_ok=True)
    parts, oks, reasons = [], [], []
    reused = 0
    bar = tqdm(total=n, desc=f"embed {modality}s", unit=modality, disable=not progress, leave=False)
    for c, start in enumerate(range(0, n, cs)):
        chunk_file = job / f"chunk-{c:06d}.npz"
        payloads = items.payloads[start : start + cs]
        if chunk_file.is_file():
            try:
                with np.load(chunk_file, allow_pickle=False) as z:
                    vecs, ok, why = z["vectors"], z["ok"], [str(r) for r in z["reasons"]]
            except (OSError, ValueError, KeyError, zipfile.BadZipFile):
                vecs, ok, why = np.zeros((0, 0), np.float32), np.zeros(0, bool), []
            if len(ok) == len(payloads) and vecs.shape[1:] == (dim,):
                reused += 1
                parts.append(vecs)
                oks.append(ok)
                reasons.extend(why)
                bar.update(len(payloads))
                continue
            log.warning("ignoring unreadable chunk %s", chunk_file)
        vecs, ok, why = _embed_chunk(fn, payloads, config.batch_size, dim)
        tmp = job / f".chunk-{c:06d}.tmp.npz"
        np.savez(tmp, vectors=vecs, ok=ok, reasons=np.asarray(why, dtype=str))
        os.replace(tmp, chunk_file)
        parts.append(vecs)
        oks.append(ok)
        reasons.extend(why)
        bar.update(len(payloads))
    bar.close()
    vectors = np.concatenate(parts) if parts else np.zeros((0, dim), dtype=np.float32)
    mask = np.concatenate(oks) if oks else np.zeros(0, dtype=bool)
    return vectors.astype(np.float32, copy=False), mask, reasons, reused


# ------------------------------------------------------------------------------------------ writing


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / _LOCK_FILE, "w") as fh:
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


def _studies_frame(studies: Sequence[Study]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "study_id": [s.study_id for s in studies],
            "patient_id": [s.patient_id for s in studies],
            "source": [s.source for s in studies],
            "split": [s.split for s in studies],
            "findings": [s.findings for s in studies],
            "impression": [s.impression for s in studies],
            "indication": [s.indication for s in studies],
            "comparison": [s.comparison for s in studies],
            "report": [s.report for s in studies],
            "extra": [json.dumps(s.extra, sort_keys=True) for s in studies],
        },
        columns=_STUDY_COLUMNS,
    )


def _frame(rows: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    return (
        pd.DataFrame(rows, columns=columns).astype(str) if rows else pd.DataFrame(columns=columns, dtype=str)
    )


_STUDY_COLUMNS = [
    "study_id", "patient_id", "source", "split", "findings", "impression",
    "indication", "comparison", "report", "extra",
]  # fmt: skip
_IMAGE_COLUMNS = ["study_id", "path", "view", "image_id"]
_TEXT_COLUMNS = ["study_id"]


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


def _clean_staging(root: Path) -> None:
    for p in root.glob(f"{_STAGING_PREFIX}*"):
        shutil.rmtree(p, ignore_errors=True)


def _write_version(
    root: Path,
    config: IndexConfig,
    ref: ModelRef,
    dim: int,
    studies: pd.DataFrame,
    images: pd.DataFrame,
    sides: dict[str, tuple[pd.DataFrame, np.ndarray, faiss.Index]],
    rejects: Sequence[Reject],
    recall: dict[str, float | None],
) -> str:
    """Write a complete version into a staging directory and commit it; returns the version name."""
    version = _new_version()
    staging = root / f"{_STAGING_PREFIX}{version}"
    staging.mkdir()
    studies.to_parquet(staging / STUDIES_FILE, index=False)
    images.to_parquet(staging / IMAGES_FILE, index=False)
    for modality, (meta, vectors, index) in sides.items():
        if not (len(meta) == len(vectors) == index.ntotal):
            raise IndexFormatError(
                f"{modality}: {len(meta)} rows, {len(vectors)} vectors, {index.ntotal} in FAISS"
            )
        if modality != "image":
            meta.to_parquet(staging / _META_FILES[modality], index=False)
        _write_npy(staging / _VECTOR_FILES[modality], vectors)
        faiss.write_index(index, str(staging / _FAISS_FILES[modality]))
    with open(staging / REJECTS_FILE, "w", encoding="utf-8") as fh:
        for r in rejects:
            fh.write(json.dumps(r.__dict__) + "\n")
    save_config(config, staging)
    info = {
        "format": FORMAT_VERSION,
        "version": version,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "model": ref.to_dict(),
        "embed_dim": dim,
        "modalities": sorted(sides),
        "counts": {
            "studies": len(studies),
            "images": len(images),
            **{m: len(s[0]) for m, s in sides.items()},
        },
        "faiss": {m: {"kind": config.faiss.kind, "recall_at_10_vs_exact": recall.get(m)} for m in sides},
        "rejects": len(rejects),
    }
    (staging / INFO_FILE).write_text(json.dumps(info, indent=2), encoding="utf-8")
    _commit(root, staging, version, config.keep_versions)
    return version


# --------------------------------------------------------------------------------------- public API


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
        model: the embedder (its ``embed_dim`` fixes the width).
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
    base = Path(config.image_root) if config.image_root else Path(image_root or ".")
    if not config.modalities or len(set(config.modalities)) != len(config.modalities):
        raise ValueError(f"modalities must name image and/or text once each, got {list(config.modalities)}")
    with _locked(root):
        _clean_staging(root)
        accepted, image_rows, items, rejects = _collect(studies, config, base, existing=set())
        if not accepted:
            raise ValueError("no usable study to index; see the rejects (duplicate or empty study ids)")
        dim = int(model.embed_dim)
        sides: dict[str, tuple[pd.DataFrame, np.ndarray, faiss.Index]] = {}
        recall: dict[str, float | None] = {}
        jobs, reused = [], 0
        images = _frame(image_rows, _IMAGE_COLUMNS)  # replaced by the embedded rows when images are a side
        for modality in config.modalities:
            its = items[modality]
            job = _job_dir(root, modality, model_ref, config, its.keys)
            jobs.append(job)
            vectors, ok, reasons, r = _embed_items(model, modality, its, job, config, progress)
            reused += r
            rows = [row for row, good in zip(its.rows, ok, strict=True) if good]
            for row, good, why in zip(its.rows, ok, reasons, strict=True):
                if not good:
                    rejects.append(Reject(row["study_id"], modality, row.get("path", "report"), why))
            meta = _frame(rows, _IMAGE_COLUMNS if modality == "image" else _TEXT_COLUMNS)
            if modality == "image":
                images = meta
            index = _faiss.build(vectors, config.faiss)
            recall[modality] = _faiss.measure_recall(index, vectors, config.faiss.recall_queries)
            sides[modality] = (meta, vectors, index)
        version = _write_version(
            root, config, model_ref, dim, _studies_frame(accepted), images, sides, rejects, recall
        )
        for job in jobs:
            shutil.rmtree(job, ignore_errors=True)
    _log_rejects(rejects)
    return BuildReport(
        path=root,
        version=version,
        studies=len(accepted),
        vectors={m: len(s[0]) for m, s in sides.items()},
        added={m: len(s[0]) for m, s in sides.items()},
        rejects=tuple(rejects),
        resumed_chunks=reused,
        recall_at_10=recall,
    )


def add_to_index(
    path: str | Path,
    studies: Sequence[Study],
    model: Embedder,
    *,
    image_root: str | Path | None = None,
    progress: bool = True,
) -> BuildReport:
    """Append ``studies`` to the index at ``path`` as a new version (studies already present are skipped).

    The model must be the index's own (see :meth:`RetrievalIndex.model_ref`); the stored config decides
    the modalities and the FAISS structure (new vectors are added to the existing structure, so HNSW and
    IVF-PQ keep their graph and trained quantiser).

    Raises:
        IndexFormatError: ``path`` is not an index, or the model's width differs from the index's.
        IndexBusyError: another process holds the directory.
    """
    root = Path(path)
    with _locked(root):
        _clean_staging(root)
        current = RetrievalIndex.load(root, mmap=False)
        config = current.config
        dim = int(model.embed_dim)
        if dim != current.embed_dim:
            raise IndexFormatError(
                f"the model embeds {dim}-d vectors but the index at {root} holds {current.embed_dim}-d ones; "
                "append with the index's own model"
            )
        base = Path(config.image_root) if config.image_root else Path(image_root or ".")
        accepted, image_rows, items, rejects = _collect(
            studies, config, base, existing=set(current.studies["study_id"])
        )
        studies_df = pd.concat([current.studies, _studies_frame(accepted)], ignore_index=True)
        images = current.images
        sides: dict[str, tuple[pd.DataFrame, np.ndarray, faiss.Index]] = {}
        added: dict[str, int] = {}
        recall: dict[str, float | None] = {}
        jobs, reused = [], 0
        if "image" not in current.modalities:  # images listed for display only, not embedded
            images = pd.concat([images, _frame(image_rows, _IMAGE_COLUMNS)], ignore_index=True)
        for modality in current.modalities:
            its = items[modality]
            job = _job_dir(root, modality, current.model_ref, config, its.keys)
            jobs.append(job)
            vectors, ok, reasons, r = _embed_items(model, modality, its, job, config, progress)
            reused += r
            rows = [row for row, good in zip(its.rows, ok, strict=True) if good]
            for row, good, why in zip(its.rows, ok, reasons, strict=True):
                if not good:
                    rejects.append(Reject(row["study_id"], modality, row.get("path", "report"), why))
            cols = _IMAGE_COLUMNS if modality == "image" else _TEXT_COLUMNS
            meta = pd.concat([current.meta(modality), _frame(rows, cols)], ignore_index=True)
            if modality == "image":
                images = meta
            index = current.faiss_index(modality)
            if len(vectors):
                index.add(np.ascontiguousarray(vectors))
            all_vectors = np.concatenate([np.asarray(current.vectors(modality)), vectors])
            recall[modality] = _faiss.measure_recall(index, all_vectors, config.faiss.recall_queries)
            sides[modality] = (meta, all_vectors, index)
            added[modality] = len(vectors)
        old_rejects = current.rejects()
        version = _write_version(
            root, config, current.model_ref, dim, studies_df, images, sides, [*old_rejects, *rejects], recall
        )
        for job in jobs:
            shutil.rmtree(job, ignore_errors=True)
    _log_rejects(rejects)
    return BuildReport(
        path=root,
        version=version,
        studies=len(studies_df),
        vectors={m: len(s[0]) for m, s in sides.items()},
        added=added,
        rejects=tuple(rejects),
        resumed_chunks=reused,
        recall_at_10=recall,
    )


def _log_rejects(rejects: Sequence[Reject]) -> None:
    if rejects:
        counts: dict[str, int] = {}
        for r in rejects:
            counts[r.modality] = counts.get(r.modality, 0) + 1
        log.warning(
            "skipped %d records (%s); see %s in the index version", len(rejects), counts, REJECTS_FILE
        )


# ------------------------------------------------------------------------------------------ reading


# What a damaged or truncated file raises while it is read: pyarrow's ArrowInvalid is a ValueError, FAISS
# raises RuntimeError, a truncated .npy ValueError or EOFError, a broken YAML yaml.YAMLError.
_READ_ERRORS = (OSError, ValueError, RuntimeError, EOFError, yaml.YAMLError, LexrayError)


def _damaged(root: Path, path: Path, why: str, info: dict[str, Any]) -> str:
    model = info.get("model", {}).get("path", "RUN") if isinstance(info.get("model"), dict) else "RUN"
    return (
        f"{path} is damaged or incomplete ({why}): the index at {root} cannot be used; rebuild it with "
        f"`lexray index build --model {model} --manifest MANIFEST --out {root}`"
    )


def _read_part(root: Path, path: Path, info: dict[str, Any], read: Callable[[], Any]) -> Any:
    """``read()`` of one file of an index version, any failure named as damage to that file."""
    if not path.is_file():
        raise IndexFormatError(_damaged(root, path, "the file is missing", info))
    try:
        return read()
    except _READ_ERRORS as exc:
        why = str(exc).splitlines()[-1].strip() if str(exc).strip() else type(exc).__name__
        raise IndexFormatError(_damaged(root, path, f"{type(exc).__name__}: {why[:200]}", info)) from exc


def _read_table(root: Path, path: Path, columns: Sequence[str], info: dict[str, Any]) -> pd.DataFrame:
    frame = _read_part(root, path, info, lambda: pd.read_parquet(path))
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise IndexFormatError(_damaged(root, path, f"no column {', '.join(missing)}", info))
    return frame


def _read_vectors(root: Path, path: Path, dim: int, mmap: bool, info: dict[str, Any]) -> np.ndarray:
    vectors = _read_part(root, path, info, lambda: np.load(path, mmap_mode="r" if mmap else None))
    if vectors.ndim != 2 or vectors.shape[1] != dim or vectors.dtype != np.float32:
        why = f"{vectors.dtype} array of shape {vectors.shape}, expected float32 (N, {dim})"
        raise IndexFormatError(_damaged(root, path, why, info))
    return vectors


@dataclass(frozen=True)
class ImageRecord:
    """One image the index references."""

    row: int  # its row in images.parquet: the id the service serves it under
    study_id: str  # the study it belongs to
    path: str  # absolute file path
    view: str  # view position ("" when unknown)
    image_id: str  # the source's image id ("" when unknown)


class RetrievalIndex:
    """A committed index version loaded for search (vectors memory-mapped, FAISS in memory)."""

    def __init__(
        self, root: Path, version: str, info: dict[str, Any], config: IndexConfig, mmap: bool
    ) -> None:
        self.root = root
        self.version = version
        self.info = info
        self.config = config
        vdir = root / version
        self.studies: pd.DataFrame = _read_table(root, vdir / STUDIES_FILE, _STUDY_COLUMNS, info)
        self.images: pd.DataFrame = _read_table(root, vdir / IMAGES_FILE, _IMAGE_COLUMNS, info)
        self._study_rows = {sid: i for i, sid in enumerate(self.studies["study_id"])}
        # Plain lists for per-hit lookups: pandas row access costs ~0.1 ms, too slow per result.
        self._study_cols = {c: self.studies[c].tolist() for c in self.studies.columns}
        self._image_cols = {c: self.images[c].tolist() for c in _IMAGE_COLUMNS}
        self._side_study_ids: dict[str, list[str]] = {}
        self._images_by_study: dict[str, list[int]] = {}
        for i, sid in enumerate(self.images["study_id"]):
            self._images_by_study.setdefault(sid, []).append(i)
        self._meta: dict[str, pd.DataFrame] = {}
        self._vectors: dict[str, np.ndarray] = {}
        self._faiss: dict[str, faiss.Index] = {}
        _faiss.set_threads(config.faiss)
        for m in self.modalities:
            if m == "image":
                meta = self.images
            else:
                meta = _read_table(root, vdir / _META_FILES[m], _TEXT_COLUMNS, info)
            vectors = _read_vectors(root, vdir / _VECTOR_FILES[m], self.embed_dim, mmap, info)
            faiss_file = vdir / _FAISS_FILES[m]
            index = _read_part(root, faiss_file, info, lambda f=faiss_file: faiss.read_index(str(f)))
            if index.d != self.embed_dim:
                why = f"FAISS width {index.d} != embedding width {self.embed_dim}"
                raise IndexFormatError(_damaged(root, faiss_file, why, info))
            _faiss.configure_search(index, config.faiss)
            if not (len(meta) == len(vectors) == index.ntotal):
                raise IndexFormatError(
                    f"{vdir}: {m} side has {len(meta)} rows, {len(vectors)} vectors and {index.ntotal} "
                    "FAISS entries; rebuild the index"
                )
            self._meta[m], self._vectors[m], self._faiss[m] = meta, vectors, index
            self._side_study_ids[m] = meta["study_id"].tolist()

    @classmethod
    def load(cls, path: str | Path, *, mmap: bool = True) -> RetrievalIndex:
        """Load the committed version of the index at ``path``.

        Raises:
            IndexFormatError: no committed version (never built, or the first build never finished),
                or files from another format version.
        """
        root = Path(path)
        current = root / CURRENT_FILE
        if not current.is_file():
            raise IndexFormatError(
                f"{root} is not a lexray index (no {CURRENT_FILE} file); build one with `lexray index build`"
            )
        version = current.read_text(encoding="utf-8").strip()
        vdir = root / version
        info_file = vdir / INFO_FILE
        if not info_file.is_file():
            raise IndexFormatError(f"{root}: {CURRENT_FILE} names {version!r} but {info_file} is missing")
        info = _read_part(root, info_file, {}, lambda: json.loads(info_file.read_text(encoding="utf-8")))
        if not isinstance(info, dict) or info.get("format") != FORMAT_VERSION:
            found = info.get("format") if isinstance(info, dict) else None
            raise IndexFormatError(
                f"{vdir} has index format {found}; this lexray reads format {FORMAT_VERSION}"
            )
        missing = [k for k in ("modalities", "embed_dim", "model") if k not in info]
        if missing:
            raise IndexFormatError(_damaged(root, info_file, f"no {', '.join(missing)}", info))
        config_file = vdir / "config.yaml"
        config = _read_part(root, config_file, info, lambda: load_config(IndexConfig, config_file))
        return cls(root, version, info, config, mmap)

    def with_search_params(self, **faiss_overrides: Any) -> RetrievalIndex:
        """Change query-time FAISS parameters (e.g. ``hnsw_ef_search=128``) in place; returns self."""
        self.config = replace(self.config, faiss=replace(self.config.faiss, **faiss_overrides))
        for index in self._faiss.values():
            _faiss.configure_search(index, self.config.faiss)
        return self

    @property
    def modalities(self) -> list[Modality]:
        """The embedded sides ("image", "text")."""
        return list(self.info["modalities"])

    @property
    def embed_dim(self) -> int:
        """Width of the stored vectors."""
        return int(self.info["embed_dim"])

    @property
    def model_ref(self) -> ModelRef:
        """The model the vectors were made with."""
        return ModelRef.from_dict(self.info["model"])

    def meta(self, modality: str) -> pd.DataFrame:
        """Metadata rows aligned with the vectors of ``modality``."""
        self._require(modality)
        return self._meta[modality]

    def vectors(self, modality: str) -> np.ndarray:
        """(N, D) stored vectors of ``modality`` (memory-mapped when loaded with ``mmap=True``)."""
        self._require(modality)
        return self._vectors[modality]

    def faiss_index(self, modality: str) -> faiss.Index:
        """A copy of the FAISS structure of ``modality`` (safe to modify)."""
        self._require(modality)
        return faiss.clone_index(self._faiss[modality])

    def _require(self, modality: str) -> None:
        if modality not in self._faiss:
            raise KeyError(
                f"the index at {self.root} has no {modality} vectors (it has {', '.join(self.modalities)}); "
                f"rebuild with --set modalities=[image,text]"
            )

    def search(self, modality: str, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` rows of ``modality`` for each query.

        Args:
            modality: which side to search ("image" or "text").
            queries: (Q, D) L2-normalised float32 query vectors.
            k: results per query (capped at the side's size).

        Returns:
            (Q, k') cosine scores and (Q, k') row ids into :meth:`meta`, best first, k' = min(k, N).
        """
        self._require(modality)
        index = self._faiss[modality]
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if q.shape[1] != self.embed_dim:
            raise ValueError(f"query width {q.shape[1]} != index width {self.embed_dim}")
        k = max(0, min(int(k), index.ntotal))
        if k == 0:
            return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
        scores, ids = index.search(q, k)
        return scores, ids

    def study_id_of(self, modality: str, row: int) -> str:
        """The study that vector ``row`` of ``modality`` belongs to."""
        self._require(modality)
        return self._side_study_ids[modality][row]

    def has_study(self, study_id: str) -> bool:
        """Whether ``study_id`` is in the index."""
        return study_id in self._study_rows

    def study(self, study_id: str) -> Study:
        """The stored :class:`Study` (images limited to those the index references).

        Raises:
            KeyError: unknown study id.
        """
        if study_id not in self._study_rows:
            raise KeyError(f"study {study_id!r} is not in the index")
        i = self._study_rows[study_id]
        r = {c: v[i] for c, v in self._study_cols.items()}
        images = tuple(
            Image(path=rec.path, view=rec.view or None, image_id=rec.image_id or None)
            for rec in self.study_images(study_id)
        )
        return Study(
            study_id=r["study_id"],
            patient_id=r["patient_id"],
            source=r["source"],
            split=r["split"],
            images=images,
            findings=r["findings"],
            impression=r["impression"],
            indication=r["indication"],
            comparison=r["comparison"],
            report=r["report"],
            extra=json.loads(r["extra"]),
        )

    def study_images(self, study_id: str) -> list[ImageRecord]:
        """The images of ``study_id`` the index references (empty for unknown studies)."""
        return [self.image(i) for i in self._images_by_study.get(study_id, [])]

    def image(self, row: int) -> ImageRecord:
        """The image at ``row`` of images.parquet.

        Raises:
            KeyError: no such row.
        """
        if not 0 <= row < len(self.images):
            raise KeyError(f"image {row} is not in the index")
        c = self._image_cols
        return ImageRecord(
            row=row,
            study_id=c["study_id"][row],
            path=c["path"][row],
            view=c["view"][row],
            image_id=c["image_id"][row],
        )

    def rejects(self) -> list[Reject]:
        """Records skipped when this version (and the versions it extends) were built."""
        path = self.root / self.version / REJECTS_FILE
        if not path.is_file():
            return []
        return [Reject(**json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines() if line]
