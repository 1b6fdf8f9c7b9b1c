"""Bad arguments and damaged files for `data prepare`, `data stats` and `data phantom`: one line, exit 2."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from lexray.cli.main import app
from lexray.config import ConfigError, load_config
from lexray.data.manifest import ManifestError, read_manifest, read_rejects, write_manifest
from lexray.data.prepare import PrepareConfig
from lexray.data.study import Reject, Study

EXPORT = "study_id,patient_id,image_path,report\nS1,P1,,IMPRESSION: No effusion.\nS2,P2,,IMPRESSION: Small.\n"


def _run(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def assert_named_error(result, *needles: str) -> None:
    """Exit 2, no traceback, one `error:` line holding every needle."""
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    text = result.output
    assert "Traceback" not in text and text.count("error:") == 1, text
    for needle in needles:
        assert needle in text, (needle, text)


@pytest.fixture
def export(tmp_path: Path) -> Path:
    path = tmp_path / "export.csv"
    path.write_text(EXPORT)
    return path


def _prepare(export: Path, out: Path, *extra: str):
    return _run("data", "prepare", f"hospital={export}", "--out", out, *extra)


def test_out_that_is_an_input_is_refused_before_any_work(tmp_path, export):
    before = export.read_bytes()
    assert_named_error(_prepare(export, export), "would overwrite the input")
    assert export.read_bytes() == before
    parquet = tmp_path / "export.parquet"
    import pandas as pd

    pd.read_csv(export).to_parquet(parquet)
    before = parquet.read_bytes()
    assert_named_error(_prepare(parquet, parquet), "would overwrite the input")
    assert parquet.read_bytes() == before
    # The Open-i archive passed as --out of another source: not a manifest, so not overwritten either.
    tgz = tmp_path / "NLMCXR_reports.tgz"
    tgz.write_bytes(b"\x1f\x8b not really")
    assert_named_error(_prepare(export, tgz), "is not a lexray manifest")
    assert tgz.read_bytes() == b"\x1f\x8b not really"
    recipe = tmp_path / "m.config.yaml"
    recipe.write_text("views: all\n")
    assert_named_error(
        _prepare(export, tmp_path / "m.parquet", "--config", recipe), "would overwrite the input"
    )
    assert recipe.read_text() == "views: all\n"


def test_out_folder_or_under_a_file_is_refused(tmp_path, export):
    assert_named_error(_prepare(export, tmp_path), "is a folder")
    assert_named_error(_prepare(export, export / "m.parquet"), "is a file, not a folder")
    (tmp_path / "x.rejects.jsonl").mkdir()
    assert_named_error(_prepare(export, tmp_path / "x.parquet"), "x.rejects.jsonl is a folder")
    ok = _prepare(export, tmp_path / "run" / "m.parquet")
    assert ok.exit_code == 0, ok.output
    assert len(read_manifest(tmp_path / "run" / "m.parquet")) == 2
    again = _prepare(export, tmp_path / "run" / "m.parquet")  # an earlier manifest may be replaced
    assert again.exit_code == 0, again.output


def test_bad_recipes_and_overrides_are_named_errors(tmp_path, export):
    bad = tmp_path / "r.yaml"
    bad.write_text("views: [frontal\nhospital: {\n")
    assert_named_error(_prepare(export, tmp_path / "m.parquet", "--config", bad), "not valid YAML at line")
    bad.write_bytes(b"views: \xff\n")
    assert_named_error(_prepare(export, tmp_path / "m.parquet", "--config", bad), "not UTF-8")
    assert_named_error(_prepare(export, tmp_path / "m.parquet", "--config", tmp_path), "is a folder")
    out = tmp_path / "m.parquet"
    result = _run(
        "data", "prepare", f"hospital={export}", "--set", "hospital.check_images=false", "--out", out
    )
    assert result.exit_code == 0, result.output
    assert yaml.safe_load((tmp_path / "m.config.yaml").read_text())["hospital"][0]["check_images"] is False
    result = _run("data", "prepare", f"hospital={export}", "--set", "hospital.report=text", "--out", out)
    assert_named_error(result, "missing column(s) ['text']")  # the override reached the entry
    result = _run("data", "prepare", f"hospital={export}", "--set", "hospital.3.name=x", "--out", out)
    assert_named_error(result, "hospital has 1 entries")
    result = _run("data", "prepare", "--set", "hospital.name=x", "--out", out)
    assert_named_error(result, "hospital has no entry to set")


def test_overrides_address_entries_of_a_list_of_sections(tmp_path):
    base = {"hospital": [{"path": "a.csv"}, {"path": "b.csv"}]}
    cfg = load_config(
        PrepareConfig, overrides=["hospital.check_images=false", "hospital.1.name=b"], base=base
    )
    assert [(h.check_images, h.name) for h in cfg.hospital] == [(False, "hospital"), (False, "b")]
    with pytest.raises(ConfigError, match="unknown key hospital.nope"):
        load_config(PrepareConfig, overrides=["hospital.nope=1"], base=base)
    with pytest.raises(ConfigError, match="must be a mapping of OpenIConfig"):
        load_config(PrepareConfig, overrides=["openi.seed=1"], base={"openi": 3})


def _openi_tgz(path: Path, n: int = 40) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for i in range(1, n + 1):
            xml = (
                f'<eCitation><Abstract><AbstractText Label="FINDINGS">Finding {i} '
                + "word " * 200
                + '</AbstractText><AbstractText Label="IMPRESSION">Normal.</AbstractText></Abstract>'
                f'<parentImage id="CXR{i}_IM-{i:04d}-1001"/></eCitation>'
            ).encode()
            info = tarfile.TarInfo(f"ecgen-radiology/{i}.xml")
            info.size = len(xml)
            tar.addfile(info, io.BytesIO(xml))
    return path


def test_truncated_openi_archive_and_malformed_split_file(tmp_path):
    whole = _openi_tgz(tmp_path / "NLMCXR_reports.tgz")
    out = tmp_path / "m.parquet"
    assert _run("data", "prepare", f"openi={whole}", "--out", out).exit_code == 0
    partial = tmp_path / "part" / "NLMCXR_reports.tgz"
    partial.parent.mkdir()
    partial.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    assert_named_error(
        _run("data", "prepare", f"openi={partial}", "--out", out), "not a complete tar archive"
    )
    for content in ('{"train": "oops"}', '{"train": [1]}', '["train"]', '{"holdout": []}', "{"):
        split = tmp_path / "annotation.json"
        split.write_text(content)
        result = _run("data", "prepare", f"openi={whole}", "--set", f"openi.split_file={split}", "--out", out)
        assert_named_error(result, "split file")


def _damage_column(path: Path, column: str) -> None:
    """Flip every byte of one column chunk's pages after their first header bytes."""
    meta = pq.ParquetFile(path).metadata
    names = [meta.schema.column(i).path for i in range(meta.num_columns)]
    chunk = meta.row_group(0).column(names.index(column))
    start = chunk.dictionary_page_offset or chunk.data_page_offset
    data = bytearray(path.read_bytes())
    for k in range(start + 16, start + chunk.total_compressed_size):
        data[k] ^= 0xFF
    path.write_bytes(bytes(data))


