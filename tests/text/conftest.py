"""Tiny in-process models for the text tests: a 2-layer random Llama, a 2-layer BERT, a word-level tokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest

from lexray.testing import build_tiny_bert, build_tiny_llama


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer random Llama directory (tied embeddings)."""
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_llama_untied_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer random Llama directory with a separate lm_head."""
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama-untied"), tie=False)


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer random BERT directory."""
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))
