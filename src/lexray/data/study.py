"""The ``Study`` record every stage reads: one imaging study with its images and report sections."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Image:
    """One radiograph of a study."""

    path: str  # file path (absolute, or relative to the manifest's image root)
    view: str | None = None  # view position as given by the source: "PA", "AP", "LATERAL", "LL", ... or None
    image_id: str | None = None  # the source's own image id (dicom_id in MIMIC, image file stem in Open-i)


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


@dataclass(frozen=True)
class Reject:
    """A source record that was skipped, with the reason (written to ``<manifest>.rejects.jsonl``)."""

    source: str  # the source the record came from ("openi", "mimic-cxr", ...)
    record: str  # where it is: a file name, "file.csv:row 17", a study id
    reason: str  # short machine-readable cause, e.g. "empty_report", "bad_xml", "missing_image"
    detail: str = ""  # a human-readable explanation and, where possible, the fix
