"""The study manifest on disk: one Parquet file of :class:`Study` records plus a rejects file beside it.

Layout (schema version 1), one row per study::

    study_id, patient_id, source, split: string
    findings, impression, indication, comparison, report: string ("" when absent)
    images: list<struct<path: string, view: string (nullable), image_id: string (nullable)>>
    extra: map<string, string>

The schema version and the lexray version that wrote the file are stored in the Parquet key-value
metadata (``lexray.schema_version``, ``lexray.version``); :func:`read_manifest` refuses files without
them or from a newer schema. Writes are atomic (temporary file in the same folder, then rename), so a
crash never leaves a half-written manifest. Skipped records go to ``<stem>.rejects.jsonl`` (one JSON
object per line: source, record, reason, detail).
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Collection, Iterable, Iterator
from dataclasses import asdict
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from lexray import __version__
from lexray.data.study import Image, Reject, Study, rejects_path
from lexray.errors import LexrayError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
_META_VERSION = b"lexray.schema_version"
_META_LEXRAY = b"lexray.version"

# The report-text columns of a study, in schema order; the sources' rows use the same names.
TEXT_COLUMNS = ("findings", "impression", "indication", "comparison", "report")
_IMAGE_TYPE = pa.struct([("path", pa.string()), ("view", pa.string()), ("image_id", pa.string())])

SCHEMA = pa.schema(
    [
        ("study_id", pa.string()),
        ("patient_id", pa.string()),
        ("source", pa.string()),
        ("split", pa.string()),
        *[(c, pa.string()) for c in TEXT_COLUMNS],
        ("images", pa.list_(_IMAGE_TYPE)),
        ("extra", pa.map_(pa.string(), pa.string())),
    ]
)


class ManifestError(LexrayError, ValueError):
    """A manifest file is missing, not a lexray manifest, or from an unsupported schema version."""


def _atomic_target(path: Path) -> Path:
    # A unique name in the same folder (so the final rename is atomic), created with the normal umask
    # permissions (mkstemp would make it private).
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def studies_to_table(studies: Iterable[Study]) -> pa.Table:
    """Arrow table (manifest schema, without file metadata) from study records.

    Nested columns are built from flat value lists and offsets (no dict per image), which keeps
    100k-study manifests fast to write.

    Raises:
        ValueError: two studies share a study id.
    """
    cols: dict[str, list] = {
        name: [] for name in ("study_id", "patient_id", "source", "split", *TEXT_COLUMNS)
    }
    img_offsets, img_path, img_view, img_id = [0], [], [], []
    extra_offsets, extra_keys, extra_values = [0], [], []
    seen: set[str] = set()
    for s in studies:
        if s.study_id in seen:
            raise ValueError(
                f"duplicate study id {s.study_id!r} (source {s.source}): study ids must be unique in a "
                "manifest; prefix them with the source when mixing datasets"
            )
        seen.add(s.study_id)
        cols["study_id"].append(s.study_id)
        cols["patient_id"].append(s.patient_id)
        cols["source"].append(s.source)
        cols["split"].append(s.split)
        for c in TEXT_COLUMNS:
            cols[c].append(getattr(s, c))
        for img in s.images:
            img_path.append(img.path)
            img_view.append(img.view)
            img_id.append(img.image_id)
        img_offsets.append(len(img_path))
        extra_keys.extend(s.extra.keys())
        extra_values.extend(s.extra.values())
        extra_offsets.append(len(extra_keys))
    images = pa.ListArray.from_arrays(
        pa.array(img_offsets, pa.int32()),
        pa.StructArray.from_arrays(
            [pa.array(img_path, pa.string()), pa.array(img_view, pa.string()), pa.array(img_id, pa.string())],
            fields=list(_IMAGE_TYPE),
        ),
    )
    extra = pa.MapArray.from_arrays(
        pa.array(extra_offsets, pa.int32()),
        pa.array(extra_keys, pa.string()),
        pa.array(extra_values, pa.string()),
    )
    arrays = [pa.array(cols[name], pa.string()) for name in cols] + [images, extra]
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


def write_table(table: pa.Table, path: str | Path, rejects: list[Reject] | None = None) -> Path:
    """Write a table in manifest schema atomically (see :func:`write_manifest`)."""
    path = Path(path)
    if table.schema.remove_metadata() != SCHEMA:
        table = table.select(SCHEMA.names).cast(SCHEMA)
    table = table.replace_schema_metadata(
        {_META_VERSION: str(SCHEMA_VERSION).encode(), _META_LEXRAY: __version__.encode()}
    )
    tmp = _atomic_target(path)
    try:
        # Page checksums let a reader tell a damaged page from data (a flipped byte in a report).
        pq.write_table(table, tmp, compression="zstd", write_page_checksum=True)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    write_rejects(rejects, rejects_path(path))
    return path


def write_manifest(studies: Iterable[Study], path: str | Path, rejects: list[Reject] | None = None) -> Path:
    """Write studies as a schema-versioned Parquet manifest, atomically.

    Args:
        studies: the records; study ids must be unique.
        path: the ``.parquet`` file to write (parent folders are created).
        rejects: records skipped while building the studies. Written to ``<stem>.rejects.jsonl``
            beside the manifest (an empty file for ``[]``); with ``None`` a stale rejects file from an
            earlier run is removed, because it would no longer describe this manifest.

    Returns:
        The manifest path.

    Raises:
        ValueError: two studies share a study id.
    """
    return write_table(studies_to_table(studies), path, rejects)


def write_rejects(rejects: list[Reject] | None, path: str | Path) -> Path | None:
    """Write rejects as JSON lines atomically; ``None`` removes an existing file. Returns the path or None."""
    path = Path(path)
    if rejects is None:
        path.unlink(missing_ok=True)
        return None
    tmp = _atomic_target(path)
    try:
        with tmp.open("w", encoding="utf-8") as f:
            for r in rejects:
                f.write(json.dumps(asdict(r), ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_rejects(path: str | Path) -> list[Reject]:
    """Rejects of a manifest (pass the manifest or the ``.rejects.jsonl`` path); [] when there is none."""
    p = Path(path)
    if p.suffix != ".jsonl":
        p = rejects_path(p)
    if not p.is_file():
        return []
    out = []
    fields = {"source", "record", "reason", "detail"}
    with p.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                item = json.loads(raw.decode("utf-8"))
            except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError too
                raise ManifestError(
                    f"{p}:line {number} is not a reject record ({type(exc).__name__}); "
                    "rebuild the manifest with `lexray data prepare`, which rewrites it"
                ) from exc
            if not (
                isinstance(item, dict)
                and set(item) <= fields
                and all(isinstance(v, str) for v in item.values())
                and {"source", "record", "reason"} <= set(item)
            ):
                raise ManifestError(
                    f"{p}:line {number} is not a reject record (source, record, reason, detail); "
                    "rebuild the manifest with `lexray data prepare`, which rewrites it"
                )
            out.append(Reject(**item))
    return out


def check_output_manifest(
    out: str | Path, inputs: Iterable[str | Path] = (), companions: Iterable[str | Path] = ()
) -> Path:
    """Refuse a manifest path to write that would overwrite an input or a file that is not a manifest.

    Call it before any work, so that a bad ``--out`` costs nothing and never touches an input.

    Args:
        out: the manifest file to write.
        inputs: files the run reads; neither ``out``, its rejects file nor a companion may be one.
        companions: further files written beside ``out`` (e.g. the saved recipe).

    Returns:
        ``out`` as a Path.

    Raises:
        ManifestError: ``out`` is a folder, lies under a file, would overwrite an input (itself, its
            rejects file or a companion), or exists without being a lexray manifest.
    """
    out = Path(out)
    if out.is_dir():
        raise ManifestError(
            f"--out {out} is a folder: give the manifest file to write, e.g. {out / 'manifest.parquet'}"
        )
    for parent in out.parents:
        if parent.exists() and not parent.is_dir():
            raise ManifestError(f"--out {out}: {parent} is a file, not a folder; choose another --out")
    protected = {_canonical(p): Path(p) for p in inputs}
    for target in (out, rejects_path(out), *map(Path, companions)):
        if _canonical(target) in protected:
            raise ManifestError(
                f"--out {out} would overwrite the input {protected[_canonical(target)]}; choose another --out"
            )
        if target != out and target.is_dir():
            raise ManifestError(f"--out {out}: {target} is a folder; remove it or choose another --out")
    if out.exists() and not is_manifest(out):
        raise ManifestError(
            f"--out {out} exists and is not a lexray manifest; choose another --out (or delete it)"
        )
    return out


def _canonical(path: str | Path) -> Path:
    """The path with symlinks resolved, or just made absolute when it cannot be (a NUL byte, a loop)."""
    try:
        return Path(path).resolve()
    except (OSError, ValueError, RuntimeError):
        return Path(os.path.abspath(path))


def is_manifest(path: str | Path) -> bool:
    """True when ``path`` is a Parquet file carrying lexray's manifest schema version."""
    try:
        return _META_VERSION in (pq.read_schema(path).metadata or {})
    except (pa.ArrowException, OSError):
        return False


