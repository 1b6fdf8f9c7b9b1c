"""MIMIC-CXR-JPG, CheXpert Plus and hospital-export sources on fixtures with broken records."""

from __future__ import annotations

import json
import zipfile
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from lexray.data.sources.chexpert_plus import load_chexpert_plus
from lexray.data.sources.hospital import HospitalConfig, load_hospital
from lexray.data.sources.mimic import load_mimic_cxr


def test_mimic_good_studies_and_every_reject(mimic_tree):
    result = load_mimic_cxr(mimic_tree)
    by_id = {s.study_id: s for s in result.studies}
    assert sorted(by_id) == [
        "mimic-cxr-s50000001",
        "mimic-cxr-s50000002",
        "mimic-cxr-s50000009",
        "mimic-cxr-s50000010",
    ]
    reasons = Counter((r.reason, r.record) for r in result.rejects)
    assert reasons == Counter(
        {
            ("missing_report", "s50000003"): 1,
            ("non_utf8_report", "s50000004"): 1,
            ("empty_report", "s50000005"): 1,
            ("bad_row", "mimic-cxr-2.0.0-split.csv.gz:line 8"): 1,  # split "holdout"
            ("bad_row", "mimic-cxr-2.0.0-split.csv.gz:line 9"): 1,  # study id "abc"
            ("inconsistent_study", "s50000007"): 1,
            ("no_findings_or_impression", "s50000008"): 1,
            ("missing_image", "s50000009"): 1,
            ("missing_image", "s50000011"): 1,
            ("no_images", "s50000011"): 1,
        }
    )
    s1 = by_id["mimic-cxr-s50000001"]
    assert s1.patient_id == "mimic-cxr-p10000001" and s1.split == "train" and s1.source == "mimic-cxr"
    assert [(i.image_id, i.view) for i in s1.images] == [("d1a", "PA"), ("d1b", "LATERAL")]
    assert s1.images[0].path == str(mimic_tree / "files/p10/p10000001/s50000001/d1a.jpg")
    assert s1.findings == "Lungs are clear. No effusion."
    assert s1.impression == "No acute cardiopulmonary process."
    assert s1.indication == "___ with cough" and s1.comparison == "___"
    assert "FINAL REPORT" in s1.report  # the raw text is kept
    assert s1.extra == {"mimic_study_id": "50000001", "mimic_subject_id": "10000001"}
    s2 = by_id["mimic-cxr-s50000002"]
    assert s2.split == "val" and s2.findings == "" and s2.impression.startswith("Mild cardiomegaly")
    assert by_id["mimic-cxr-s50000010"].images[0].view is None
    assert by_id["mimic-cxr-s50000010"].images[0].path.endswith("files/p11/p11000010/s50000010/d10.jpg")
    assert [i.image_id for i in by_id["mimic-cxr-s50000009"].images] == ["d9a"]


def test_mimic_without_image_check_metadata_or_with_zipped_reports(mimic_tree, tmp_path):
    unchecked = load_mimic_cxr(mimic_tree, check_images=False)
    assert "mimic-cxr-s50000011" in {s.study_id for s in unchecked.studies}
    assert not [r for r in unchecked.rejects if r.reason in ("missing_image", "no_images")]

    archive = tmp_path / "mimic-cxr-reports.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for report in (mimic_tree / "files").rglob("s*.txt"):
            z.write(report, "mimic-cxr-reports/" + str(report.relative_to(mimic_tree)))
    zipped = load_mimic_cxr(mimic_tree, reports=archive)
    assert zipped.studies == load_mimic_cxr(mimic_tree).studies
    assert Counter(r.reason for r in zipped.rejects) == Counter(
        r.reason for r in load_mimic_cxr(mimic_tree).rejects
    )

    (mimic_tree / "mimic-cxr-2.0.0-metadata.csv.gz").unlink()
    no_meta = load_mimic_cxr(mimic_tree)
    assert all(i.view is None for s in no_meta.studies for i in s.images)


def test_mimic_missing_files_and_columns_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="mimic-cxr-\\*-split.csv"):
        load_mimic_cxr(tmp_path)
    pd.DataFrame({"dicom_id": ["a"], "study": ["1"]}).to_csv(
        tmp_path / "mimic-cxr-2.0.0-split.csv", index=False
    )
    with pytest.raises(ValueError, match=r"missing column\(s\) \['study_id', 'subject_id', 'split'\]"):
        load_mimic_cxr(tmp_path)


