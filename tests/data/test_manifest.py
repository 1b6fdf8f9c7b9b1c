"""Manifest round trip, schema versioning, atomic writes and the rejects file."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lexray.data.manifest import (
    SCHEMA_VERSION,
    ManifestError,
    read_manifest,
    read_rejects,
    read_table,
    rejects_path,
    select,
    write_manifest,
)
from lexray.data.study import Image, Reject, Study


def _studies() -> list[Study]:
    return [
        Study(
            study_id="s1",
            patient_id="p1",
            source="openi",
            split="train",
            images=(Image("a/1.png", "PA", "1"), Image("a/2.png", None, None)),
            findings="Heart normal. XXXX",
            impression="No acute disease.",
            indication="cough",
            comparison="None.",
            report="FINDINGS: Heart normal. XXXX\nIMPRESSION: No acute disease.",
            extra={"mesh_major": "normal;Lung", "xml": "1.xml"},
        ),
        Study(study_id="s2", patient_id="p1", source="mimic-cxr", split="test", impression="Clear ___."),
        Study(study_id="s3", patient_id="p3", source="mimic-cxr", split="", findings="ok"),
    ]


def test_round_trip_keeps_every_field(tmp_path):
    studies = _studies()
    rejects = [Reject("openi", "7.xml", "bad_xml", "line 3")]
    path = write_manifest(studies, tmp_path / "sub" / "m.parquet", rejects)
    assert read_manifest(path) == studies
    assert read_rejects(path) == rejects
    assert rejects_path(path) == tmp_path / "sub" / "m.rejects.jsonl"
    assert json.loads(rejects_path(path).read_text().splitlines()[0])["reason"] == "bad_xml"
    meta = pq.read_schema(path).metadata
    assert int(meta[b"lexray.schema_version"]) == SCHEMA_VERSION
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_empty_manifest_and_rejects_none_removes_stale_file(tmp_path):
    path = tmp_path / "m.parquet"
    write_manifest(_studies(), path, [Reject("x", "r", "why")])
    assert rejects_path(path).exists()
    write_manifest([], path)
    assert read_manifest(path) == []
    assert not rejects_path(path).exists()
    write_manifest([], path, [])
    assert rejects_path(path).read_text() == ""


def test_duplicate_study_ids_are_refused(tmp_path):
    s = _studies()[0]
    with pytest.raises(ValueError, match="duplicate study id 's1'"):
        write_manifest([s, s], tmp_path / "m.parquet")


def test_failed_write_leaves_previous_manifest_intact(tmp_path):
    path = write_manifest(_studies()[:1], tmp_path / "m.parquet")
    bad = _studies()[0]
    with pytest.raises(ValueError):
        write_manifest([bad, bad], path)
    assert [s.study_id for s in read_manifest(path)] == ["s1"]


def test_foreign_or_newer_files_are_refused(tmp_path):
    foreign = tmp_path / "foreign.parquet"
    pq.write_table(pa.table({"a": [1]}), foreign)
    with pytest.raises(ManifestError, match="no lexray schema version"):
        read_manifest(foreign)
    newer = tmp_path / "newer.parquet"
    table = pa.table({"a": [1]}).replace_schema_metadata({b"lexray.schema_version": b"99"})
    pq.write_table(table, newer)
    with pytest.raises(ManifestError, match="upgrade lexray"):
        read_manifest(newer)
    with pytest.raises(ManifestError, match="does not exist"):
        read_manifest(tmp_path / "missing.parquet")
    text = tmp_path / "text.parquet"
    text.write_text("not parquet")
    with pytest.raises(ManifestError, match="not a Parquet file"):
        read_manifest(text)


def test_read_table_columns_and_select(tmp_path):
    path = write_manifest(_studies(), tmp_path / "m.parquet")
    assert read_table(path, columns=["study_id"]).column("study_id").to_pylist() == ["s1", "s2", "s3"]
    studies = read_manifest(path)
    assert [s.study_id for s in select(studies, split="test")] == ["s2"]
    assert [s.study_id for s in select(studies, source="mimic-cxr")] == ["s2", "s3"]
    assert [s.study_id for s in select(studies, split=("train", "test"), source="openi")] == ["s1"]
    assert select(studies) == studies