def read_table(path: str | Path, columns: list[str] | None = None) -> pa.Table:
    """The manifest as an Arrow table (for vectorised work such as statistics), after checking its schema.

    Every column is read and its page checksums verified, also when only some are returned, so damage
    anywhere in the file is reported rather than passed on.

    Raises:
        ManifestError: the file is absent, not a lexray manifest, from a newer schema version, lacks a
            column of the schema, or is damaged (a page that fails to decode or its checksum).
    """
    path = Path(path)
    if path.is_dir():
        raise ManifestError(f"manifest {path} is a folder: give the .parquet file")
    if not path.is_file():
        raise ManifestError(f"manifest {path} does not exist: build one with `lexray data prepare`")
    rebuild = "rebuild it with `lexray data prepare`"
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError) as exc:
        raise ManifestError(f"{path} is not a Parquet file ({_brief(exc)}); {rebuild}") from exc
    meta = schema.metadata or {}
    if _META_VERSION not in meta:
        raise ManifestError(f"{path} has no lexray schema version: it was not written by write_manifest")
    try:
        version = int(meta[_META_VERSION])
    except ValueError as exc:
        raise ManifestError(f"{path}: unreadable schema version {meta[_META_VERSION]!r}; {rebuild}") from exc
    if version > SCHEMA_VERSION:
        raise ManifestError(
            f"{path} uses manifest schema {version}, newer than this lexray's {SCHEMA_VERSION}: upgrade lexray"
        )
    missing = [n for n in SCHEMA.names if n not in schema.names]
    if missing:
        raise ManifestError(f"{path} lacks the manifest column(s) {missing}; {rebuild}")
    try:
        table = pq.read_table(path, page_checksum_verification=True)
        table.validate(full=True)
    except (pa.ArrowException, OSError) as exc:
        raise ManifestError(f"{path} is damaged ({_brief(exc)}); {rebuild}") from exc
    if table.schema.remove_metadata() != SCHEMA:
        try:
            table = table.select(SCHEMA.names).cast(SCHEMA)
        except (pa.ArrowException, ValueError) as exc:
            raise ManifestError(f"{path}: a column has the wrong type ({_brief(exc)}); {rebuild}") from exc
    return table.select(columns) if columns is not None else table


