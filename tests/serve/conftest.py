"""Fixtures for service tests: a small index built with the toy embedder from tests/index."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from lexray.data.study import Image, Study
from lexray.index import IndexConfig, Searcher, build_index, make_ref

TOY_DIR = Path(__file__).resolve().parents[1] / "index"
MODEL_CLASS = "toy_embedder:ToyEmbedder"
# Words that never occur in log lines unless report text leaked into them.
SECRET_WORDS = ("zanzibarish", "quokkalike")


def write_png(path: Path, seed: int, size: int = 64) -> Path:
    """A smooth random grey-scale PNG, distinct per seed."""
    rng = np.random.default_rng(seed)
    img = PILImage.fromarray((rng.random((6, 6)) * 255).astype(np.uint8)).resize(
        (size, size), PILImage.BILINEAR
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


@pytest.fixture(scope="session")
def toy_path() -> Iterator[None]:
    """Make the toy embedder importable for the whole session (the index refers to it by name)."""
    sys.path.insert(0, str(TOY_DIR))
    yield
    sys.path.remove(str(TOY_DIR))


@pytest.fixture(scope="session")
def served_index(tmp_path_factory: pytest.TempPathFactory, toy_path: None) -> Path:
    """An index of 8 synthetic studies (2 PNGs each) built with the toy embedder."""
    from toy_embedder import ToyEmbedder

    root = tmp_path_factory.mktemp("serve")
    run = ToyEmbedder(dim=32).save_pretrained(root / "run")
    words = ["heart", "lungs", "effusion", "pneumothorax", "opacity", "cardiomegaly", "edema", "spine"]
    studies = []
    for i in range(8):
        imgs = tuple(
            Image(
                path=str(write_png(root / "img" / f"s{i}_{j}.png", seed=100 * i + j)),
                view=("PA", "LATERAL")[j],
            )
            for j in range(2)
        )
        findings = f"{words[i]} {words[(i + 3) % 8]} finding {SECRET_WORDS[i % 2]}."
        studies.append(
            Study(
                study_id=f"s{i}",
                patient_id=f"p{i}",
                source="synthetic",
                split="test",
                images=imgs,
                findings=findings,
                impression=f"impression {words[(i + 5) % 8]}.",
            )
        )
    cfg = IndexConfig(model_class=MODEL_CLASS, chunk_size=8)
    build_index(studies, ToyEmbedder(dim=32), make_ref(run, MODEL_CLASS), root / "index", cfg, progress=False)
    return root / "index"


@pytest.fixture(scope="session")
def searcher(served_index: Path) -> Searcher:
    """The index and its model, loaded the way `lexray serve` loads them."""
    return Searcher.open(served_index)


@pytest.fixture
def png():
    """The PNG writer ``png(path, seed, size=64)``."""
    return write_png


@pytest.fixture(scope="session")
def secret_words() -> tuple[str, ...]:
    """Words only found in the indexed reports (to check logs never contain report text)."""
    return SECRET_WORDS
