"""One error path for the command line: commands raise a ``LexrayError``; ``cli/main`` prints it, exit 2."""

from __future__ import annotations

import ast
from pathlib import Path

import lexray.cli
from lexray.cli._args import CommandError
from lexray.errors import LexrayError


def test_no_command_module_keeps_its_own_error_exit_helper() -> None:
    own = [
        f"{path.name}:{node.lineno}"
        for path in sorted(Path(lexray.cli.__file__).parent.glob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.FunctionDef) and node.name == "_fail"
    ]
    assert not own, f"raise CommandError (or another LexrayError) instead of a local _fail: {own}"


def test_command_error_is_reported_by_the_global_handler() -> None:
    assert issubclass(CommandError, LexrayError)
