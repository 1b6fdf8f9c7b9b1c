"""Imports run down the layer order only: no module of a stage imports a stage above it or a peer.

Every import is checked, including ones inside functions and under ``TYPE_CHECKING``: a lazy import
still runs up the layer order. ``lexray.data`` is the ground floor of the pipeline and gets a stricter
rule of its own.
"""

from __future__ import annotations

import ast
from pathlib import Path

import lexray
import lexray.data

# The layer order of docs/ARCHITECTURE.md, lowest first. A stage may import itself and the stages of
# lower layers; the stages of one layer are peers and import neither each other nor anything above.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("lexray", "lexray.errors"),
    ("lexray.config",),
    ("lexray.models", "lexray.embedding", "lexray.ranking", "lexray.training", "lexray.testing"),
    ("lexray.data",),
    ("lexray.findings",),
    ("lexray.phantoms", "lexray.variants"),
    ("lexray.text", "lexray.vision"),
    ("lexray.clip",),
    ("lexray.evaluate", "lexray.index"),
    ("lexray.serve", "lexray.pipelines"),
    ("lexray.experiments",),
    ("lexray.cli",),
)
LAYER = {stage: level for level, stages in enumerate(LAYERS) for stage in stages}

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


def _modules(root: Path) -> list[tuple[Path, str, str]]:
    """(file, its stage, the package its relative imports start from) of every module under ``root``."""
    src = Path(lexray.__file__).parent.parent
    out = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(src).with_suffix("")  # lexray/data/sources/openi, lexray/models
        module = ".".join(part for part in rel.parts if part != "__init__")
        out.append((path.relative_to(src.parent), _stage(module), ".".join(rel.parts[:-1])))
    return out


def test_data_imports_no_higher_stage() -> None:
    modules = _modules(Path(lexray.data.__file__).parent)
    assert len(modules) > 5
    upward = [
        f"{path}:{line} imports {name}"
        for path, _, package in modules
        for line, name in _lexray_imports(path, package)
        if _stage(name) not in ALLOWED
    ]
    assert not upward, "the data stage imports stages above it:\n" + "\n".join(upward)


def test_no_stage_imports_a_higher_stage_or_a_peer() -> None:
    modules = _modules(Path(lexray.__file__).parent)
    unplaced = sorted({stage for _, stage, _ in modules} - set(LAYER))
    assert not unplaced, f"place these stages in LAYERS (and docs/ARCHITECTURE.md): {unplaced}"
    crossings = [
        f"{path}:{line} ({stage}, layer {LAYER[stage]}) imports {name} (layer {LAYER.get(_stage(name))})"
        for path, stage, package in modules
        for line, name in _lexray_imports(path, package)
        if _stage(name) != stage and LAYER.get(_stage(name), len(LAYERS)) >= LAYER[stage]
    ]
    assert not crossings, "imports against the layer order:\n" + "\n".join(crossings)


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
