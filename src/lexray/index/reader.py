"""Reading a committed index version: tables, vectors (memory-mapped) and FAISS, checked against each other.

Every file of a version is checked as it is read; a missing, truncated or garbled one is an
:class:`IndexFormatError` that names the file and the command that rebuilds the index.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pandas as pd
import pyarrow as pa
import yaml

from lexray.config import load_config
from lexray.data.manifest import ManifestError, read_rejects, read_table
from lexray.data.study import Image, Reject, Study
from lexray.errors import LexrayError
from lexray.index import _faiss, _legacy
from lexray.index._layout import (
    CONFIG_FILE,
    CURRENT_FILE,
    FAISS_FILES,
    FORMAT_VERSION,
    IMAGE_COLUMNS,
    IMAGES_FILE,
    INFO_FILE,
    META_FILES,
    READABLE_FORMATS,
    REJECTS_FILE,
    STUDIES_FILE,
    TEXT_COLUMNS,
    VECTOR_FILES,
    IndexFormatError,
)
from lexray.index.config import IndexConfig, Modality
from lexray.index.model import ModelRef

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
    except ManifestError as exc:
        # Its own advice (rebuild the manifest) is not the fix for a file inside an index.
        why = str(exc).split("; rebuild")[0]
        raise IndexFormatError(_damaged(root, path, why[:300], info)) from exc
    except _READ_ERRORS as exc:
        why = str(exc).splitlines()[-1].strip() if str(exc).strip() else type(exc).__name__
        raise IndexFormatError(_damaged(root, path, f"{type(exc).__name__}: {why[:200]}", info)) from exc


def _read_frame(root: Path, path: Path, columns: Sequence[str], info: dict[str, Any]) -> pd.DataFrame:
    frame = _read_part(root, path, info, lambda: pd.read_parquet(path))
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise IndexFormatError(_damaged(root, path, f"no column {', '.join(missing)}", info))
    return frame


def _read_studies(root: Path, path: Path, info: dict[str, Any]) -> pa.Table:
    """The studies table in manifest schema, whichever format wrote it."""
    if info["format"] == 1:
        frame = _read_frame(root, path, _legacy.STUDY_COLUMNS_V1, info)
        return _read_part(root, path, info, lambda: _legacy.studies_table_v1(frame))
    return _read_part(root, path, info, lambda: read_table(path))


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
        self.studies_table: pa.Table = _read_studies(root, vdir / STUDIES_FILE, info)  # manifest schema
        # One row per study with the record's text columns; the nested images and extra stay in Arrow.
        self.studies: pd.DataFrame = self.studies_table.drop_columns(["images", "extra"]).to_pandas()
        self.images: pd.DataFrame = _read_frame(root, vdir / IMAGES_FILE, IMAGE_COLUMNS, info)
        # Plain lists for per-hit lookups: pandas row access costs ~0.1 ms, too slow per result, and
        # building every Study up front (iter_table) ~7 us a study at load.
        self._study_cols = {c: self.studies[c].tolist() for c in self.studies.columns}
        self._extra = self.studies_table.column("extra").combine_chunks()
        self._study_rows = {sid: i for i, sid in enumerate(self._study_cols["study_id"])}
        self._image_cols = {c: self.images[c].tolist() for c in IMAGE_COLUMNS}
        self._side_study_ids: dict[str, list[str]] = {}
        self._images_by_study: dict[str, list[int]] = {}
        for i, sid in enumerate(self._image_cols["study_id"]):
            self._images_by_study.setdefault(sid, []).append(i)
        self._meta: dict[str, pd.DataFrame] = {}
        self._vectors: dict[str, np.ndarray] = {}
        self._faiss: dict[str, faiss.Index] = {}
        _faiss.set_threads(config.faiss)
        for m in self.modalities:
            meta = (
                self.images if m == "image" else _read_frame(root, vdir / META_FILES[m], TEXT_COLUMNS, info)
            )
            vectors = _read_vectors(root, vdir / VECTOR_FILES[m], self.embed_dim, mmap, info)
            faiss_file = vdir / FAISS_FILES[m]
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
        """Load the committed version of the index at ``path`` (format 1 is migrated as it is read).

        Raises:
            IndexFormatError: no committed version (never built, or the first build never finished),
                files from an unknown format version, or a damaged file.
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
        if not isinstance(info, dict) or info.get("format") not in READABLE_FORMATS:
            found = info.get("format") if isinstance(info, dict) else None
            raise IndexFormatError(
                f"{vdir} has index format {found}; this lexray reads formats "
                f"{', '.join(map(str, READABLE_FORMATS))} (upgrade lexray for a newer one)"
            )
        missing = [k for k in ("modalities", "embed_dim", "model") if k not in info]
        if missing:
            raise IndexFormatError(_damaged(root, info_file, f"no {', '.join(missing)}", info))
        config_file = vdir / CONFIG_FILE
        config = _read_part(root, config_file, info, lambda: load_config(IndexConfig, config_file))
        return cls(root, version, info, config, mmap)

    def with_search_params(self, **faiss_overrides: Any) -> RetrievalIndex:
        """Change query-time FAISS parameters (e.g. ``hnsw_ef_search=128``) in place; returns self."""
        self.config = replace(self.config, faiss=replace(self.config.faiss, **faiss_overrides))
        for index in self._faiss.values():
            _faiss.configure_search(index, self.config.faiss)
        return self

    @property
    def format(self) -> int:
        """The on-disk format of this version (:data:`FORMAT_VERSION` for versions this lexray writes)."""
        return int(self.info.get("format", FORMAT_VERSION))

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
        images = tuple(
            Image(path=rec.path, view=rec.view or None, image_id=rec.image_id or None)
            for rec in self.study_images(study_id)
        )
        row = {c: v[i] for c, v in self._study_cols.items()}
        return Study(**row, images=images, extra=dict(self._extra[i].as_py()))

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
        """Records skipped when this version (and the versions it extends) were built.

        Raises:
            IndexFormatError: the rejects file is damaged.
        """
        path = self.root / self.version / REJECTS_FILE
        if not path.is_file():
            return []
        if self.format == 1:
            sources = dict(zip(self._study_cols["study_id"], self._study_cols["source"], strict=True))
            return _read_part(self.root, path, self.info, lambda: _legacy.read_rejects_v1(path, sources))
        return _read_part(self.root, path, self.info, lambda: read_rejects(path))