def _manifest(tmp_path: Path, n: int = 30) -> Path:
    studies = [
        Study(
            f"s{i}",
            f"p{i}",
            "x",
            "train",
            findings=f"Finding number {i}. " * 20,
            impression="Normal.",
            report=f"FINDINGS: report {i} " + "text " * 300,
        )
        for i in range(n)
    ]
    return write_manifest(studies, tmp_path / "m.parquet", [])


@pytest.mark.parametrize("column", ["report", "findings"])
def test_a_damaged_manifest_page_is_a_named_error_for_stats_and_phantom(tmp_path, column):
    path = _manifest(tmp_path)
    assert _run("data", "stats", path).exit_code == 0
    _damage_column(path, column)
    with pytest.raises(ManifestError, match="is damaged"):
        read_manifest(path)
    assert_named_error(_run("data", "stats", path), "is damaged", str(path))
    assert_named_error(
        _run("data", "phantom", "--manifest", path, "--out", tmp_path / "ph" / "m.parquet"), "is damaged"
    )


def test_manifest_missing_a_column_and_a_corrupt_rejects_file(tmp_path):
    path = _manifest(tmp_path)
    table = pq.read_table(path)
    pq.write_table(table.drop_columns(["impression"]), path)  # keeps the schema metadata
    assert_named_error(_run("data", "stats", path), "lacks the manifest column(s) ['impression']")
    path = _manifest(tmp_path)
    rejects = tmp_path / "m.rejects.jsonl"
    rejects.write_bytes(b'{"source": "x", "record": "r", "reason": "y", "detail": ""}\n{"broken\n')
    assert_named_error(_run("data", "stats", path), "m.rejects.jsonl:line 2 is not a reject record")
    rejects.write_bytes(b'{"source": "x", "record": "r", "reason": "y"}\n[1, 2]\n')
    with pytest.raises(ManifestError, match="line 2"):
        read_rejects(path)
    rejects.write_bytes(b'{"source": "x", "record": "r", "reason": "y"}\n' + b"\xff\n")
    with pytest.raises(ManifestError, match="line 2"):
        read_rejects(path)
    assert read_rejects(write_manifest([], tmp_path / "e.parquet", [Reject("a", "b", "c")])) == [
        Reject("a", "b", "c")
    ]


