"""MIMIC-CXR-JPG (images, splits, view positions) + MIMIC-CXR free-text reports -> studies.

Expected layout (PhysioNet, credentialed access; lexray never downloads it):

* ``<root>/mimic-cxr-2.0.0-split.csv[.gz]``: ``dicom_id, study_id, subject_id, split`` with split in
  {train, validate, test}.
* ``<root>/mimic-cxr-2.0.0-metadata.csv[.gz]``: ``dicom_id, subject_id, study_id, ViewPosition, ...``
  (other columns ignored). Optional: without it every view is unknown.
* images ``<root>/files/pNN/pNNNNNNNN/sNNNNNNNN/<dicom_id>.jpg`` (pNN = first two digits of the subject).
* reports ``<reports>/files/pNN/pNNNNNNNN/sNNNNNNNN.txt`` (from MIMIC-CXR's ``mimic-cxr-reports.zip``;
  ``<reports>`` defaults to ``<root>``, and may be the zip itself).

Records: ``study_id`` = ``"mimic-cxr-s<study>"``, ``patient_id`` = ``"mimic-cxr-p<subject>"``,
split "validate" -> "val", images sorted by dicom id with their ``ViewPosition``, sections from
:func:`lexray.data.sections.parse_report`, ``extra["mimic_study_id"]`` / ``extra["mimic_subject_id"]``.

Rejects: rows with a non-numeric id or an unknown split ("bad_row"), studies whose rows disagree on
subject or split ("inconsistent_study"), a missing / non-UTF-8 / empty report, a report with neither
findings nor impression ("no_findings_or_impression"), and (``check_images``) missing JPGs
("missing_image": the study is kept without them, or rejected when none is left).

The table work (reading, joining, grouping, building paths) is vectorised with pandas; the per-study
cost is reading one report file.
"""

from __future__ import annotations

import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lexray.data.sections import parse_report
from lexray.data.sources import SourceError, SourceNotFoundError, SourceResult
from lexray.data.sources._common import ImageChecker, read_report, require_columns
from lexray.data.sources._tables import read_table_file
from lexray.data.splits import SPLIT_ALIASES
from lexray.data.study import Image, Reject, Study

SOURCE = "mimic-cxr"


@dataclass(frozen=True)
class MimicCxrConfig:
    """Where MIMIC-CXR-JPG and the MIMIC-CXR reports are."""

    path: Path  # MIMIC-CXR-JPG root (split and metadata CSVs, files/pNN/...)
    reports: Path | None = None  # reports root (files/pNN/.../sNNN.txt) or mimic-cxr-reports.zip; None = path
    check_images: bool = True  # reject JPGs that are absent (a stat per image)


def _find(root: Path, kind: str) -> Path | None:
    for pattern in (f"mimic-cxr-*-{kind}.csv.gz", f"mimic-cxr-*-{kind}.csv"):
        hits = sorted(root.glob(pattern))
        if hits:
            return hits[-1]  # the newest version when several are present
    return None


