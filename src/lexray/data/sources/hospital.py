"""Any hospital export (CSV / TSV / JSONL / Parquet) -> studies, through a documented column mapping.

Each :class:`HospitalConfig` field ending in a column role names the export's column for it (None =
the export has no such column):

==============  =========================================================================================
role            meaning
==============  =========================================================================================
``study_id``    study (accession) id; rows sharing it form one study (one row per image or per study)
``patient_id``  patient id for patient-level splits (None: each study is its own patient)
``split``       train / val / test (any of the spellings "validate", "valid", "dev", ...); None = seeded
                patient-level hash split
``image_path``  one or several image paths joined by ``image_sep``; relative paths are resolved
                against ``image_root``
``view``        view position (PA, AP, LATERAL, ...)
``findings``    findings section
``impression``  impression section
``indication``  indication / clinical history
``comparison``  comparison
``report``      the whole free-text report; parsed into sections (:func:`~lexray.data.sections.parse_report`)
                for studies whose findings and impression columns are empty or absent; a report without
                headers goes to ``headerless`` (impression by default: abbreviation-rich hospital reports
                are often impression-only)
==============  =========================================================================================

Example recipe (``lexray data prepare --config recipe.yaml --out m.parquet``)::

    hospital:
      - path: /data/export/reports.csv
        name: cohort-b
        study_id: accession
        patient_id: mrn
        image_path: files          # "a.png;b.png"
        image_root: /data/export/png
        report: report_text        # free text, split into sections
        split: null                # seeded patient-level split

Rejects (each naming the export's line, or row for Parquet): records the file reader cannot read
(broken quoting, too many fields, bad JSON, wrong JSON types, bytes that are not UTF-8: see
:mod:`lexray.data.sources._tables`), rows without a study id ("bad_row"), studies whose rows disagree
on patient or split ("inconsistent_study"), studies without findings and impression ("empty_report"),
unknown split spellings ("bad_row"), and absent image files ("missing_image": the study keeps its other
images; "no_images" when none is left). ``check_images`` (on by default) only tests that each file
exists; ``decode_images`` in the prepare recipe also decodes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pandas as pd

from lexray.data.sources import SourceError, SourceResult
from lexray.data.sources._common import TEXT_COLUMNS, require_columns, studies_from_rows
from lexray.data.sources._tables import read_table_file
from lexray.data.splits import SPLIT_ALIASES, patient_splits
from lexray.data.study import Reject


@dataclass(frozen=True)
class HospitalConfig:
    """A hospital export and how its columns map onto study fields."""

    path: Path  # the export: .csv, .csv.gz, .tsv, .jsonl or .parquet
    name: str = "hospital"  # source name, also the study-id prefix ("hospital-<study id>")
    study_id: str = "study_id"  # column with the study / accession id
    patient_id: str | None = "patient_id"  # column with the patient id; None = study-level split
    split: str | None = None  # column with the split; None = seeded patient-level hash split
    image_path: str | None = "image_path"  # column with image path(s); None = text-only export
    image_sep: str = ";"  # separator between several paths in one image_path cell
    view: str | None = None  # column with the view position
    findings: str | None = None  # column with the findings section
    impression: str | None = None  # column with the impression section
    indication: str | None = None  # column with the indication / history
    comparison: str | None = None  # column with the comparison section
    report: str | None = "report"  # column with the whole free-text report (parsed into sections)
    headerless: Literal["impression", "findings"] = "impression"  # section for reports without headers
    image_root: Path | None = None  # folder that relative image paths are resolved against
    check_images: bool = True  # reject images that are absent (a stat per image; decoding is prepare's)
    seed: int = 0  # seed of the hash split
    val_fraction: float = 0.1  # "val" share of the hash split
    test_fraction: float = 0.2  # "test" share of the hash split


# HospitalConfig's column fields; the report-text ones are named as the row columns they fill.
_ROLES = ("study_id", "patient_id", "split", "image_path", "view", *TEXT_COLUMNS)


def load_hospital(config: HospitalConfig) -> SourceResult:
    """Read a hospital export into studies using the column mapping in ``config``.

    Raises:
        SourceNotFoundError: the export is absent (a FileNotFoundError).
        SourceError: the export cannot be read at all, a mapped column is missing (the message lists
            the export's columns), or neither findings/impression nor report columns are mapped.
    """
    path = Path(config.path)
    mapped = {role: getattr(config, role) for role in _ROLES if getattr(config, role) is not None}
    if not {"findings", "impression", "report"} & set(mapped):
        raise SourceError(f"{config.name}: map at least one of the findings, impression or report columns")
    src = config.name
    table = read_table_file(path, src, mapped.values())
    require_columns(
        table.columns,
        mapped.values(),
        path,
        f"set the {config.name} column mapping (HospitalConfig fields, in the hospital entry of the --config YAML)",
    )
    df, record = table.frame, table.records
    result = SourceResult(rejects=list(table.rejects), rows_read=table.rows_read)

    def col(role: str) -> pd.Series:
        return df[mapped[role]].astype(str) if role in mapped else pd.Series("", index=df.index)

    study = col("study_id").str.strip()
    patient = col("patient_id").str.strip()
    patient = patient.where(patient.str.len() > 0, study)
    if "split" in mapped:
        split = col("split").str.strip().str.lower().map(SPLIT_ALIASES)
    else:
        assigned = patient_splits(
            patient[study.str.len() > 0], config.val_fraction, config.test_fraction, config.seed
        )
        split = patient.map(assigned)
    ok = (study.str.len() > 0) & split.isin(["train", "val", "test"])
    for rec, sid, sp in zip(record[~ok], study[~ok], col("split")[~ok], strict=True):
        reason = "no study id" if not sid else f"unknown split {sp!r} (use train/val/test)"
        result.rejects.append(Reject(src, rec, "bad_row", reason))
    keep = ok.to_numpy()
    record, study, patient, split = record[keep], study[keep], patient[keep], split[keep]

    images = col("image_path")[keep]
    if "image_path" in mapped:
        images = images.str.split(config.image_sep, regex=False)
    else:
        images = pd.Series([[""]] * len(study), index=study.index)
    rows = pd.DataFrame(
        {
            "record": record,
            "study": study,
            "patient": patient,
            "split": split,
            "image": images,
            "view": col("view")[keep].str.strip(),
            **{name: col(name)[keep] for name in TEXT_COLUMNS},
        }
    ).explode("image")
    rows["image"] = rows["image"].fillna("").astype(str).str.strip()
    if config.image_root is not None:
        root = str(Path(config.image_root)) + "/"
        relative = (rows["image"].str.len() > 0) & ~rows["image"].str.startswith("/")
        rows.loc[relative, "image"] = root + rows.loc[relative, "image"]
    result.extend(
        studies_from_rows(rows, src, check_images=config.check_images, headerless=config.headerless)
    )
    return result
