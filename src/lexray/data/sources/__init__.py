"""Dataset readers: each turns one dataset layout into :class:`~lexray.data.study.Study` records.

=================  ==========================================  =================================
source             reader                                      input
=================  ==========================================  =================================
``openi``          :func:`lexray.data.sources.openi.load_openi`        NLMCXR_reports.tgz or its folder
``mimic-cxr``      :func:`lexray.data.sources.mimic.load_mimic_cxr`    MIMIC-CXR-JPG tree + reports
``chexpert-plus``  :func:`lexray.data.sources.chexpert_plus.load_chexpert_plus`  report CSV
hospital exports   :func:`lexray.data.sources.hospital.load_hospital`  CSV / JSONL / Parquet + mapping
=================  ==========================================  =================================

Every reader returns a :class:`SourceResult`: the studies it could read and a :class:`Reject` for each
record it skipped, so one bad record never stops a run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lexray.data.study import Reject, Study
from lexray.errors import LexrayError


class SourceError(LexrayError, ValueError):
    """A source cannot be read at all (wrong format, truncated archive, unmapped columns): a setup error."""


class SourceNotFoundError(SourceError, FileNotFoundError):
    """A source's file or folder is absent (or is a folder where a file is needed, or the reverse)."""


@dataclass
class SourceResult:
    """What a source reader produced: the studies and the skipped records with reasons."""

    studies: list[Study] = field(default_factory=list)  # readable studies, in a stable order
    rejects: list[Reject] = field(default_factory=list)  # skipped records with their reasons
    rows_read: int = 0  # data records read from tabular inputs (each is in a study or in a reject)

    def extend(self, other: SourceResult) -> None:
        """Append another result's studies, rejects and row count (used when combining sources)."""
        self.studies.extend(other.studies)
        self.rejects.extend(other.rejects)
        self.rows_read += other.rows_read


__all__ = ["SourceError", "SourceNotFoundError", "SourceResult"]