def _brief(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= 200 else text[:200] + "..."


def iter_table(table: pa.Table) -> Iterator[Study]:
    """Study records from a manifest-schema table, in row order.

    Nested columns are read as flat value lists plus offsets (no dict per image), the mirror of
    :func:`studies_to_table`.
    """
    if table.num_rows == 0:
        return
    cols = {
        name: table.column(name).to_pylist()
        for name in ("study_id", "patient_id", "source", "split", *TEXT_COLUMNS)
    }
    images = table.column("images").combine_chunks()
    img_offsets = (images.offsets.to_numpy() - images.offsets[0].as_py()).tolist()
    flat = images.flatten()
    img_path, img_view, img_id = (flat.field(k).to_pylist() for k in ("path", "view", "image_id"))
    extra = table.column("extra").combine_chunks()
    ex_offsets = (extra.offsets.to_numpy() - extra.offsets[0].as_py()).tolist()
    ex_keys, ex_values = extra.keys.to_pylist(), extra.items.to_pylist()
    for i in range(table.num_rows):
        a, b = img_offsets[i], img_offsets[i + 1]
        c, d = ex_offsets[i], ex_offsets[i + 1]
        yield Study(
            study_id=cols["study_id"][i],
            patient_id=cols["patient_id"][i],
            source=cols["source"][i],
            split=cols["split"][i],
            images=tuple(Image(img_path[k], img_view[k], img_id[k]) for k in range(a, b)),
            findings=cols["findings"][i],
            impression=cols["impression"][i],
            indication=cols["indication"][i],
            comparison=cols["comparison"][i],
            report=cols["report"][i],
            extra=dict(zip(ex_keys[c:d], ex_values[c:d], strict=True)),
        )


def read_manifest(path: str | Path) -> list[Study]:
    """Load every study of a manifest written by :func:`write_manifest`.

    Raises:
        ManifestError: the file is absent, not a lexray manifest, or from a newer schema version.
    """
    return list(iter_table(read_table(path)))


def read_studies(
    manifest: str | Path | None = None, openi: str | Path | None = None, split_file: str | Path | None = None
) -> list[Study]:
    """Studies from a manifest, or straight from the Open-i report archive (splits from ``split_file``).

    Raises:
        ValueError: neither source is given.
        ManifestError: the manifest cannot be read.
    """
    if manifest:
        return read_manifest(manifest)
    if openi:
        from lexray.data.sources.openi import load_openi

        result = load_openi(openi, split_file=split_file or None)
        if result.rejects:
            log.info("Open-i: %d records skipped by the reader", len(result.rejects))
        return result.studies
    raise ValueError("give a manifest, or the Open-i report archive (with its split file)")


def select(
    studies: Iterable[Study],
    split: str | Collection[str] | None = None,
    source: str | Collection[str] | None = None,
) -> list[Study]:
    """Studies of the given split(s) and source(s); ``None`` keeps all.

    Example: ``select(studies, split="train", source=("openi", "mimic-cxr"))``.
    """
    splits = {split} if isinstance(split, str) else (set(split) if split is not None else None)
    sources = {source} if isinstance(source, str) else (set(source) if source is not None else None)
    return [
        s
        for s in studies
        if (splits is None or s.split in splits) and (sources is None or s.source in sources)
    ]
