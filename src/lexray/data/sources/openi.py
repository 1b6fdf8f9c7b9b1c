"""Open-i (Indiana University chest X-ray collection): NLM's XML report archive -> studies.

Input: ``NLMCXR_reports.tgz`` (3,955 files ``ecgen-radiology/N.xml``), the folder it was extracted to,
or a folder holding the ``.tgz``. Each XML gives the sections as ``<AbstractText Label="FINDINGS">``
(also IMPRESSION, INDICATION, COMPARISON), MeSH terms (``<MeSH><major>``/``<automatic>``) and the image
ids (``<parentImage id="CXR1_1_IM-0001-3001">``), whose PNGs in ``NLMCXR_png.tgz`` are ``<image id>.png``.

Records:

* ``study_id`` = ``"openi-N"`` for ``N.xml``; ``patient_id`` = ``study_id`` (Open-i publishes no patient
  ids, so a seeded split is study-level here).
* ``extra["mesh_major"]`` / ``extra["mesh_automatic"]``: MeSH terms joined with ";";
  ``extra["xml"]``: the XML file name; ``extra["split_id"]``: the id the split file used for the study.
* images: ``<image_root>/<image id>.png`` (a bare ``<image id>.png`` without an image root); Open-i
  gives no per-image view position, so ``view`` is None.

Splits (``split_file``), recognised by content:

* R2Gen ``annotation.json`` (``{"train": [{"id": "CXR2384_IM-0942", "image_path": ["CXR2384_IM-0942/0.png",
  ...]}], "val": ..., "test": ...}``): the id is an image *folder* named after the study's image ids
  with the last ``-NNNN`` parts removed (``CXR2384_IM-0942`` -> images ``CXR2384_IM-0942-1001`` and
  ``-2001``, so ``openi-2384``); ids that are whole image ids are matched as such.
* PromptMRG (``{"id": "3321", "image_path": ["CXR3321_IM-1588-1001.png", ...]}``): the id is ``N``.
* Studies the file does not list get ``unlisted_split`` ("" by default: excluded from train/val/test
  selections; R2Gen leaves out studies without two images or without findings).

Without a split file, a seeded hash split (:func:`lexray.data.splits.patient_splits`) is used.
"""

from __future__ import annotations

import json
import logging
import re
import tarfile
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from lexray.data.sections import normalize_whitespace
from lexray.data.sources import SourceError, SourceNotFoundError, SourceResult
from lexray.data.splits import SplitError, normalize_split, patient_splits
from lexray.data.study import Image, Reject, Study

log = logging.getLogger(__name__)

SOURCE = "openi"
REPORTS_URL = "https://openi.nlm.nih.gov/imgs/collections/NLMCXR_reports.tgz"
IMAGES_URL = "https://openi.nlm.nih.gov/imgs/collections/NLMCXR_png.tgz"
ARCHIVE_NAME = "NLMCXR_reports.tgz"
_XML_NAME = re.compile(r"(?:^|/)(\d+)\.xml$")
_SECTION_LABELS = ("COMPARISON", "INDICATION", "FINDINGS", "IMPRESSION")


@dataclass(frozen=True)
class OpenIConfig:
    """How to read the Open-i report archive."""

    path: Path  # NLMCXR_reports.tgz, its extracted folder, or a folder holding the .tgz
    split_file: Path | None = None  # R2Gen or PromptMRG annotation.json; None = seeded hash split
    image_root: Path | None = None  # folder of the extracted NLMCXR_png.tgz PNGs; None = bare file names
    unlisted_split: str = ""  # split for studies the split file does not list ("" = unassigned)
    seed: int = 0  # seed of the hash split used without a split file
    val_fraction: float = 0.1  # share of studies in "val" for the hash split
    test_fraction: float = 0.2  # share of studies in "test" for the hash split


