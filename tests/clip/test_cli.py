"""`lexray clip train`, `lexray clip cache-texts` and `lexray embed images|texts` end to end on a tiny run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml
from typer.testing import CliRunner

from lexray.cli.main import app


def test_train_then_embed(manifest: Path, tiny_text_dir: Path, tmp_path: Path) -> None:
    recipe = {
        "output_dir": str(tmp_path / "run"),
        "batch_size": 4,
        "max_steps": 2,
        "eval_every": 0,
        "save_every": 0,
        "model": {
            "vision": {"kind": "small_cnn", "image_size": 32, "cnn_widths": [8, 16], "cnn_out_dim": 16},
            "text": {"encoder": str(tiny_text_dir), "max_length": 32, "cache_dir": str(tmp_path / "cache")},
            "embed_dim": 8,
        },
        "data": {
            "sources": [{"manifest": str(manifest)}],
            "val": {"manifest": str(manifest), "split": "val"},
        },
    }
    cfg = tmp_path / "recipe.yaml"
    cfg.write_text(yaml.safe_dump(recipe))
    runner = CliRunner()
    res = runner.invoke(app, ["clip", "cache-texts", "--config", str(cfg), "--also", f"{manifest}:val"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["clip", "train", "--config", str(cfg), "--set", "optim.warmup_steps=1"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "run" / "best" / "lexray_clip.json").is_file()
    for kind in ("images", "texts"):
        out = tmp_path / f"{kind}.npz"
        res = runner.invoke(
            app,
            [
                "embed",
                kind,
                "--model",
                str(tmp_path / "run"),
                "--manifest",
                str(manifest),
                "--split",
                "val",
                "--out",
                str(out),
            ],
        )
        assert res.exit_code == 0, res.output
        data = np.load(out)
        assert data["embeddings"].shape == (8, 8) and len(data["study_id"]) == 8
        assert np.allclose(np.linalg.norm(data["embeddings"], axis=1), 1.0, atol=1e-5)


def test_bad_config_is_a_clear_error(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["clip", "train", "--set", "nope=1"])
    assert res.exit_code == 2 and "unknown key nope" in res.output
