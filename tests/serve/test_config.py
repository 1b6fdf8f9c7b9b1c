"""ServeConfig refuses values the service cannot run with, at start and in one line (not at bind time)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from lexray.cli.main import app
from lexray.config import ConfigError, load_config
from lexray.serve import ServeConfig


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        ("port=-1", "port must be between 1 and 65535, got -1"),
        ("port=0", "port must be between 1 and 65535"),
        ("port=70000", "port must be between 1 and 65535"),
        ("host=''", "host is empty"),
        ("max_k=0", "max_k must be at least 1"),
        ("default_k=50", "default_k must be between 1 and max_k=20"),
        ("max_upload_bytes=-5", "max_upload_bytes must be at least 1"),
        ("image_max_side=8", "image_max_side must be between 16 and 4096"),
    ],
)
def test_bad_values_are_config_errors(override: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        load_config(ServeConfig, None, ["max_k=20", override])


def test_defaults_are_valid() -> None:
    assert ServeConfig().port == 8000


def test_serve_bad_port_is_one_line_exit_2(served_index: Path) -> None:
    result = CliRunner().invoke(app, ["serve", "--index", str(served_index), "--set", "port=-1"])
    assert result.exit_code == 2, result.output
    assert "port must be between 1 and 65535, got -1" in result.output
    assert isinstance(result.exception, SystemExit)
