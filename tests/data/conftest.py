"""Fixtures that build small MIMIC-CXR-JPG and CheXpert Plus layouts, broken records included."""

from __future__ import annotations

import gzip
from pathlib import Path

import pandas as pd
import pytest

MIMIC_REPORT = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)
 INDICATION:  ___ with cough
 COMPARISON:  ___
 FINDINGS:
 Lungs are clear.  No effusion.
 IMPRESSION:
 No acute cardiopulmonary process.
"""


def _mimic_folder(root: Path, subject: str, study: str) -> Path:
    return root / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}"


@pytest.fixture
def mimic_tree(tmp_path: Path) -> Path:
    """A MIMIC-CXR-JPG root with reports; every way a record can be broken appears once.

    Good studies: 50000001 (PA + LATERAL), 50000002 (AP, impression-only report), 50000010 (headerless
    report), 50000009 (one of its two JPGs missing). Broken: 50000003 (no report file), 50000004
    (Latin-1 report), 50000005 (empty report), 50000006 (split "holdout"), row "abc" (non-numeric
    study), 50000007 (rows disagree on split), 50000008 (only an INDICATION section), 50000011 (its
    only JPG missing).
    """
    root = tmp_path / "mimic-cxr-jpg"
    rows = [
        ("d1a", "50000001", "10000001", "train", "PA"),
        ("d1b", "50000001", "10000001", "train", "LATERAL"),
        ("d2", "50000002", "10000002", "validate", "AP"),
        ("d3", "50000003", "10000003", "train", "PA"),
        ("d4", "50000004", "10000004", "train", "PA"),
        ("d5", "50000005", "10000005", "test", "PA"),
        ("d6", "50000006", "10000006", "holdout", "PA"),
        ("dx", "abc", "10000006", "train", "PA"),
        ("d7a", "50000007", "10000007", "train", "PA"),
        ("d7b", "50000007", "10000007", "test", "LL"),
        ("d8", "50000008", "10000008", "train", "PA"),
        ("d9a", "50000009", "10000009", "test", "PA"),
        ("d9b", "50000009", "10000009", "test", "LATERAL"),
        ("d10", "50000010", "11000010", "train", ""),
        ("d11", "50000011", "10000011", "train", "PA"),
    ]
    root.mkdir(parents=True)
    split = pd.DataFrame([r[:4] for r in rows], columns=["dicom_id", "study_id", "subject_id", "split"])
    split.to_csv(root / "mimic-cxr-2.0.0-split.csv.gz", index=False, compression="gzip")
    meta = pd.DataFrame(
        [(r[0], r[2], r[1], r[4], 3056, 2544) for r in rows],
        columns=["dicom_id", "subject_id", "study_id", "ViewPosition", "Rows", "Columns"],
    )
    with gzip.open(root / "mimic-cxr-2.0.0-metadata.csv.gz", "wt") as f:
        meta.to_csv(f, index=False)
    reports = {
        "50000001": MIMIC_REPORT,
        "50000002": "FINAL REPORT\nIMPRESSION: Mild cardiomegaly, unchanged since ___.\n",
        "50000004": None,
        "50000005": "   \n",
        "50000006": MIMIC_REPORT,
        "50000007": MIMIC_REPORT,
        "50000008": "INDICATION: ___ fever\n",
        "50000009": MIMIC_REPORT,
        "50000010": "No acute cardiopulmonary process.",
        "50000011": MIMIC_REPORT,
    }
    for dicom, study, subject, _, _ in rows:
        if not study.isdigit():
            continue
        folder = _mimic_folder(root, subject, study)
        folder.mkdir(parents=True, exist_ok=True)
        if dicom not in ("d9b", "d11"):
            (folder / f"{dicom}.jpg").write_bytes(b"\xff\xd8\xff")
        if study in reports:
            text = reports[study]
            report = folder.parent / f"s{study}.txt"
            if text is None:
                report.write_bytes("IMPRESSION: Caf\xe9 au lait.".encode("latin-1"))
            else:
                report.write_text(text)
    return root


@pytest.fixture
def chexpert_csv(tmp_path: Path) -> Path:
    """A CheXpert Plus-style report CSV with two good studies and three broken rows."""
    columns = [
        "path_to_image",
        "path_to_dcm",
        "frontal_lateral",
        "ap_pa",
        "deid_patient_id",
        "patient_report_date_order",
        "report",
        "section_clinical_history",
        "section_history",
        "section_comparison",
        "section_findings",
        "section_impression",
        "split",
    ]
    rows = [
        (
            "train/patient00001/study1/view1_frontal.jpg",
            "",
            "Frontal",
            "PA",
            "pid1",
            "1",
            "",
            "Cough.",
            "",
            "None.",
            "Lungs clear.",
            "No acute process.",
            "train",
        ),
        (
            "train/patient00001/study1/view2_lateral.jpg",
            "",
            "Lateral",
            "",
            "pid1",
            "1",
            "",
            "Cough.",
            "",
            "None.",
            "Lungs clear.",
            "No acute process.",
            "train",
        ),
        (
            "valid/patient00002/study3/view1_frontal.jpg",
            "",
            "Frontal",
            "AP",
            "pid2",
            "1",
            "FINDINGS: Small effusion.\nIMPRESSION: Effusion.",
            "",
            "Fever",
            "",
            "",
            "",
            "valid",
        ),
        (
            "train/patient00003/study1/view1_frontal.jpg",
            "",
            "Frontal",
            "AP",
            "pid3",
            "1",
            "",
            "",
            "",
            "",
            "",
            "",
            "train",
        ),
        (
            "oops/view1_frontal.jpg",
            "",
            "Frontal",
            "AP",
            "pid4",
            "1",
            "",
            "",
            "",
            "",
            "Clear.",
            "Normal.",
            "train",
        ),
        (
            "train/patient00005/study1/view1_frontal.jpg",
            "",
            "Frontal",
            "AP",
            "pid5",
            "1",
            "",
            "",
            "",
            "",
            "Clear.",
            "Normal.",
            "extra",
        ),
    ]
    path = tmp_path / "df_chexpert_plus_240401.csv"
    pd.DataFrame(rows, columns=columns).to_csv(path, index=False)
    return path
