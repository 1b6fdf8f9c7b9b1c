"""Helpers shared by the tabular sources (MIMIC-CXR-JPG, CheXpert Plus, hospital exports)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from lexray.data.manifest import TEXT_COLUMNS
from lexray.data.sections import normalize_whitespace
from lexray.data.sources import SourceError, SourceResult
from lexray.data.study import Image, Reject


def require_columns(present: Iterable[str], columns: Iterable[str], path: Path, hint: str) -> None:
    """Raise a SourceError naming the missing columns, the ones the file has and how to map them."""
    have = list(present)
    missing = [c for c in columns if c not in have]
    if missing:
        raise SourceError(f"{path}: missing column(s) {missing}; present: {have[:30]}. {hint}")


def clean(value: object) -> str:
    """Whitespace-normalised text of a cell ("" for missing)."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    return normalize_whitespace(str(value))


def read_report(path: str | Path, source: str, record: str) -> tuple[str | None, Reject | None]:
    """The text of a report file, or a Reject (missing, non-UTF-8, empty)."""
    try:
        with open(path, "rb") as f:  # a str path: no pathlib object per report on 100k-study runs
            data = f.read()
    except FileNotFoundError:
        return None, Reject(source, record, "missing_report", f"report file {path} does not exist")
    except OSError as exc:
        return None, Reject(source, record, "unreadable_report", f"{path}: {exc}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, Reject(
            source,
            record,
            "non_utf8_report",
            f"{path}: not UTF-8 ({exc.reason} at byte {exc.start}); re-encode it",
        )
    if not text.strip():
        return None, Reject(source, record, "empty_report", f"{path} is empty")
    return text, None


class ImageChecker:
    """Finds absent image files with few system calls for the folder layout at hand.

    Measured on a 100k-study MIMIC-style tree: one ``stat`` per image (1-3 images per study folder)
    costs about half of one ``listdir`` per folder, but a flat export folder holding thousands of
    images is far cheaper to list once. So a folder is stat'ed per file until it has been asked about
    ``list_after`` times, then listed once and answered from memory.
    """

    def __init__(self, list_after: int = 3) -> None:
        self.list_after = list_after  # lookups in one folder before it is listed instead
        self._asked: dict[str, int] = {}
        self._listed: dict[str, set[str]] = {}

    def missing(self, images: Iterable[Image]) -> list[str]:
        """Paths of ``images`` that do not exist, in order."""
        out = []
        for img in images:
            folder, name = os.path.split(img.path)
            names = self._listed.get(folder)
            if names is None:
                asked = self._asked.get(folder, 0) + 1
                self._asked[folder] = asked
                if asked <= self.list_after:
                    if not os.path.exists(img.path):
                        out.append(img.path)
                    continue
                try:
                    names = set(os.listdir(folder or "."))
                except OSError:
                    names = set()
                self._listed[folder] = names
            if name not in names:
                out.append(img.path)
        return out


# A row's columns; a source whose own columns carry these names (the manifest's text columns among
# them) maps them one to one.
ROW_COLUMNS = ("record", "study", "patient", "split", "image", "view", *TEXT_COLUMNS)


def studies_from_rows(
    rows: pd.DataFrame,
    source: str,
    check_images: bool = False,
    headerless: str = "impression",
) -> SourceResult:
    """Group per-image (or per-study) rows into studies.

    ``rows`` has the string columns of :data:`ROW_COLUMNS`: ``record`` names the row for rejects
    ("file.csv:line 7"; a study of several rows is rejected as "file.csv:line 3, line 7"), ``study`` /
    ``patient`` are source ids (prefixed with ``source`` here), ``image``
    is one path ("" for a text-only row). A study's text is taken from its first row; when its findings
    and impression are both empty, its free-text ``report`` is parsed into sections.
    """
    from lexray.data.sections import parse_report
    from lexray.data.study import Study

    result = SourceResult()
    rows = rows.sort_values(["study", "image"], kind="stable")
    keys = rows["study"].to_numpy()
    if len(rows) == 0:
        return result
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    ends = np.r_[starts[1:], len(rows)]
    cols = {c: rows[c].to_numpy() for c in ROW_COLUMNS}
    checker = ImageChecker()
    for a, b in tqdm(
        zip(starts, ends, strict=True), total=len(starts), desc=source, unit="study", disable=None
    ):
        # A study rejected as a whole names every line it came from ("e.csv:line 3, line 7").
        places = list(dict.fromkeys(cols["record"][a:b]))
        record = ", ".join([places[0], *(p.rsplit(":", 1)[-1] for p in places[1:])])
        if len(set(cols["split"][a:b])) > 1 or len(set(cols["patient"][a:b])) > 1:
            result.rejects.append(
                Reject(
                    source,
                    record,
                    "inconsistent_study",
                    f"rows of study {keys[a]!r} disagree on patient or split",
                )
            )
            continue
        findings, impression = clean(cols["findings"][a]), clean(cols["impression"][a])
        indication, comparison = clean(cols["indication"][a]), clean(cols["comparison"][a])
        report = str(cols["report"][a])
        if not findings and not impression and report.strip():
            sections = parse_report(report, headerless=headerless)  # type: ignore[arg-type]
            findings, impression = sections.findings, sections.impression
            indication = indication or sections.indication
            comparison = comparison or sections.comparison
        if not findings and not impression:
            result.rejects.append(
                Reject(source, record, "empty_report", f"study {keys[a]!r} has no findings or impression")
            )
            continue
        seen: set[str] = set()
        images = []
        for i in range(a, b):
            path = cols["image"][i]
            if path and path not in seen:
                seen.add(path)
                images.append(Image(path=path, view=cols["view"][i] or None, image_id=Path(path).stem))
        if check_images and images:
            missing = set(checker.missing(images))
            for m in sorted(missing):
                hint = "" if os.path.isabs(m) else " (a relative path: set image_root to the images' folder)"
                result.rejects.append(Reject(source, record, "missing_image", f"{m} does not exist{hint}"))
            images = [i for i in images if i.path not in missing]
            if not images:
                result.rejects.append(
                    Reject(source, record, "no_images", f"no image of study {keys[a]!r} exists")
                )
                continue
        result.studies.append(
            Study(
                study_id=f"{source}-{keys[a]}",
                patient_id=f"{source}-{cols['patient'][a]}",
                source=source,
                split=cols["split"][a],
                images=tuple(images),
                findings=findings,
                impression=impression,
                indication=indication,
                comparison=comparison,
                report=report if report.strip() else _compose(findings, impression),
            )
        )
    return result


def _compose(findings: str, impression: str) -> str:
    return "\n".join(f"{h}: {t}" for h, t in (("FINDINGS", findings), ("IMPRESSION", impression)) if t)