def test_phantom_out_is_not_the_input_manifest(tmp_path):
    path = _manifest(tmp_path, 3)
    before = path.read_bytes()
    assert_named_error(
        _run("data", "phantom", "--manifest", path, "--out", path), "would overwrite the input"
    )
    assert path.read_bytes() == before
    assert_named_error(_run("data", "phantom", "--manifest", path, "--out", tmp_path), "is a folder")
    notes = tmp_path / "notes.parquet"
    notes.write_bytes(b"my own file")
    assert_named_error(
        _run("data", "phantom", "--manifest", path, "--out", notes), "is not a lexray manifest"
    )
    assert notes.read_bytes() == b"my own file"


def test_prepare_reports_rows_read(tmp_path, export):
    export.write_text(EXPORT + 'S3,P3,,"IMPRESSION: never closed\n')
    result = _prepare(export, tmp_path / "m.parquet")
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if "hospital" in line)
    assert [c.strip() for c in row.strip("│ ").split("│")] == ["hospital", "3", "2", "1"]
    assert json.loads((tmp_path / "m.rejects.jsonl").read_text())["record"] == "export.csv:line 4"
    assert "rejects (hospital bad_row 1)" in result.output


def _phantom_inputs(tmp_path: Path, text: str, name: str) -> Path:
    studies = [Study(f"s{i}", f"p{i}", "x", "train", findings=text, impression="") for i in range(6)]
    return write_manifest(studies, tmp_path / f"{name}.parquet", [])


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_an_interrupted_phantom_rerun_leaves_the_old_run_intact_then_replaces_it(tmp_path, monkeypatch):
    import lexray.phantoms.run as phantom

    out = tmp_path / "ph" / "manifest.parquet"
    args = ("data", "phantom", "--out", out, "--set", "size=32", "--set", "workers=1")
    first = _run(*args, "--manifest", _phantom_inputs(tmp_path, "Lungs are clear.", "normal"))
    assert first.exit_code == 0, first.output
    old_manifest = out.read_bytes()
    old_images = {i.path: (out.parent / i.path).read_bytes() for s in read_manifest(out) for i in s.images}

    real_job = phantom._render_job
    calls = []

    def interrupted(job):  # two PNGs, then a half-written one, then Ctrl-C
        calls.append(job)
        if len(calls) > 2:
            Path(job[3]).with_suffix(".tmp.png").write_bytes(b"\x89PNG half")
            raise KeyboardInterrupt
        real_job(job)

    monkeypatch.setattr(phantom, "_render_job", interrupted)
    effusion = _phantom_inputs(tmp_path, "Large right pleural effusion.", "effusion")
    assert _run(*args, "--manifest", effusion).exit_code != 0
    assert out.read_bytes() == old_manifest  # the manifest still describes the old run ...
    for rel, data in old_images.items():  # ... and every one of its images is the old one
        assert (out.parent / rel).read_bytes() == data, rel

    calls.clear()
    monkeypatch.setattr(phantom, "_render_job", lambda job: (calls.append(job), real_job(job)))
    again = _run(*args, "--manifest", effusion)
    assert again.exit_code == 0, again.output
    assert len(calls) == 4  # resumed: the two finished PNGs were kept
    studies = read_manifest(out)
    assert {s.extra["phantom_findings"] for s in studies} != {"normal"}
    new_images = {i.path for s in studies for i in s.images}
    assert not new_images & set(old_images)
    left = _files(out.parent / "images")
    assert sorted(f"images/{k}" for k in left) == sorted(new_images)  # old run and stray temporaries gone


def test_download_dest_that_is_a_file_is_refused_before_any_work(tmp_path, export):
    result = _run("data", "download", "openi", "--dest", export, "--base-url", "http://127.0.0.1:9")
    assert_named_error(result, "is a file, not a folder")
    result = _run("data", "download", "openi", "--dest", export / "sub", "--base-url", "http://127.0.0.1:9")
    assert_named_error(result, "is a file, not a folder")


@pytest.mark.parametrize(
    ("setting", "needle"),
    [
        ("size=0", "at least 32 pixels"),
        ("size=-3", "at least 32 pixels"),
        ("workers=-1", "workers"),
        ("image_dir=../../escape", "inside the output manifest's folder"),
        ("image_dir=/abs", "inside the output manifest's folder"),
    ],
)
def test_phantom_settings_are_checked_before_rendering(tmp_path, setting, needle):
    path = _manifest(tmp_path, 2)
    result = _run(
        "data", "phantom", "--manifest", path, "--out", tmp_path / "ph" / "m.parquet", "--set", setting
    )
    assert_named_error(result, needle)
    assert not (tmp_path / "ph").exists() and not (tmp_path.parent / "escape").exists()


def test_a_recipe_path_with_a_nul_byte_is_a_named_error(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text('hospital:\n  - path: "a\\0b.csv"\n')
    assert_named_error(
        _run("data", "prepare", "--config", recipe, "--out", tmp_path / "m.parquet"), "does not exist"
    )
