from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from lexray import __version__
from lexray.cli.main import app

runner = CliRunner()


def test_help_lists_stages() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for word in ("models", "doctor", "version"):
        assert word in result.output


def test_version() -> None:
    result = runner.invoke(app, ["version"])
    assert result.exit_code == 0 and result.output.strip() == __version__


def test_doctor_on_fresh_home_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEXRAY_HOME", str(tmp_path))
    result = runner.invoke(app, ["doctor"])
    assert result.exit_code == 0, result.output
    assert "lexray models install-offline" in result.output
    assert "torch" in result.output


def test_models_list() -> None:
    result = runner.invoke(app, ["models", "list"])
    assert result.exit_code == 0 and "smollm2-135m" in result.output


def test_root_help_lines_are_the_commands_own() -> None:
    """`lexray --help` shows a stored line per command; it must be the line the command itself declares."""
    import typer

    from lexray.cli.main import _COMMANDS, load_command

    for name, entry in _COMMANDS.items():
        command = load_command(name)
        declared = " ".join((command.help or "").split("\n\n")[0].split())
        assert declared == entry.summary, name
    assert isinstance(typer.main.get_command(app), typer.core.TyperGroup)


def test_help_and_version_import_no_heavy_library() -> None:
    """`--help` of lexray and of every command, and `version`, must not import torch, spaCy, FAISS,
    transformers or pandas (they cost seconds)."""
    import subprocess
    import sys

    from lexray.cli.main import _COMMANDS

    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from lexray.cli.main import app\n"
        f"for args in (['--help'], ['version'], *([name, '--help'] for name in {list(_COMMANDS)!r})):\n"
        "    assert CliRunner().invoke(app, args).exit_code == 0, args\n"
        "heavy = sorted({'torch', 'spacy', 'faiss', 'transformers', 'pandas'} & set(sys.modules))\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def test_a_lexray_error_in_any_command_is_one_line_and_exit_2(monkeypatch: pytest.MonkeyPatch) -> None:
    import lexray.cli.doctor
    from lexray.errors import LexrayError

    def broken() -> None:
        raise LexrayError("the thing is wrong; do this to fix it")

    monkeypatch.setattr(lexray.cli.doctor, "doctor", broken)
    result = runner.invoke(app, ["doctor"])
    assert result.exit_code == 2
    assert "error: the thing is wrong; do this to fix it" in result.output
    assert "Traceback" not in result.output