def test_chexpert_plus_rows_become_studies(chexpert_csv, tmp_path):
    result = load_chexpert_plus(chexpert_csv, image_root=tmp_path / "img")
    by_id = {s.study_id: s for s in result.studies}
    assert sorted(by_id) == ["chexpert-plus-patient00001-study1", "chexpert-plus-patient00002-study3"]
    s1 = by_id["chexpert-plus-patient00001-study1"]
    assert s1.patient_id == "chexpert-plus-pid1" and s1.split == "train"
    assert [(Path(i.path).name, i.view) for i in s1.images] == [
        ("view1_frontal.jpg", "PA"),
        ("view2_lateral.jpg", "LATERAL"),
    ]
    assert s1.images[0].path == str(tmp_path / "img" / "train/patient00001/study1/view1_frontal.jpg")
    assert (s1.findings, s1.impression, s1.indication, s1.comparison) == (
        "Lungs clear.",
        "No acute process.",
        "Cough.",
        "None.",
    )
    s2 = by_id["chexpert-plus-patient00002-study3"]
    # Empty section columns: the full report is parsed instead; history fills in for clinical history.
    assert (s2.split, s2.findings, s2.impression, s2.indication) == (
        "val",
        "Small effusion.",
        "Effusion.",
        "Fever",
    )
    assert Counter(r.reason for r in result.rejects) == {"bad_row": 2, "empty_report": 1}
    assert {r.record for r in result.rejects} == {
        f"{chexpert_csv.name}:line {n}" for n in (6, 7, 8)
    }  # row 3 spans lines 4-5


def test_chexpert_plus_image_check_and_missing_columns(chexpert_csv, tmp_path):
    root = tmp_path / "img"
    (root / "train/patient00001/study1").mkdir(parents=True)
    (root / "train/patient00001/study1/view1_frontal.jpg").write_bytes(b"x")
    result = load_chexpert_plus(chexpert_csv, image_root=root, check_images=True)
    assert [s.study_id for s in result.studies] == ["chexpert-plus-patient00001-study1"]
    assert len(result.studies[0].images) == 1
    assert Counter(r.reason for r in result.rejects)["no_images"] == 1
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"path_to_image": ["a"], "split": ["train"]}).to_csv(bad, index=False)
    with pytest.raises(ValueError, match="section_findings"):
        load_chexpert_plus(bad)


def _export(tmp_path: Path, fmt: str) -> Path:
    rows = [
        {
            "acc": "A1",
            "mrn": "P1",
            "files": "a1_pa.png;a1_lat.png",
            "text": "FINDINGS: Clear.\nIMPRESSION: Normal.",
            "part": "train",
            "pos": "PA",
        },
        {
            "acc": "A2",
            "mrn": "P1",
            "files": "/abs/a2.png",
            "text": "NAD. CXR WNL.",
            "part": "train",
            "pos": "AP",
        },
        {
            "acc": "A3",
            "mrn": "P2",
            "files": "",
            "text": "Impression: RLL PNA.",
            "part": "validation",
            "pos": "",
        },
        {"acc": "A4", "mrn": "P3", "files": "a4.png", "text": "", "part": "test", "pos": ""},
        {"acc": "", "mrn": "P4", "files": "x.png", "text": "Clear.", "part": "train", "pos": ""},
        {"acc": "A6", "mrn": "P6", "files": "x.png", "text": "Clear.", "part": "other", "pos": ""},
    ]
    df = pd.DataFrame(rows)
    path = tmp_path / f"export.{fmt}"
    if fmt == "csv":
        df.to_csv(path, index=False)
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        df.to_parquet(path)
    return path


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_hospital_export_with_column_mapping(tmp_path, fmt):
    cfg = HospitalConfig(
        path=_export(tmp_path, fmt),
        name="cohort-b",
        study_id="acc",
        patient_id="mrn",
        split="part",
        image_path="files",
        view="pos",
        report="text",
        image_root=tmp_path / "img",
        check_images=False,
    )
    result = load_hospital(cfg)
    by_id = {s.study_id: s for s in result.studies}
    assert sorted(by_id) == ["cohort-b-A1", "cohort-b-A2", "cohort-b-A3"]
    a1 = by_id["cohort-b-A1"]
    assert a1.source == "cohort-b" and a1.patient_id == "cohort-b-P1"
    assert [i.path for i in a1.images] == [
        str(tmp_path / "img" / "a1_lat.png"),
        str(tmp_path / "img" / "a1_pa.png"),
    ]
    assert (a1.findings, a1.impression) == ("Clear.", "Normal.")
    assert by_id["cohort-b-A2"].impression == "NAD. CXR WNL."  # headerless, impression-only style
    assert by_id["cohort-b-A2"].images[0].path == "/abs/a2.png"
    assert by_id["cohort-b-A3"].split == "val" and by_id["cohort-b-A3"].images == ()
    assert Counter(r.reason for r in result.rejects) == {"empty_report": 1, "bad_row": 2}


