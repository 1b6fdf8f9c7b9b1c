"""Slow: the real SmolLM2 report tower and real Open-i reports rendered as phantoms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow


def _reports(openi_dir: Path, n: int) -> list:
    from lexray.data.sources.openi import load_openi

    studies = load_openi(openi_dir / "NLMCXR_reports.tgz", split_file=openi_dir / "r2gen_split.json").studies
    return [s for s in studies if s.split == "test" and s.report_text][:n]


def test_smollm2_frozen_tower_with_cache(smollm2_dir: Path, openi_dir: Path, tmp_path: Path) -> None:
    from lexray.clip import DualEncoder, DualEncoderConfig, TextTowerConfig
    from lexray.vision import VisionConfig

    texts = [s.report_text for s in _reports(openi_dir, 6)]
    model = DualEncoder.from_config(
        DualEncoderConfig(
            vision=VisionConfig(kind="small_cnn", image_size=64),
            text=TextTowerConfig(encoder=str(smollm2_dir), mode="frozen", max_length=128),
            embed_dim=32,
        )
    )
    direct = model.embed_texts(texts, batch_size=3)
    cache = model.attach_text_cache(tmp_path)
    first = model.embed_texts(texts, batch_size=3)
    second = model.embed_texts(texts, batch_size=3)
    assert cache.misses == len(set(texts)) and cache.hits >= len(texts)
    np.testing.assert_allclose(first, direct, atol=1e-4)
    np.testing.assert_array_equal(first, second)
    model.save_pretrained(tmp_path / "m")
    again = DualEncoder.from_pretrained(tmp_path / "m")
    np.testing.assert_allclose(again.embed_texts(texts[:2]), direct[:2], atol=1e-4)


def test_real_reports_render_their_findings(openi_dir: Path, tmp_path: Path) -> None:
    from lexray.phantoms import PhantomConfig, render_studies

    studies = _reports(openi_dir, 40)
    result = render_studies(studies, tmp_path, PhantomConfig(size=128), progress=False)
    assert len(result.studies) == len(studies)
    for s in result.studies:
        f = result.findings[s.study_id]
        text = s.report_text.lower()
        # Reports that state an effusion on one side are drawn with it on that side.
        if f.effusion:
            assert "effusion" in text or "blunting" in text or "fluid" in text
        assert s.extra["synthetic"] == "true"
    assert sum(f.normal for f in result.findings.values()) > 0
    assert any(not f.normal for f in result.findings.values())
