"""Data stage: ``Study`` records, the Parquet manifest, report sections, radiograph I/O and dataset sources.

Sub-modules: :mod:`~lexray.data.study` (records and their helpers: image paths, text fields, the
identical-report key, the rejects path), :mod:`~lexray.data.manifest` (Parquet manifest and
rejects), :mod:`~lexray.data.sections` (report section parser), :mod:`~lexray.data.images` (PNG/JPEG/DICOM
loading, resize and pad), :mod:`~lexray.data.views` (view positions), :mod:`~lexray.data.sources`
(Open-i, MIMIC-CXR-JPG, CheXpert Plus, hospital exports), :mod:`~lexray.data.splits` (seeded
patient-level splits), :mod:`~lexray.data.download` (resumable, verified downloads),
:mod:`~lexray.data.prepare` (sources -> manifest) and :mod:`~lexray.data.stats` (manifest statistics).
The ground floor: it imports no other stage (phantom radiographs live in :mod:`lexray.phantoms`).
"""

from lexray.data.study import TEXT_FIELDS, Image, Reject, Study, TextField, normalize_report, rejects_path

__all__ = ["TEXT_FIELDS", "Image", "Reject", "Study", "TextField", "normalize_report", "rejects_path"]
