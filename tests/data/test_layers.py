"""The data stage is the ground floor: no module under ``lexray/data`` imports a stage above it.

Every import is checked, including ones inside functions and under ``TYPE_CHECKING``: a lazy import
still runs up the layer order.
"""

from __future__ import annotations

import ast
from pathlib import Path

import lexray.data

# What the ground floor may import: itself, the package root (version), its configuration and errors.
ALLOWED = {"lexray", "lexray.data", "lexray.config", "lexray.errors"}


def _lexray_imports(path: Path, package: str) -> list[tuple[int, str]]:
    """(line, absolute module name) of every ``lexray`` import in a module, wherever it sits."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the module's package
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                found.append((node.lineno, f"{base}.{node.module}" if node.module else base))
            elif node.module:
                found.append((node.lineno, node.module))
    return [(line, name) for line, name in found if name == "lexray" or name.startswith("lexray.")]


def _stage(module: str) -> str:
    """``lexray.data.sources.openi`` -> ``lexray.data``; ``lexray`` -> ``lexray``."""
    return ".".join(module.split(".")[:2])


def test_data_imports_no_higher_stage() -> None:
    root = Path(lexray.data.__file__).parent
    modules = sorted(root.rglob("*.py"))
    assert len(modules) > 5
    upward = []
    for path in modules:
        rel = path.relative_to(root.parent).with_suffix("")  # data/sources/openi, data/__init__
        package = "lexray." + ".".join(rel.parts[:-1])  # the package relative imports start from
        upward += [
            f"{path.relative_to(root.parent.parent)}:{line} imports {name}"
            for line, name in _lexray_imports(path, package)
            if _stage(name) not in ALLOWED
        ]
    assert not upward, "the data stage imports stages above it:\n" + "\n".join(upward)


def test_the_walker_sees_function_level_and_relative_imports(tmp_path: Path) -> None:
    src = tmp_path / "m.py"
    src.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from lexray.findings.labels import ReportLabels\n"
        "def f():\n    import lexray.clip.model\n    from ..variants import rules\n    from . import study\n"
    )
    names = [name for _, name in _lexray_imports(src, "lexray.data")]
    assert names == ["lexray.findings.labels", "lexray.clip.model", "lexray.variants", "lexray.data"]
    assert [_stage(n) for n in names] == ["lexray.findings", "lexray.clip", "lexray.variants", "lexray.data"]
