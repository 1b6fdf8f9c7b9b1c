"""Variant runs: resume after a crash (nothing lost or duplicated), config validation, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lexray.cli.main import app
from lexray.data.manifest import write_manifest
from lexray.variants.config import VariantsConfig
from lexray.variants.pipeline import VariantsError, generate_variants, select_studies, validate, variant_stats
from lexray.variants.store import VariantStore

from .conftest import HANDWRITTEN, make_study

CFG = VariantsConfig(
    styles=("shorthand", "reordered", "error"), error_types=("negation", "laterality"), chunk_size=2
)


def _lines(store: VariantStore) -> list[dict]:
    return [json.loads(line) for line in store.path.read_text(encoding="utf-8").splitlines()]


def test_run_then_rerun_is_a_no_op(tmp_path: Path, labeler) -> None:
    store = VariantStore(tmp_path)
    first = generate_variants(HANDWRITTEN, CFG, store, labeler=labeler, progress=False)
    assert first.written == len(HANDWRITTEN) * 4 and first.skipped == 0
    again = generate_variants(HANDWRITTEN, CFG, store, labeler=labeler, progress=False)
    assert again.written == 0 and again.skipped == len(HANDWRITTEN) * 4
    # a new style on the same store adds only that style
    more = generate_variants(
        HANDWRITTEN, VariantsConfig(styles=("headerless",)), store, labeler=labeler, progress=False
    )
    assert more.written == len(HANDWRITTEN)
    assert len(_lines(store)) == len(HANDWRITTEN) * 5


def test_resume_after_a_crash_loses_and_duplicates_nothing(tmp_path: Path, labeler) -> None:
    manifest = write_manifest(HANDWRITTEN, tmp_path / "m.parquet")
    crashed = tmp_path / "crashed"
    # A child process makes variants and dies on its third durable append, leaving a torn line.
    script = textwrap.dedent(
        f"""
        import json, os
        from lexray.data.manifest import read_manifest
        from lexray.variants import store as st
        from lexray.variants.config import VariantsConfig
        from lexray.variants.pipeline import generate_variants

        original = st.VariantStore.add
        calls = [0]

        def crashing(self, records):
            records = list(records)
            calls[0] += 1
            if calls[0] == 3 and records:
                line = json.dumps(records[0].to_dict())
                with open(self.path, "ab") as f:
                    f.write(line[: len(line) // 2].encode())
                os._exit(3)
            return original(self, records)

        st.VariantStore.add = crashing
        cfg = VariantsConfig(styles={list(CFG.styles)!r}, error_types={list(CFG.error_types)!r}, chunk_size=2)
        generate_variants(read_manifest({str(manifest)!r}), cfg, st.VariantStore({str(crashed)!r}), progress=False)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 3, proc.stderr[-2000:]
    store = VariantStore(crashed)
    partial = store.read()
    assert 0 < len(partial) < len(HANDWRITTEN) * 4  # two chunks survived, the third was torn

    resumed = generate_variants(HANDWRITTEN, CFG, store, labeler=labeler, progress=False)
    assert resumed.skipped == len(partial)
    clean = VariantStore(tmp_path / "clean")
    generate_variants(HANDWRITTEN, CFG, clean, labeler=labeler, progress=False)

    lines = _lines(store)  # every line parses: the torn tail was cut before appending
    keys = [
        (d["study_id"], d["style"], d["generator"], d["prompt_version"], d["error_type"] or "") for d in lines
    ]
    assert len(keys) == len(set(keys)) == len(HANDWRITTEN) * 4
    assert sorted(store.read(), key=lambda r: r.key) == sorted(clean.read(), key=lambda r: r.key)


def test_validate_and_select() -> None:
    with pytest.raises(VariantsError, match="not made by the rules generator"):
        validate(VariantsConfig(styles=("paraphrase",)))
    with pytest.raises(VariantsError, match="not made by the openai generator"):
        validate(VariantsConfig(generator="openai:http://127.0.0.1:1", styles=("shorthand",)))
    with pytest.raises(VariantsError, match="unknown error type"):
        validate(VariantsConfig(error_types=("typo",)))
    studies = [make_study("a", "x."), make_study("b", "y.", split="test"), make_study("c", "z.")]
    assert [s.study_id for s in select_studies(studies, VariantsConfig())] == ["a", "c"]  # train only
    assert [s.study_id for s in select_studies(studies, VariantsConfig(splits=(), limit=2))] == ["a", "b"]


def test_cli_make_and_stats(tmp_path: Path) -> None:
    manifest = write_manifest(HANDWRITTEN, tmp_path / "m.parquet")
    out = tmp_path / "v"
    runner = CliRunner()
    args = ["variants", "make", "-m", str(manifest), "-o", str(out), "--styles", "shorthand,headerless"]
    result = runner.invoke(app, [*args, "--styles", "error", "--error-types", "negation", "--set", "seed=3"])
    assert result.exit_code == 0, result.output
    assert f"{len(HANDWRITTEN)} studies: wrote {len(HANDWRITTEN) * 3} variants" in result.output
    saved = (out / "config.yaml").read_text()
    assert "seed: 3" in saved and "- negation" in saved
    records = VariantStore(out).read()
    assert {r.style for r in records} == {"shorthand", "headerless", "error"}

    stats = runner.invoke(app, ["variants", "stats", str(out), "--json"])
    assert stats.exit_code == 0, stats.output
    rows = json.loads(stats.output)
    assert {(r["style"], r["error_type"]) for r in rows} == {
        ("shorthand", ""),
        ("headerless", ""),
        ("error", "negation"),
    }
    assert sum(r["total"] for r in rows) == len(records)
    assert [dataclass_row.total for dataclass_row in variant_stats(VariantStore(out))] == [
        r["total"] for r in rows
    ]
    table = runner.invoke(app, ["variants", "stats", str(out)])
    assert table.exit_code == 0 and "headerless" in table.output

    rerun = runner.invoke(app, [*args])
    assert rerun.exit_code == 0 and f"{len(HANDWRITTEN) * 2} already done" in rerun.output


def test_cli_errors_are_clear(tmp_path: Path) -> None:
    manifest = write_manifest(HANDWRITTEN[:1], tmp_path / "m.parquet")
    runner = CliRunner()
    bad_style = runner.invoke(
        app, ["variants", "make", "-m", str(manifest), "-o", str(tmp_path / "v"), "--styles", "poem"]
    )
    assert bad_style.exit_code == 2 and "style 'poem' is not made by the rules generator" in bad_style.output
    bad_key = runner.invoke(
        app, ["variants", "make", "-m", str(manifest), "-o", str(tmp_path / "v"), "--set", "colour=red"]
    )
    assert bad_key.exit_code == 2 and "unknown key colour" in bad_key.output
    missing = runner.invoke(app, ["variants", "stats", str(tmp_path / "nothing")])
    assert missing.exit_code == 2 and "no variant store" in missing.output


def test_one_broken_study_does_not_end_the_run(tmp_path: Path, labeler, monkeypatch) -> None:
    from lexray.variants import rules

    original = rules.render_rule_style

    def flaky(study, style, seed):
        if study.study_id == "abn-3":
            raise RuntimeError("simulated bug")
        return original(study, style, seed)

    monkeypatch.setattr(rules, "render_rule_style", flaky)
    store = VariantStore(tmp_path)
    cfg = VariantsConfig(styles=("headerless",), chunk_size=4)
    summary = generate_variants(HANDWRITTEN, cfg, store, labeler=labeler, progress=False)
    assert summary.written == len(HANDWRITTEN) - 1 and summary.failures == 1
    assert "abn-3" not in {r.study_id for r in store.read()}
    (failure,) = store.read_failures()
    assert (
        failure["study_id"] == "abn-3" and failure["reason"] == "internal error: RuntimeError: simulated bug"
    )