def _iter_xml(path: Path) -> Iterator[tuple[str, bytes]]:
    """(file name, bytes) of every ``N.xml`` in the archive or folder."""
    if path.is_dir():
        archive = path / ARCHIVE_NAME
        folder = path / "ecgen-radiology"
        if not folder.is_dir() and archive.is_file():
            path = archive
        else:
            files = sorted((folder if folder.is_dir() else path).glob("*.xml"))
            if not files:
                raise SourceNotFoundError(
                    f"{path}: no Open-i XML files (expected ecgen-radiology/N.xml or {ARCHIVE_NAME})"
                )
            for f in files:
                try:
                    data = f.read_bytes()
                except OSError as exc:
                    raise SourceError(f"{f}: cannot read the report ({exc.strerror or exc})") from exc
                yield f.name, data
            return
    if not path.is_file():
        raise SourceNotFoundError(f"{path} does not exist: pass {ARCHIVE_NAME} or its extracted folder")
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                if member.isfile() and _XML_NAME.search(member.name):
                    f = tar.extractfile(member)
                    if f is not None:
                        yield Path(member.name).name, f.read()
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        # A partial download ends inside a member or the gzip stream: refuse it whole, since the
        # reports it would still give are an arbitrary subset.
        raise SourceError(
            f"{path}: not a complete tar archive ({exc or type(exc).__name__}); download it again "
            "(`lexray data download openi` resumes and verifies it)"
        ) from exc


def _text(el: ET.Element | None) -> str:
    return normalize_whitespace("".join(el.itertext())) if el is not None else ""


def _parse_xml(name: str, data: bytes) -> dict:
    root = ET.fromstring(data)
    sections = {label: "" for label in _SECTION_LABELS}
    order: list[str] = []
    for el in root.iter("AbstractText"):
        label = (el.get("Label") or "").strip().upper()
        if label in sections:
            sections[label] = _text(el)
            order.append(label)
    mesh = root.find("MeSH")
    major = [t for t in (_text(e) for e in (mesh.findall("major") if mesh is not None else [])) if t]
    automatic = [t for t in (_text(e) for e in (mesh.findall("automatic") if mesh is not None else [])) if t]
    images = [el.get("id", "").strip() for el in root.findall("parentImage")]
    return {
        "sections": sections,
        "order": order,
        "mesh_major": major,
        "mesh_automatic": automatic,
        "images": [i for i in images if i],
    }


def _report_text(sections: dict[str, str], order: list[str]) -> str:
    # Open-i gives sections, not a free-text report: rebuild one in the XML's order, MIMIC-style.
    return "\n".join(f"{label}: {sections[label]}" for label in order if sections[label])


