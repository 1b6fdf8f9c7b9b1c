"""Labelling files: manifest / JSON lines / text in, JSON lines out, bad records skipped and counted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lexray.cli.main import app
from lexray.findings import get_labeler
from lexray.findings.runs import LabelRunConfig, iter_records, label_counts, label_file, rejects_path

pytestmark = pytest.mark.filterwarnings("error:.*W036:UserWarning")  # no per-document spaCy warnings


def _jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text(
        "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8"
    )
    return path


def test_jsonl_in_labels_out_with_rejects(tmp_path: Path) -> None:
    src = _jsonl(
        tmp_path / "reports.jsonl",
        [
            {"study_id": "a", "report": "Small left pleural effusion."},
            {"study_id": "b", "report": None},
            "{not json",
            {"study_id": "c", "report": "No pneumothorax."},
        ],
    )
    stats = label_file(src, tmp_path / "out" / "labels.jsonl")
    assert (stats.labelled, stats.rejected) == (2, 2)
    lines = [json.loads(x) for x in stats.out.read_text(encoding="utf-8").splitlines()]
    assert [x["id"] for x in lines] == ["a", "c"]
    assert lines[0] == {"id": "a", **get_labeler()("Small left pleural effusion.").to_dict()}
    rejects = [json.loads(x) for x in rejects_path(stats.out).read_text(encoding="utf-8").splitlines()]
    assert [(r["id"], r["reason"]) for r in rejects] == [("b", "no_text"), ("line 3", "unreadable")]
    counts = label_counts(stats.out)
    assert counts["Pleural Effusion"]["positive"] == 1 and counts["Pneumothorax"]["negative"] == 1


def test_overlong_report_is_rejected_not_fatal(tmp_path: Path) -> None:
    src = _jsonl(
        tmp_path / "r.jsonl",
        [{"study_id": "big", "report": "x" * 1_000_001}, {"study_id": "ok", "report": "No effusion."}],
    )
    stats = label_file(src, tmp_path / "labels.jsonl")
    assert (stats.labelled, stats.rejected) == (1, 1)
    assert json.loads(rejects_path(stats.out).read_text(encoding="utf-8"))["reason"] == "too_long"


def test_text_file_one_report_per_line(tmp_path: Path) -> None:
    src = tmp_path / "reports.txt"
    src.write_text("Cardiomegaly.\nNo acute disease.\n", encoding="utf-8")
    assert list(iter_records(src)) == [("1", "Cardiomegaly."), ("2", "No acute disease.")]
    stats = label_file(src, tmp_path / "labels.jsonl", LabelRunConfig())
    assert stats.labelled == 2 and stats.rejects is None


def test_manifest_field_must_exist(tmp_path: Path) -> None:
    path = tmp_path / "m.parquet"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="manifest field"):
        list(iter_records(path, text="nope"))


def test_manifest_input(tmp_path: Path) -> None:
    from lexray.data.manifest import write_manifest
    from lexray.data.study import Study

    studies = [
        Study(
            "s1", "s1", "test", "train", findings="Right PTX.", impression="", report="FINDINGS: Right PTX."
        ),
        Study(
            "s2",
            "s2",
            "test",
            "train",
            findings="",
            impression="Clear lungs.",
            report="IMPRESSION: Clear lungs.",
        ),
    ]
    manifest = write_manifest(studies, tmp_path / "manifest.parquet")
    stats = label_file(manifest, tmp_path / "labels.jsonl", LabelRunConfig(text="report_text"))
    lines = [json.loads(x) for x in stats.out.read_text(encoding="utf-8").splitlines()]
    assert [x["id"] for x in lines] == ["s1", "s2"]
    assert lines[0]["observations"]["Pneumothorax"] == "positive"
    assert lines[0]["mentions"][0]["laterality"] == "right"


def test_cli_label_show_stats(tmp_path: Path) -> None:
    src = _jsonl(tmp_path / "r.jsonl", [{"id": "x", "text": "Bibasilar atelectasis."}])
    out = tmp_path / "labels.jsonl"
    runner = CliRunner()
    result = runner.invoke(
        app, ["findings", "label", str(src), "--out", str(out), "--set", "text=text", "--set", "id_key=id"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text(encoding="utf-8"))["observations"]["Atelectasis"] == "positive"
    assert (tmp_path / "labels.config.yaml").is_file()
    result = runner.invoke(app, ["findings", "stats", str(out)])
    assert result.exit_code == 0 and "Atelectasis" in result.output
    result = runner.invoke(app, ["findings", "show", "No pneumothorax."])
    assert result.exit_code == 0 and "negative" in result.output
    result = runner.invoke(app, ["findings", "label", str(src), "--out", str(out), "--set", "bogus=1"])
    assert result.exit_code == 2 and "unknown key" in result.output
