"""Shared fixtures: where the real data and the offline weights are, skipping with a reason when absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _shared_dir() -> Path:
    return Path(os.environ.get("LEXRAY_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The ../shared folder beside the repository (real data; never copied into the repo)."""
    path = _shared_dir()
    if not path.is_dir():
        pytest.skip(f"{path} is absent: real-data tests need ../shared beside the repository")
    return path


@pytest.fixture(scope="session")
def openi_dir(shared_dir: Path) -> Path:
    """The real Open-i report archive and splits."""
    path = shared_dir / "data" / "openi"
    if not (path / "NLMCXR_reports.tgz").is_file():
        pytest.skip(f"{path}/NLMCXR_reports.tgz is absent")
    return path


@pytest.fixture(scope="session")
def textbench_dev(shared_dir: Path) -> Path:
    """The text benchmark development file (evaluation only)."""
    path = shared_dir / "bench" / "textbench-dev.jsonl"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return path


def _offline_model(alias: str) -> Path:
    from lexray import models

    if not models.is_installed(alias):
        pytest.skip(f"offline model {alias} is not installed: run `lexray models install-offline`")
    return models.offline_dir(alias)


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """The real SmolLM2-135M-Instruct directory (installed by `make test`)."""
    return _offline_model("smollm2-135m")


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The real all-MiniLM-L6-v2 directory (installed by `make test`)."""
    return _offline_model("minilm-l6")
