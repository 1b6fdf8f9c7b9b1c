"""The Study record's helpers: one rule each for image paths, text fields, identical reports and rejects."""

from __future__ import annotations

from pathlib import Path

import pytest

from lexray.data.study import TEXT_FIELDS, Image, Study, normalize_report, rejects_path


def _study() -> Study:
    return Study("s1", "p1", "openi", "test", findings="Lungs clear.", impression="Normal.", report="RAW")


def test_image_resolve_keeps_absolute_paths_and_roots_relative_ones(tmp_path: Path) -> None:
    assert Image("a/b.png").resolve(tmp_path) == tmp_path / "a" / "b.png"
    assert Image(str(tmp_path / "x.png")).resolve("/elsewhere") == tmp_path / "x.png"
    assert Image("~/x.png").resolve(tmp_path) == Path.home() / "x.png"


def test_study_text_by_field() -> None:
    s = _study()
    assert {f: s.text(f) for f in TEXT_FIELDS} == {
        "report_text": "Lungs clear. Normal.",
        "findings": "Lungs clear.",
        "impression": "Normal.",
        "report": "RAW",
    }
    with pytest.raises(ValueError, match="study_id.*is not one of report_text, findings"):
        s.text("study_id")  # type: ignore[arg-type]


def test_labelling_a_manifest_takes_the_study_text_fields(tmp_path: Path) -> None:
    from lexray.data.manifest import write_manifest
    from lexray.findings.runs import iter_records

    write_manifest([_study()], tmp_path / "m.parquet")
    assert list(iter_records(tmp_path / "m.parquet", text="report_text")) == [("s1", "Lungs clear. Normal.")]
    with pytest.raises(
        ValueError, match="'study_id' is not one of report_text, findings, impression, report"
    ):
        list(iter_records(tmp_path / "m.parquet", text="study_id"))


def test_identical_report_key_is_one_function() -> None:
    from lexray.evaluate import protocol
    from lexray.text import pairs

    assert protocol.normalize_report is normalize_report and pairs.normalize_report is normalize_report
    assert normalize_report("No acute  cardiopulmonary process.") == "no acute cardiopulmonary process"


def test_rejects_path_has_one_rule_for_manifests_and_label_files(tmp_path: Path) -> None:
    from lexray.data.manifest import rejects_path as manifest_rejects
    from lexray.findings.runs import rejects_path as label_rejects

    for name in ("manifest.parquet", "labels.v2.jsonl", "plain"):
        out = tmp_path / name
        assert manifest_rejects(out) == label_rejects(out) == rejects_path(out)
    assert rejects_path(tmp_path / "labels.v2.jsonl") == tmp_path / "labels.v2.rejects.jsonl"
