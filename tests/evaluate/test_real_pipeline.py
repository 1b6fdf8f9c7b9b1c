"""Slow: `lexray evaluate` on real Open-i reports with phantom radiographs and a real MiniLM report tower.

The phantoms are synthetic images rendered from each report's findings (never a claim about real
images); the point is the whole path: manifest -> DualEncoder.from_pretrained -> embed PNGs and real
reports -> retrieval, generation with the real labeler, rule-style robustness -> files.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lexray.cli.main import app

pytestmark = pytest.mark.slow


def test_evaluate_cli_on_real_reports_and_phantoms(openi_dir: Path, minilm_dir: Path, tmp_path: Path) -> None:
    import torch

    from lexray.clip import DualEncoder, DualEncoderConfig, TextTowerConfig
    from lexray.data.manifest import write_manifest
    from lexray.data.sources.openi import load_openi
    from lexray.phantoms import PhantomConfig, render_studies
    from lexray.vision import VisionConfig

    studies = load_openi(openi_dir / "NLMCXR_reports.tgz", split_file=openi_dir / "r2gen_split.json").studies
    chosen = [s for s in studies if s.split == "test" and s.findings][:40]
    chosen += [s for s in studies if s.split == "train" and s.findings][:80]
    rendered = render_studies(chosen, tmp_path, PhantomConfig(size=64), progress=False)
    manifest = write_manifest(rendered.studies, tmp_path / "manifest.parquet")

    torch.manual_seed(0)
    model = DualEncoder.from_config(
        DualEncoderConfig(
            vision=VisionConfig(kind="small_cnn", image_size=64),
            text=TextTowerConfig(encoder=str(minilm_dir), mode="frozen", max_length=128),
            embed_dim=32,
        )
    )
    model.save_pretrained(tmp_path / "run")

    res = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--model",
            str(tmp_path / "run"),
            "--manifest",
            str(manifest),
            "--split",
            "test",
            "--out",
            str(tmp_path / "eval"),
            "--no-progress",
        ],
    )
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    n_test = sum(s.split == "test" for s in rendered.studies)
    assert m["n_studies"] == n_test and m["n_skipped"] == 0
    r = m["retrieval"]["study/exact/image_to_text"]
    assert r["n_queries"] == n_test and 1 <= r["median_rank"] <= n_test
    gen = m["generation"]
    assert gen["corpus"]["n"] == sum(s.split == "train" for s in rendered.studies)
    assert 0.0 <= gen["bleu4"] <= gen["bleu1"] <= 1.0
    assert len(gen["chexpert"]["f1"]) == 14
    assert set(m["robustness"]) == {"shorthand", "impression_only", "expanded"}
    assert any(v.get("n", 0) > 0 for v in m["robustness"].values())
    for name in ("metrics.md", "recall_at_k.png", "chexpert_f1.png", "generated.jsonl"):
        assert (tmp_path / "eval" / name).is_file()