def _load_split_file(split_file: Path) -> list[tuple[str, str, list[str]]]:
    """(split, id, image paths) entries of an R2Gen / PromptMRG annotation.json."""
    shape = 'expected {"train": [{"id": ..., "image_path": [...]}, ...], "val": [...], "test": [...]}'
    try:
        data = json.loads(split_file.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:  # UnicodeDecodeError, JSONDecodeError
        raise SourceError(f"split file {split_file}: cannot read JSON ({exc or type(exc).__name__})") from exc
    if not isinstance(data, dict):
        raise SourceError(f"split file {split_file}: {shape}")
    entries = []
    for key, items in data.items():
        # One public copy of the R2Gen file names its test list "    "; a blank key can only be that.
        try:
            split = "test" if not key.strip() else normalize_split(key)
        except SplitError as exc:
            raise SourceError(f"split file {split_file}: {exc}") from exc
        if not isinstance(items, list):
            raise SourceError(f"split file {split_file}: {key!r} holds {type(items).__name__}; {shape}")
        for i, item in enumerate(items):
            paths = item.get("image_path", []) if isinstance(item, dict) else None
            if (
                not isinstance(item, dict)
                or isinstance(item.get("id"), (dict, list))
                or not isinstance(paths, list)
            ):
                raise SourceError(f"split file {split_file}: {key}[{i}] is not an entry; {shape}")
            entries.append((split, str(item.get("id", "")).strip(), [str(p) for p in paths]))
    return entries


def _match_split(
    entries: list[tuple[str, str, list[str]]], xml_ids: set[str], image_to_study: dict[str, str]
) -> tuple[dict[str, tuple[str, str]], list[str]]:
    """study id -> (split, split-file id), and the split-file ids that match no study."""
    prefix_to_studies: dict[str, set[str]] = {}
    for image_id, study in image_to_study.items():
        parts = image_id.split("-")
        for k in range(2, len(parts) + 1):  # "CXR2384_IM", "CXR2384_IM-0942", "CXR2384_IM-0942-1001"
            prefix_to_studies.setdefault("-".join(parts[:k]), set()).add(study)
    out: dict[str, tuple[str, str]] = {}
    unmatched: list[str] = []
    for split, ident, image_paths in entries:
        candidates: set[str] = set()
        if ident.isdigit() and ident in xml_ids:
            candidates = {f"{SOURCE}-{ident}"}
        elif ident in prefix_to_studies:
            candidates = prefix_to_studies[ident]
        else:
            for p in image_paths:  # PromptMRG style: the PNG names themselves
                stem = Path(p).stem
                if stem in image_to_study:
                    candidates.add(image_to_study[stem])
        if len(candidates) != 1:
            unmatched.append(ident)
            continue
        out[candidates.pop()] = (split, ident)
    return out, unmatched


def load_openi(
    path: str | Path,
    split_file: str | Path | None = None,
    seed: int = 0,
    *,
    image_root: str | Path | None = None,
    unlisted_split: str = "",
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    keep_empty: bool = False,
) -> SourceResult:
    """Read the Open-i report archive into studies (see the module docstring for the record layout).

    Args:
        path: ``NLMCXR_reports.tgz``, its extracted folder, or a folder holding the ``.tgz``.
        split_file: an R2Gen or PromptMRG ``annotation.json``; None = seeded hash split.
        seed: seed of the hash split.
        image_root: folder of the PNGs (``NLMCXR_png.tgz`` extracted); None = bare ``<id>.png`` paths.
        unlisted_split: split of studies that the split file does not list.
        val_fraction: "val" share of the hash split.
        test_fraction: "test" share of the hash split.
        keep_empty: keep reports with neither findings nor impression instead of rejecting them.

    Returns:
        Studies sorted by XML number; rejects for unparsable XML ("bad_xml") and reports with neither
        findings nor impression ("empty_report").
    """
    path = Path(path)
    result = SourceResult()
    parsed: list[tuple[int, str, dict]] = []
    for name, data in tqdm(_iter_xml(path), desc="open-i xml", unit="report", disable=None):
        m = _XML_NAME.search(name)
        number = int(m.group(1)) if m else -1
        try:
            rec = _parse_xml(name, data)
        except ET.ParseError as exc:
            result.rejects.append(Reject(SOURCE, name, "bad_xml", f"XML parse error: {exc}"))
            continue
        s = rec["sections"]
        if not keep_empty and not s["FINDINGS"] and not s["IMPRESSION"]:
            result.rejects.append(
                Reject(SOURCE, name, "empty_report", "the report has neither FINDINGS nor IMPRESSION text")
            )
            continue
        parsed.append((number, name, rec))
    parsed.sort(key=lambda t: t[0])

    study_ids = [f"{SOURCE}-{n}" for n, _, _ in parsed]
    if split_file is not None:
        image_to_study = {
            img: sid for sid, (_, _, rec) in zip(study_ids, parsed, strict=True) for img in rec["images"]
        }
        assigned, unmatched = _match_split(
            _load_split_file(Path(split_file)), {str(n) for n, _, _ in parsed}, image_to_study
        )
        if unmatched:
            log.warning(
                "%d split-file entries match no readable Open-i study (e.g. %s)",
                len(unmatched),
                unmatched[:3],
            )
        unlisted = normalize_split(unlisted_split)
    else:
        hashed = patient_splits(study_ids, val_fraction, test_fraction, seed)
        assigned = {sid: (split, "") for sid, split in hashed.items()}
        unlisted = ""
    root = Path(image_root) if image_root is not None else None
    for sid, (_, name, rec) in zip(study_ids, parsed, strict=True):
        s = rec["sections"]
        split, split_id = assigned.get(sid, (unlisted, ""))
        extra = {
            "xml": name,
            "mesh_major": ";".join(rec["mesh_major"]),
            "mesh_automatic": ";".join(rec["mesh_automatic"]),
        }
        if split_id:
            extra["split_id"] = split_id
        images = tuple(
            Image(path=str(root / f"{i}.png") if root is not None else f"{i}.png", view=None, image_id=i)
            for i in rec["images"]
        )
        result.studies.append(
            Study(
                study_id=sid,
                patient_id=sid,
                source=SOURCE,
                split=split,
                images=images,
                findings=s["FINDINGS"],
                impression=s["IMPRESSION"],
                indication=s["INDICATION"],
                comparison=s["COMPARISON"],
                report=_report_text(s, rec["order"]),
                extra=extra,
            )
        )
    return result


def load_openi_config(config: OpenIConfig) -> SourceResult:
    """:func:`load_openi` with the settings of an :class:`OpenIConfig`."""
    return load_openi(
        config.path,
        config.split_file,
        config.seed,
        image_root=config.image_root,
        unlisted_split=config.unlisted_split,
        val_fraction=config.val_fraction,
        test_fraction=config.test_fraction,
    )
