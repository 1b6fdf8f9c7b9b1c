"""A version of code by what it does: a hash of the syntax trees of a module and every lexray module it imports.

Caches of generated data (the rule variants) are keyed by it, so an edit that changes what the code does
invalidates them, while a docstring, a comment or a layout change does not.
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Sequence
from pathlib import Path


def _module_file(root: Path, module: str) -> Path | None:
    """The source file of ``lexray.a.b`` under ``root`` (the folder holding the ``lexray`` package)."""
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _lexray_imports(tree: ast.Module, root: Path) -> set[str]:
    """The ``lexray`` modules a module imports anywhere (function-level imports included)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("lexray"):
            found.add(str(node.module))
            # `from lexray.variants import _rewrites` names a module, not an attribute
            found.update(
                f"{node.module}.{a.name}" for a in node.names if _module_file(root, f"{node.module}.{a.name}")
            )
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("lexray"))
    return found


def _without_docstrings(tree: ast.Module) -> ast.Module:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
    return tree


def code_version(entries: Sequence[str], root: Path, prefix: str) -> str:
    """``<prefix>-<sha8>`` of the code of ``entries`` and every lexray module they import, transitively.

    The hash is of each module's syntax tree without docstrings, so comments, docstrings and layout do not
    count, while any change to what the code does (a rule, a lexicon entry, the labeler) does.
    """
    trees: dict[str, ast.Module] = {}
    todo = list(entries)
    while todo:
        module = todo.pop()
        path = _module_file(root, module)
        if module in trees or path is None:
            continue
        trees[module] = ast.parse(path.read_bytes(), filename=str(path))
        todo.extend(_lexray_imports(trees[module], root))
    digest = hashlib.sha256()
    for module in sorted(trees):  # a fixed order: set order varies between Python runs
        digest.update(module.encode() + b"\0" + ast.dump(_without_docstrings(trees[module])).encode() + b"\0")
    return f"{prefix}-{digest.hexdigest()[:8]}"
