"""An interrupted ``text train`` (mid-MNTP or mid-contrastive) resumes and ends with the same weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lexray.config import load_config
from lexray.data.study import Study
from lexray.text.config import TextTrainConfig

REPO = Path(__file__).resolve().parents[2]
REPORTS = [
    ("The lungs are clear. No pleural effusion.", "No acute cardiopulmonary process."),
    ("Mild cardiomegaly. Small left pleural effusion.", "Cardiomegaly with small left effusion."),
    ("Right lower lobe opacity.", "Right lower lobe pneumonia."),
    ("There is a small right pneumothorax.", "Small right pneumothorax."),
]


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from lexray.data.manifest import write_manifest

    studies = [
        Study(f"S{i}", f"P{i}", "synthetic", "train", findings=f, impression=imp)
        for i, (f, imp) in enumerate(REPORTS * 3)
    ]
    path = tmp_path_factory.mktemp("resume") / "manifest.parquet"
    write_manifest(studies, path)
    return path


def _config(tiny_llama_dir: Path, manifest: Path, out: Path, *extra: str) -> TextTrainConfig:
    return load_config(
        TextTrainConfig,
        REPO / "configs/text/tiny-smoke.yaml",
        [
            f"encoder.model={tiny_llama_dir}",
            f"data.manifest={manifest}",
            f"output_dir={out}",
            "mntp.steps=3",
            "contrastive.steps=3",
            "contrastive.hard_negatives=2",
            "mntp.lora.dropout=0.2",  # dropout draws from the RNG, which the checkpoint must restore
            "contrastive.lora.dropout=0.2",
            *extra,
        ],
    )


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "model" / "model.safetensors")


@pytest.mark.parametrize("stop", [2, 5], ids=["mid-mntp", "mid-contrastive"])
def test_interrupted_text_run_resumes_to_the_same_weights(tiny_llama_dir, manifest, tmp_path, stop):
    from lexray.text.train import train

    whole = train(_config(tiny_llama_dir, manifest, tmp_path / "whole"))
    cfg = _config(tiny_llama_dir, manifest, tmp_path / "split")
    train(cfg, stop_at_step=stop)
    assert not (tmp_path / "split" / "model").exists()  # stopped: no final encoder yet
    assert (tmp_path / "split" / "checkpoints" / f"step-{stop:07d}" / "trainer_state.json").is_file()
    split = train(cfg)
    a, b = _weights(whole), _weights(split)
    assert a.keys() == b.keys() and a
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=0, msg=k)
    # Without the checkpoint the second half starts from scratch and ends elsewhere.
    fresh = _config(
        tiny_llama_dir, manifest, tmp_path / "fresh", "mntp.steps=1" if stop == 2 else "contrastive.steps=1"
    )
    c = _weights(train(fresh))
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_periodic_checkpoints_keep_the_newest(tiny_llama_dir, manifest, tmp_path):
    from lexray.text.train import train

    run = train(_config(tiny_llama_dir, manifest, tmp_path / "run", "save_every=2", "keep_checkpoints=2"))
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-0000004", "step-0000006"]
