"""CheXpert Plus: its report CSV (one row per image) -> studies.

Expected columns of ``df_chexpert_plus_240401.csv`` (Stanford AIMI; credentialed download):

=============================  ========  ==================================================================
column                         needed    use
=============================  ========  ==================================================================
``path_to_image``              yes       ``train/patient00001/study1/view1_frontal.jpg``; gives the study
                                         (``patient00001/study1``) and the image path
``section_findings``           yes       findings
``section_impression``         yes       impression
``split``                      yes       "train" / "valid" ("valid" -> "val")
``deid_patient_id``            no        patient id (else the ``patientNNNNN`` part of the path)
``frontal_lateral``            no        "Frontal" / "Lateral"
``ap_pa``                      no        "AP" / "PA" / "LL" (refines a frontal view)
``report``                     no        the full report; parsed into sections when both sections are empty
``section_clinical_history``   no        indication (else ``section_history``)
``section_comparison``         no        comparison
=============================  ========  ==================================================================

Records: ``study_id`` = ``"chexpert-plus-patient00001-study1"``, ``patient_id`` =
``"chexpert-plus-<deid_patient_id>"``; image paths are ``<image_root>/<path_to_image>`` (as given
without an image root). Rejects: rows whose path has no ``patientN/studyN`` part or whose split is
unknown ("bad_row"), studies whose rows disagree on split or patient ("inconsistent_study"), studies
with neither findings nor impression ("empty_report"), and (``check_images``) absent images.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from lexray.data.sources import SourceResult
from lexray.data.sources._common import require_columns, studies_from_rows
from lexray.data.sources._tables import read_table_file
from lexray.data.splits import SPLIT_ALIASES
from lexray.data.study import Reject

SOURCE = "chexpert-plus"
REQUIRED = ("path_to_image", "section_findings", "section_impression", "split")
OPTIONAL = (
    "deid_patient_id",
    "frontal_lateral",
    "ap_pa",
    "report",
    "section_clinical_history",
    "section_history",
    "section_comparison",
)


@dataclass(frozen=True)
class ChexpertPlusConfig:
    """Where the CheXpert Plus report CSV and images are."""

    path: Path  # df_chexpert_plus_240401.csv (or .parquet / .jsonl with the same columns)
    image_root: Path | None = None  # folder that path_to_image is relative to; None = keep paths as given
    check_images: bool = False  # reject images that are absent under image_root


def load_chexpert_plus(
    path: str | Path, image_root: str | Path | None = None, check_images: bool = False
) -> SourceResult:
    """Read the CheXpert Plus report CSV into studies (columns and rejects: see the module docstring).

    Raises:
        SourceNotFoundError: the CSV is absent (a FileNotFoundError).
        SourceError: the file cannot be read at all, or a required column is missing.
    """
    path = Path(path)
    table = read_table_file(path, SOURCE, REQUIRED + OPTIONAL)
    require_columns(
        table.columns,
        REQUIRED,
        path,
        "expected CheXpert Plus's df_chexpert_plus_*.csv (see lexray.data.sources.chexpert_plus)",
    )
    df, record = table.frame, table.records
    for c in OPTIONAL:
        if c not in df.columns:
            df[c] = ""
    result = SourceResult(rejects=list(table.rejects), rows_read=table.rows_read)
    parts = df["path_to_image"].str.extract(r"(?:^|/)(patient\d+)/(study\d+)/", expand=True)
    split = df["split"].str.strip().str.lower().map(SPLIT_ALIASES)
    ok = parts[0].notna() & split.isin(["train", "val", "test"])
    for rec, p, s in zip(record[~ok], df.loc[~ok, "path_to_image"], df.loc[~ok, "split"], strict=True):
        result.rejects.append(
            Reject(
                SOURCE,
                rec,
                "bad_row",
                f"path_to_image {p!r} needs a patientN/studyN part and split {s!r} must be train/valid/test",
            )
        )
    df, parts, split, record = df[ok], parts[ok], split[ok], record[ok]
    patient = df["deid_patient_id"].where(df["deid_patient_id"].str.len() > 0, parts[0])
    frontal = df["frontal_lateral"].str.strip().str.lower().eq("frontal")
    ap_pa = df["ap_pa"].str.strip().str.upper()
    view = df["frontal_lateral"].str.strip().str.upper().where(~(frontal & ap_pa.isin(["AP", "PA"])), ap_pa)
    image = df["path_to_image"] if image_root is None else (str(Path(image_root)) + "/") + df["path_to_image"]
    rows = pd.DataFrame(
        {
            "record": record,
            "study": parts[0] + "-" + parts[1],
            "patient": patient,
            "split": split,
            "image": image,
            "view": view,
            "findings": df["section_findings"],
            "impression": df["section_impression"],
            "indication": df["section_clinical_history"].where(
                df["section_clinical_history"].str.strip().str.len() > 0, df["section_history"]
            ),
            "comparison": df["section_comparison"],
            "report": df["report"],
        }
    )
    result.extend(studies_from_rows(rows, SOURCE, check_images=check_images and image_root is not None))
    return result


def load_chexpert_plus_config(config: ChexpertPlusConfig) -> SourceResult:
    """:func:`load_chexpert_plus` with the settings of a :class:`ChexpertPlusConfig`."""
    return load_chexpert_plus(config.path, config.image_root, config.check_images)
