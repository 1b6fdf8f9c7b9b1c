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


@dataclass
class SourceResult:
    """What a source reader produced: the studies and the skipped records with reasons."""

    studies: list[Study] = field(default_factory=list)  # readable studies, in a stable order
    rejects: list[Reject] = field(default_factory=list)  # skipped records with their reasons

    def extend(self, other: SourceResult) -> None:
        """Append another result's studies and rejects (used when combining sources)."""
        self.studies.extend(other.studies)
        self.rejects.extend(other.rejects)


__all__ = ["SourceResult"]
