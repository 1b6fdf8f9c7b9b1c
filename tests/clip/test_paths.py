from __future__ import annotations

from pathlib import Path

import pytest

from lexray.clip import DualEncoder, DualEncoderConfig, TextTowerConfig
from lexray.vision import VisionConfig


def test_relative_text_encoder_dir_is_saved_absolute(
    tiny_text_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run trained with a relative text-encoder path still loads from another working directory."""
    monkeypatch.chdir(tiny_text_dir.parent)
    config = DualEncoderConfig(
        vision=VisionConfig(kind="small_cnn", image_size=32, cnn_widths=(8, 16, 16), cnn_out_dim=24),
        text=TextTowerConfig(encoder=tiny_text_dir.name, mode="frozen", max_length=32),
        embed_dim=16,
    )
    model = DualEncoder.from_config(config)
    assert model.config.text.encoder == str(tiny_text_dir.resolve())
    model.save_pretrained(tmp_path / "run")
    monkeypatch.chdir(tmp_path)
    reloaded = DualEncoder.from_pretrained(tmp_path / "run")
    assert reloaded.embed_texts(["small left pleural effusion"]).shape == (1, 16)