def test_hospital_hash_split_is_patient_level_and_mapping_errors_name_columns(tmp_path):
    rows = [{"study_id": f"S{i}", "patient_id": f"P{i // 3}", "report": "IMPRESSION: ok"} for i in range(300)]
    path = tmp_path / "e.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    result = load_hospital(HospitalConfig(path=path, image_path=None, seed=3))
    assert len(result.studies) == 300 and not result.rejects
    per_patient: dict[str, set[str]] = {}
    for s in result.studies:
        per_patient.setdefault(s.patient_id, set()).add(s.split)
    assert all(len(v) == 1 for v in per_patient.values())
    shares = Counter(s.split for s in result.studies)
    assert 150 <= shares["train"] <= 270 and shares["val"] > 0 and shares["test"] > 0
    with pytest.raises(ValueError, match=r"missing column\(s\) \['image_path'\]"):
        load_hospital(HospitalConfig(path=path))
    with pytest.raises(ValueError, match="map at least one"):
        load_hospital(HospitalConfig(path=path, report=None, image_path=None))
    with pytest.raises(FileNotFoundError):
        load_hospital(HospitalConfig(path=tmp_path / "nope.csv"))


def test_malformed_and_non_utf8_csv_rows_are_rejected_not_fatal(tmp_path):
    path = tmp_path / "e.csv"
    path.write_bytes(
        b"study_id,patient_id,report\n"
        b"S1,P1,IMPRESSION: ok\n"
        b"S2,P2,IMPRESSION: ok,surplus,fields\n"
        b'S3,P3,"IMPRESSION: multi\nline report"\n'
        b"S4,P4,IMPRESSION: caf\xe9\n"
    )
    result = load_hospital(HospitalConfig(path=path, image_path=None))
    assert sorted(s.study_id for s in result.studies) == ["hospital-S1", "hospital-S3"]
    assert {s.study_id: s.impression for s in result.studies}["hospital-S3"] == "multi line report"
    assert Counter(r.reason for r in result.rejects) == {"bad_row": 1, "non_utf8": 1}
    assert {r.reason: r.record for r in result.rejects} == {
        "bad_row": "e.csv:line 3",
        "non_utf8": "e.csv:line 6",
    }
    assert "5 fields where the header has 3" in [r.detail for r in result.rejects if r.reason == "bad_row"][0]


def test_image_checker_matches_exists_oracle_in_flat_and_nested_folders(tmp_path):
    from lexray.data.sources._common import ImageChecker
    from lexray.data.study import Image

    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(0, 40, 2):
        (flat / f"{i}.png").write_bytes(b"x")
    nested = [tmp_path / f"s{i}" / "a.jpg" for i in range(5)]
    for p in nested[::2]:
        p.parent.mkdir()
        p.write_bytes(b"x")
    images = [Image(str(flat / f"{i}.png")) for i in range(40)] + [Image(str(p)) for p in nested]
    checker = ImageChecker(list_after=3)
    missing = [m for k in range(0, len(images), 3) for m in checker.missing(images[k : k + 3])]
    assert missing == [i.path for i in images if not Path(i.path).exists()]
    assert str(flat) in checker._listed and str(nested[0].parent) not in checker._listed
