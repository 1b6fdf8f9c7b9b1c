"""The ``Study`` record every stage reads: one imaging study with its images and report sections.

The record's helpers live here, once, so every stage applies the same rule: :meth:`Image.resolve`
(where an image file is), :meth:`Study.text` (a study's text by field name, :data:`TextField`),
:func:`normalize_report` (when two reports count as identical) and :func:`rejects_path` (where the
rejects of an output file go).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

#: The study texts a stage can embed, label or compare: a section, findings + impression, or the raw report.
TextField = Literal["report_text", "findings", "impression", "report"]
TEXT_FIELDS: tuple[str, ...] = get_args(TextField)

_NON_WORD = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class Image:
    """One radiograph of a study."""

    path: str  # file path (absolute, or relative to the manifest's image root)
    view: str | None = None  # view position as given by the source: "PA", "AP", "LATERAL", "LL", ... or None
    image_id: str | None = None  # the source's own image id (dicom_id in MIMIC, image file stem in Open-i)

    def resolve(self, root: str | Path) -> Path:
        """The image file: :attr:`path` (``~`` expanded) if absolute, else under ``root``."""
        return resolve_path(self.path, root)


def resolve_path(path: str | Path, root: str | Path) -> Path:
    """``path`` with ``~`` expanded, taken as is when absolute and under ``root`` otherwise.

    The one rule for image paths of a manifest (:meth:`Image.resolve`) and of label files.
    """
    p = Path(path).expanduser()
    return p if p.is_absolute() else Path(root) / p


@dataclass(frozen=True)
class Study:
    """One imaging study: its images and the sections of its free-text report.

    Empty sections are "" (never None) so text code needs no None checks.
    """

    study_id: str  # unique within the manifest (prefixed with the source when sources are mixed)
    patient_id: str  # for patient-level splits; equals study_id when the source has no patient id
    source: str  # "openi", "mimic-cxr", "chexpert-plus", or the name given to a hospital export
    split: str  # "train", "val", "test" (or "" when unassigned)
    images: tuple[Image, ...] = ()
    findings: str = ""
    impression: str = ""
    indication: str = ""
    comparison: str = ""
    report: str = ""  # the raw report text as the source gave it
    extra: dict[str, str] = field(default_factory=dict)  # source-specific fields, e.g. MeSH terms

    @property
    def report_text(self) -> str:
        """Findings and impression joined: the text most stages embed."""
        return " ".join(s for s in (self.findings, self.impression) if s).strip()

    def text(self, name: TextField) -> str:
        """The study's text named ``name`` (one of :data:`TEXT_FIELDS`).

        Raises:
            ValueError: ``name`` is not a text field.
        """
        if name not in TEXT_FIELDS:
            raise ValueError(f"study text field {name!r} is not one of {', '.join(TEXT_FIELDS)}")
        return self.report_text if name == "report_text" else str(getattr(self, name))


def normalize_report(text: str) -> str:
    """The form under which two reports count as identical: lower case, only letters/digits, single spaces."""
    return _NON_WORD.sub(" ", text.lower()).strip()


@dataclass(frozen=True)
class Reject:
    """A source record that was skipped, with the reason (written to ``<manifest>.rejects.jsonl``)."""

    source: str  # the source the record came from ("openi", "mimic-cxr", ...)
    record: str  # where it is: a file name, "file.csv:row 17", a study id
    reason: str  # short machine-readable cause, e.g. "empty_report", "bad_xml", "missing_image"
    detail: str = ""  # a human-readable explanation and, where possible, the fix


def rejects_path(output: str | Path) -> Path:
    """The rejects file that belongs to an output file: ``<stem>.rejects.jsonl`` in the same folder.

    ``manifest.parquet`` -> ``manifest.rejects.jsonl``; ``labels.v2.jsonl`` -> ``labels.v2.rejects.jsonl``.
    """
    p = Path(output)
    return p.with_name(f"{p.stem}.rejects.jsonl")