class _ReportReader:
    """Reads ``files/pNN/pN/sN.txt`` from a folder or from mimic-cxr-reports.zip."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.zip: zipfile.ZipFile | None = None
        self.names: dict[str, str] = {}
        if root.is_file():
            if not zipfile.is_zipfile(root):
                raise SourceError(
                    f"{root}: not a zip archive (a partial download?); give mimic-cxr-reports.zip"
                )
            try:
                self.zip = zipfile.ZipFile(root)
            except (zipfile.BadZipFile, OSError) as exc:
                raise SourceError(f"{root}: unreadable zip archive ({exc}); download it again") from exc
            # Zip members may sit under a top folder ("mimic-cxr-reports/files/..."): index by the tail.
            for name in self.zip.namelist():
                i = name.find("files/")
                if i >= 0 and name.endswith(".txt"):
                    self.names[name[i:]] = name

    def read(self, rel: str, record: str) -> tuple[str | None, Reject | None]:
        if self.zip is None:
            return read_report(f"{self.root}/{rel}", SOURCE, record)
        member = self.names.get(rel)
        if member is None:
            return None, Reject(SOURCE, record, "missing_report", f"{rel} is not in {self.root}")
        try:
            data = self.zip.read(member)
        except (zipfile.BadZipFile, OSError, zlib.error, EOFError) as exc:  # a damaged member
            return None, Reject(SOURCE, record, "unreadable_report", f"{rel} in {self.root}: {exc}")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            return None, Reject(SOURCE, record, "non_utf8_report", f"{rel}: not UTF-8 ({exc.reason})")
        if not text.strip():
            return None, Reject(SOURCE, record, "empty_report", f"{rel} is empty")
        return text, None

    def close(self) -> None:
        if self.zip is not None:
            self.zip.close()


def load_mimic_cxr(
    path: str | Path, reports: str | Path | None = None, check_images: bool = True
) -> SourceResult:
    """Read MIMIC-CXR-JPG and its reports into studies (layout and rejects: see the module docstring).

    Args:
        path: the MIMIC-CXR-JPG root.
        reports: the reports root or ``mimic-cxr-reports.zip``; None = ``path``.
        check_images: reject absent JPGs (see :class:`~lexray.data.sources._common.ImageChecker`).

    Raises:
        SourceNotFoundError: the split CSV is absent (a FileNotFoundError).
        SourceError: a CSV cannot be read at all or lacks a required column.
    """
    root = Path(path)
    split_csv = _find(root, "split")
    if split_csv is None:
        raise SourceNotFoundError(f"{root}: no mimic-cxr-*-split.csv[.gz]; is this the MIMIC-CXR-JPG root?")
    hint = "MIMIC-CXR-JPG's split CSV has columns dicom_id, study_id, subject_id, split"
    table = read_table_file(split_csv, SOURCE, ["dicom_id", "study_id", "subject_id", "split"])
    require_columns(table.columns, ["dicom_id", "study_id", "subject_id", "split"], split_csv, hint)
    df = table.frame
    result = SourceResult(rejects=list(table.rejects), rows_read=table.rows_read)
    meta_csv = _find(root, "metadata")
    if meta_csv is not None:
        # A metadata line that cannot be read only costs its image's view position (logged as a reject).
        meta_table = read_table_file(meta_csv, SOURCE, ["dicom_id", "ViewPosition"])
        require_columns(
            meta_table.columns,
            ["dicom_id", "ViewPosition"],
            meta_csv,
            "expected MIMIC-CXR-JPG's metadata CSV",
        )
        result.rejects.extend(meta_table.rejects)
        meta = meta_table.frame
        views = meta.drop_duplicates("dicom_id").set_index("dicom_id")["ViewPosition"]
        df["view"] = df["dicom_id"].map(views).fillna("")
    else:
        df["view"] = ""

    df["row"] = table.records
    df["split"] = df["split"].str.strip().str.lower().map(SPLIT_ALIASES)
    valid = (
        df["study_id"].str.fullmatch(r"\d+")
        & df["subject_id"].str.fullmatch(r"\d+")
        & df["dicom_id"].str.len().gt(0)
        & df["split"].isin(["train", "val", "test"])
    )
    for row in df.loc[~valid, ["row", "dicom_id"]].itertuples(index=False):
        result.rejects.append(
            Reject(
                SOURCE,
                row.row,
                "bad_row",
                f"dicom {row.dicom_id!r}: study_id/subject_id must be numeric and split one of "
                "train/validate/test",
            )
        )
    df = df.loc[valid].sort_values(["study_id", "dicom_id"], kind="stable")

    # A study's rows must agree on subject and split.
    per_study = df.groupby("study_id", sort=False).agg(
        subjects=("subject_id", "nunique"), splits=("split", "nunique")
    )
    bad = per_study.index[(per_study["subjects"] > 1) | (per_study["splits"] > 1)]
    for sid in bad:
        result.rejects.append(
            Reject(
                SOURCE, f"s{sid}", "inconsistent_study", "the study's rows disagree on subject_id or split"
            )
        )
    df = df[~df["study_id"].isin(set(bad))]

    subj = df["subject_id"]
    df["folder"] = "files/p" + subj.str[:2] + "/p" + subj + "/s" + df["study_id"]
    df["img"] = (str(root) + "/") + df["folder"] + "/" + df["dicom_id"] + ".jpg"

    study_ids = df["study_id"].to_numpy()
    starts = np.flatnonzero(np.r_[True, study_ids[1:] != study_ids[:-1]]) if len(df) else np.array([], int)
    ends = np.r_[starts[1:], len(df)] if len(df) else np.array([], int)
    cols = {
        c: df[c].to_numpy() for c in ("study_id", "subject_id", "split", "folder", "img", "dicom_id", "view")
    }
    reader = _ReportReader(Path(reports) if reports is not None else root)
    checker = ImageChecker()
    try:
        for a, b in tqdm(
            zip(starts, ends, strict=True), total=len(starts), desc="mimic-cxr", unit="study", disable=None
        ):
            sid, subject = cols["study_id"][a], cols["subject_id"][a]
            record = f"s{sid}"
            text, reject = reader.read(cols["folder"][a] + ".txt", record)
            if reject is not None:
                result.rejects.append(reject)
                continue
            sections = parse_report(text)
            if not sections.findings and not sections.impression:
                result.rejects.append(
                    Reject(
                        SOURCE,
                        record,
                        "no_findings_or_impression",
                        "the report has no FINDINGS or IMPRESSION text",
                    )
                )
                continue
            images = tuple(
                Image(path=cols["img"][i], view=cols["view"][i] or None, image_id=cols["dicom_id"][i])
                for i in range(a, b)
            )
            if check_images:
                missing = checker.missing(images)
                for m in missing:
                    result.rejects.append(Reject(SOURCE, record, "missing_image", f"{m} does not exist"))
                if missing:
                    gone = set(missing)
                    images = tuple(i for i in images if i.path not in gone)
                    if not images:
                        result.rejects.append(
                            Reject(SOURCE, record, "no_images", "none of its images exists")
                        )
                        continue
            result.studies.append(
                Study(
                    study_id=f"{SOURCE}-s{sid}",
                    patient_id=f"{SOURCE}-p{subject}",
                    source=SOURCE,
                    split=cols["split"][a],
                    images=images,
                    findings=sections.findings,
                    impression=sections.impression,
                    indication=sections.indication,
                    comparison=sections.comparison,
                    report=text,
                    extra={"mimic_study_id": sid, "mimic_subject_id": subject},
                )
            )
    finally:
        reader.close()
    return result


def load_mimic_cxr_config(config: MimicCxrConfig) -> SourceResult:
    """:func:`load_mimic_cxr` with the settings of a :class:`MimicCxrConfig`."""
    return load_mimic_cxr(config.path, config.reports, config.check_images)
