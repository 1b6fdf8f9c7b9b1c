"""A tiny random Llama shared by the multi-process tests (each launched process loads it from disk)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lexray.testing import build_tiny_llama


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer random Llama directory (tied embeddings)."""
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))
