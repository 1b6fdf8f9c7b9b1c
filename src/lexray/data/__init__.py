"""Data stage: ``Study`` records, the Parquet manifest, report sections, radiograph I/O and dataset sources.

Sub-modules: :mod:`~lexray.data.study` (records), :mod:`~lexray.data.manifest` (Parquet manifest and
rejects), :mod:`~lexray.data.sections` (report section parser), :mod:`~lexray.data.images` (PNG/JPEG/DICOM
loading, resize and pad), :mod:`~lexray.data.views` (view positions), :mod:`~lexray.data.sources`
(Open-i, MIMIC-CXR-JPG, CheXpert Plus, hospital exports), :mod:`~lexray.data.splits` (seeded
patient-level splits), :mod:`~lexray.data.download` (resumable, verified downloads),
:mod:`~lexray.data.prepare` (sources -> manifest) and :mod:`~lexray.data.stats` (manifest statistics).
"""

from lexray.data.study import Image, Reject, Study

__all__ = ["Image", "Reject", "Study"]
