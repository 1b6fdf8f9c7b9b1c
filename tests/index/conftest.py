"""Fixtures for index tests: the toy embedder saved as a run directory, and synthetic studies with PNGs."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from lexray.data.study import Image, Study

HERE = Path(__file__).resolve().parent
_WORDS = (
    "heart size normal lungs clear no pleural effusion pneumothorax mild cardiomegaly right left lower lobe "
    "opacity atelectasis consolidation edema stable degenerative spine calcified granuloma"
).split()


@pytest.fixture
def toy_module(monkeypatch: pytest.MonkeyPatch) -> str:
    """Make ``toy_embedder`` importable (as the model class an index refers to); returns the class spec."""
    monkeypatch.syspath_prepend(str(HERE))
    sys.modules.pop("toy_embedder", None)
    return "toy_embedder:ToyEmbedder"


@pytest.fixture
def toy_run(tmp_path: Path, toy_module: str) -> Path:
    """A run directory the toy embedder loads from."""
    from toy_embedder import ToyEmbedder

    return ToyEmbedder(dim=32).save_pretrained(tmp_path / "run")


def write_png(path: Path, seed: int, size: int = 48) -> Path:
    """A random smooth grey-scale PNG (distinct per seed)."""
    rng = np.random.default_rng(seed)
    small = rng.random((6, 6))
    img = PILImage.fromarray((small * 255).astype(np.uint8)).resize((size, size), PILImage.BILINEAR)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def make_studies(root: Path, n: int, start: int = 0, images_per_study: int = 2) -> list[Study]:
    """``n`` synthetic studies with random report words and PNG images (paths relative to ``root``)."""
    rng = np.random.default_rng(start + 7)
    out = []
    for i in range(start, start + n):
        words = rng.choice(_WORDS, size=8)
        imgs = []
        for j in range(images_per_study):
            rel = f"img/s{i}_{j}.png"
            write_png(root / rel, seed=i * 10 + j)
            imgs.append(Image(path=rel, view="PA" if j == 0 else "LATERAL", image_id=f"s{i}_{j}"))
        out.append(
            Study(
                study_id=f"s{i}",
                patient_id=f"p{i}",
                source="synthetic",
                split="test",
                images=tuple(imgs),
                findings=" ".join(words[:5]) + ".",
                impression=" ".join(words[5:]) + ".",
            )
        )
    return out


@pytest.fixture
def corpus():
    """The synthetic study factory ``corpus(root, n, start=0, images_per_study=2)``."""
    return make_studies


@pytest.fixture
def png():
    """The PNG writer ``png(path, seed, size=48)``."""
    return write_png
