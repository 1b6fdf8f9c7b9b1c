"""Malformed hospital exports: every record ends in the manifest or in a reject that names its line."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lexray.data.sources import SourceError, SourceNotFoundError, SourceResult
from lexray.data.sources.hospital import HospitalConfig, load_hospital
from lexray.errors import LexrayError


def _text_only(path: Path, **kw) -> SourceResult:
    return load_hospital(HospitalConfig(path=path, image_path=None, **kw))


def assert_accounted(result: SourceResult, expected: dict[int, str | None], name: str) -> None:
    """Each data line is a study (its id given) or a reject naming that line; the counts add up.

    ``expected`` maps the line where a record starts to the study id it should become, or None when
    it must be rejected.
    """
    kept = {s.study_id for s in result.studies}
    rejected = Counter(r.record for r in result.rejects)
    for line, sid in expected.items():
        if sid is None:
            assert rejected[f"{name}:line {line}"] == 1, (line, result.rejects)
        else:
            assert f"hospital-{sid}" in kept, (line, sid, result.rejects)
    assert result.rows_read == len(expected) == len(result.studies) + len(result.rejects)


@pytest.mark.parametrize("sep", [",", "\t"])
@pytest.mark.parametrize("size", [136_000, 5_000_000])
def test_a_field_longer_than_the_csv_module_default_is_kept(tmp_path, sep, size):
    name = "e.tsv" if sep == "\t" else "e.csv"
    long = "opacity " * (size // 8)
    path = tmp_path / name
    path.write_text(
        sep.join(["study_id", "patient_id", "report"])
        + "\n"
        + f"S1{sep}P1{sep}IMPRESSION: ok\n"
        + f'S2{sep}P2{sep}"IMPRESSION: {long}"\n'
        + f"S3{sep}P3{sep}IMPRESSION: ok\n"
    )
    result = _text_only(path)
    assert_accounted(result, {2: "S1", 3: "S2", 4: "S3"}, name)
    s2 = {s.study_id: s for s in result.studies}["hospital-S2"]
    assert len(s2.impression) == len(long.strip())


def test_an_unterminated_quote_costs_one_line_not_the_rest_of_the_file(tmp_path):
    path = tmp_path / "e.csv"
    path.write_text(
        "study_id,patient_id,report\n"
        "S1,P1,IMPRESSION: ok\n"
        'S2,P2,"IMPRESSION: the quote never closes\n'
        "S3,P3,IMPRESSION: ok\n"
        'S4,P4,"IMPRESSION: a ""quoted"" word\nover two lines"\n'
        'S5,P5,"IMPRESSION: closed" then text\n'
        "S6,P6,IMPRESSION: ok\n"
        "S7,P7\n"
        'S8,P8,"IMPRESSION: open at the end of the file\n'
    )
    result = _text_only(path)
    assert_accounted(
        result, {2: "S1", 3: None, 4: "S3", 5: "S4", 7: None, 8: "S6", 9: None, 10: None}, "e.csv"
    )
    why = {r.record: r.detail for r in result.rejects}
    assert "quoting" in why["e.csv:line 3"] and "quoting" in why["e.csv:line 7"]
    assert why["e.csv:line 9"] == "2 fields where the header has 3"
    assert "never closes" in why["e.csv:line 10"]
    assert {s.study_id: s.impression for s in result.studies}["hospital-S4"] == (
        'a "quoted" word over two lines'
    )


def test_jsonl_broken_line_non_utf8_byte_and_wrong_types_are_rejected_by_line(tmp_path):
    path = tmp_path / "e.jsonl"
    good = {"study_id": "S1", "patient_id": "P1", "report": "IMPRESSION: ok"}
    lines = [
        json.dumps(good).encode(),
        b'{"study_id": "S2", "patient_id": "P2", "report": "IMPRESSION: ok"',  # truncated object
        b'{"study_id": "S3", "patient_id": "P3", "report": "IMPRESSION: caf\xe9"}',  # Latin-1 byte
        b"",  # blank lines are not records
        json.dumps({**good, "study_id": ["S5"]}).encode(),  # a list where an id is expected
        json.dumps({**good, "study_id": "S6", "report": {"impression": "x"}}).encode(),
        b'["S7", "P7", "IMPRESSION: ok"]',  # not an object
        json.dumps({**good, "study_id": 8, "patient_id": None}).encode(),  # numbers are text
        b'{"study_id": "S9", "patient_id": "P9", "report": "IMPRESSION: \\ud800"}',  # lone surrogate
        json.dumps({**good, "study_id": "S10"}).encode(),
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    result = _text_only(path)
    assert_accounted(
        result, {1: "S1", 2: None, 3: None, 5: None, 6: None, 7: None, 8: "8", 9: None, 10: "S10"}, "e.jsonl"
    )
    reasons = {r.record: r.reason for r in result.rejects}
    assert reasons == {
        "e.jsonl:line 2": "bad_json",
        "e.jsonl:line 3": "non_utf8",
        "e.jsonl:line 5": "wrong_type",
        "e.jsonl:line 6": "wrong_type",
        "e.jsonl:line 7": "bad_json",
        "e.jsonl:line 9": "non_utf8",
    }


def test_parquet_rows_are_named_by_row_and_binary_text_is_checked(tmp_path):
    path = tmp_path / "e.parquet"
    table = pa.table(
        {
            "study_id": pa.array([1, 2, 3], pa.int64()),
            "patient_id": ["P1", None, "P3"],
            "report": pa.array([b"IMPRESSION: ok", b"IMPRESSION: caf\xe9", b"IMPRESSION: ok"], pa.binary()),
        }
    )
    pq.write_table(table, path)
    result = _text_only(path)
    assert sorted(s.study_id for s in result.studies) == ["hospital-1", "hospital-3"]
    assert [(r.record, r.reason) for r in result.rejects] == [("e.parquet:row 2", "non_utf8")]
    assert result.rows_read == 3
    pq.write_table(pa.table({"study_id": ["S1"], "report": pa.array([["a"]])}), path)
    with pytest.raises(SourceError, match="column 'report' holds list<.*> values"):
        _text_only(path, patient_id=None)


def test_unreadable_exports_are_named_errors(tmp_path):
    folder = tmp_path / "export.csv"
    folder.mkdir()
    with pytest.raises(SourceNotFoundError, match="is a folder: give the export file itself"):
        _text_only(folder)
    gz = tmp_path / "e.csv.gz"
    packed = gzip.compress(b"study_id,patient_id,report\n" + b"S1,P1,IMPRESSION: ok\n" * 1000)
    gz.write_bytes(packed[: len(packed) // 2])  # a partial copy
    with pytest.raises(SourceError, match="cannot read the file"):
        _text_only(gz)
    broken = tmp_path / "e.parquet"
    pd.DataFrame({"study_id": ["S1"] * 100, "report": ["x"] * 100}).to_parquet(broken)
    broken.write_bytes(broken.read_bytes()[:-30])
    with pytest.raises(SourceError, match="not a readable Parquet file"):
        _text_only(broken)
    header = tmp_path / "h.csv"
    header.write_text('study_id,"patient_id,report\nS1,P1,x\n')
    with pytest.raises(SourceError, match=r"the header \(line 1\) cannot be parsed"):
        _text_only(header)
    empty = tmp_path / "empty.csv"
    empty.write_text("\n\n")
    with pytest.raises(SourceError, match="no header line"):
        _text_only(empty)
    twice = tmp_path / "twice.csv"
    twice.write_text("study_id,report,report\nS1,a,b\n")
    with pytest.raises(SourceError, match="'report' appears twice"):
        _text_only(twice, patient_id=None)
    utf16 = tmp_path / "u.csv"
    utf16.write_bytes("study_id,patient_id,report\nS1,P1,x\n".encode("utf-16"))
    with pytest.raises(SourceError, match="is UTF-16 text"):
        _text_only(utf16)
    for exc in (SourceError, SourceNotFoundError):
        assert issubclass(exc, LexrayError)


def test_missing_column_hint_lists_the_columns_the_export_has(tmp_path):
    path = tmp_path / "e.csv"
    path.write_text("accession,mrn,text\nA1,P1,IMPRESSION: ok\n")
    with pytest.raises(
        SourceError,
        match=r"missing column\(s\) \['study_id', 'patient_id', 'report'\]; "
        r"present: \['accession', 'mrn', 'text'\]",
    ):
        _text_only(path)


def test_hospital_images_are_checked_by_default_and_misses_are_rejects(tmp_path):
    (tmp_path / "a.png").write_bytes(b"\x89PNG")
    path = tmp_path / "e.csv"
    path.write_text(
        "study_id,patient_id,image_path,report\n"
        "S1,P1,a.png;gone.png,IMPRESSION: ok\n"
        "S2,P2,gone2.png,IMPRESSION: ok\n"
        "S3,P3,,IMPRESSION: text only\n"
    )
    result = load_hospital(HospitalConfig(path=path, image_root=tmp_path))
    by_id = {s.study_id: s for s in result.studies}
    assert sorted(by_id) == ["hospital-S1", "hospital-S3"]
    assert [Path(i.path).name for i in by_id["hospital-S1"].images] == ["a.png"]
    assert Counter((r.record, r.reason) for r in result.rejects) == {
        ("e.csv:line 2", "missing_image"): 1,
        ("e.csv:line 3", "missing_image"): 1,
        ("e.csv:line 3", "no_images"): 1,
    }
    unchecked = load_hospital(HospitalConfig(path=path, image_root=tmp_path, check_images=False))
    assert len(unchecked.studies) == 3 and not unchecked.rejects


def test_mimic_reports_zip_truncated_or_with_a_damaged_member(mimic_tree, tmp_path):
    import zipfile

    from lexray.data.sources.mimic import load_mimic_cxr

    archive = tmp_path / "mimic-cxr-reports.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for report in sorted((mimic_tree / "files").rglob("s*.txt")):
            z.write(report, str(report.relative_to(mimic_tree)))
    data = archive.read_bytes()
    partial = tmp_path / "partial.zip"
    partial.write_bytes(data[: len(data) // 2])
    with pytest.raises(SourceError, match="not a zip archive"):
        load_mimic_cxr(mimic_tree, reports=partial)
    with zipfile.ZipFile(archive) as z:
        first = z.infolist()[0]
    damaged = bytearray(data)
    start = first.header_offset + 30 + len(first.filename) + 2
    for k in range(start, start + 4):
        damaged[k] ^= 0xFF
    archive.write_bytes(bytes(damaged))
    result = load_mimic_cxr(mimic_tree, reports=archive)
    assert [r.reason for r in result.rejects].count("unreadable_report") == 1


def test_openi_folder_with_an_unreadable_report_is_a_named_error(tmp_path):
    from lexray.data.sources.openi import load_openi

    folder = tmp_path / "ecgen-radiology"
    (folder / "1.xml").mkdir(parents=True)  # unreadable as a file
    with pytest.raises(SourceError, match="1.xml: cannot read the report"):
        load_openi(tmp_path)
