"""`lexray index build/add/info` and `lexray search` through the real command line app."""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.testing import CliRunner

from lexray.cli.main import app
from lexray.data.manifest import write_manifest
from lexray.index import RetrievalIndex

runner = CliRunner()


def _invoke(*args: str):
    result = runner.invoke(app, [str(a) for a in args])
    return result


def test_build_search_add_info(tmp_path: Path, toy_run, toy_module, corpus):
    write_manifest(corpus(tmp_path, 6), tmp_path / "m1.parquet")
    write_manifest(corpus(tmp_path, 3, start=6), tmp_path / "m2.parquet")
    out = tmp_path / "idx"
    r = _invoke(
        "index", "build", "--model", toy_run, "--manifest", tmp_path / "m1.parquet", "--out", out,
        "--set", f"model_class={toy_module}", "--set", "faiss.kind=hnsw", "--no-progress",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "studies: 6" in r.output and "recall@10" in r.output
    idx = RetrievalIndex.load(out)
    saved = yaml.safe_load((out / idx.version / "config.yaml").read_text())
    assert saved["faiss"]["kind"] == "hnsw" and saved["model_class"] == toy_module

    r = _invoke(
        "search", "--index", out, "--text", idx.study("s4").report_text, "--target", "text", "-k", "3"
    )
    assert r.exit_code == 0, r.output
    first_row = next(line for line in r.output.splitlines() if "│ 1 " in line)
    assert "s4" in first_row and "1.000" in first_row
    img = tmp_path / "img" / "s2_0.png"
    r = _invoke("search", "--index", out, "--image", img, "--target", "image", "-k", "2")
    assert r.exit_code == 0, r.output
    first_row = next(line for line in r.output.splitlines() if "│ 1 " in line)
    assert "s2" in first_row and "s2_0.png" in first_row

    r = _invoke("index", "add", "--index", out, "--manifest", tmp_path / "m2.parquet", "--no-progress")
    assert r.exit_code == 0, r.output
    assert len(RetrievalIndex.load(out).studies) == 9
    r = _invoke("index", "info", "--index", out)
    assert r.exit_code == 0 and "9 / 18" in r.output and "hnsw" in r.output


def test_cli_errors_are_clean(tmp_path: Path, toy_run, toy_module):
    r = _invoke(
        "index", "build", "--model", toy_run, "--manifest", tmp_path / "none.parquet", "--out", tmp_path / "i"
    )
    assert r.exit_code == 2 and "error:" in r.output
    r = _invoke(
        "index", "build", "--model", toy_run, "--manifest", tmp_path / "none.parquet", "--out", tmp_path / "i",
        "--set", "faiss.kind=annoy",
    )  # fmt: skip
    assert r.exit_code == 2 and "faiss.kind" in r.output
    r = _invoke("search", "--index", tmp_path, "--text", "lungs")
    assert r.exit_code == 2 and "not a lexray index" in r.output
    r = _invoke("search", "--index", tmp_path)
    assert r.exit_code == 2 and "exactly one of --image or --text" in r.output


def test_build_lists_skipped_records_by_study_and_reason(tmp_path: Path, toy_run, toy_module, corpus):
    studies = corpus(tmp_path, 3)
    (tmp_path / studies[1].images[0].path).unlink()
    write_manifest(studies, tmp_path / "m.parquet")
    r = _invoke(
        "index", "build", "--model", toy_run, "--manifest", tmp_path / "m.parquet", "--out", tmp_path / "idx",
        "--set", f"model_class={toy_module}", "--no-progress",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    flat = "".join(r.output.split())  # the console wraps long lines
    assert "skippedstudys1:missing_image:" in flat and "img/s1_0.png:filenotfound" in flat


def test_a_model_that_embeds_nothing_is_one_error_line(tmp_path: Path, toy_run, toy_module, corpus):
    write_manifest(corpus(tmp_path, 2), tmp_path / "m.parquet")
    r = _invoke(
        "index", "build", "--model", toy_run, "--manifest", tmp_path / "m.parquet", "--out", tmp_path / "idx",
        "--set", "model_class=toy_embedder:BrokenEmbedder", "--no-progress",
    )  # fmt: skip
    assert r.exit_code == 2 and isinstance(r.exception, SystemExit), r.output
    assert "error:" in r.output and "device lost" in r.output and "Traceback" not in r.output
