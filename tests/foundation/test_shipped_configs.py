"""Every recipe shipped under configs/ loads into its dataclass (a renamed field breaks a test, not a user)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lexray.clip.train import ClipTrainConfig
from lexray.config import load_config
from lexray.evaluate.runner import EvaluateConfig
from lexray.experiments.style_mix import StyleMixConfig
from lexray.text.config import TextTrainConfig

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
KINDS = {
    "text": TextTrainConfig,
    "clip": ClipTrainConfig,
    "demo/text.yaml": TextTrainConfig,
    "demo/clip.yaml": ClipTrainConfig,
    "demo/evaluate.yaml": EvaluateConfig,
    "experiments": StyleMixConfig,
    "experiments/style-mix-evaluate.yaml": EvaluateConfig,
}
# Accelerate's own launch configs: parsed by Accelerate in tests/distributed/test_engines.py.
NOT_LEXRAY = ("accelerate",)


def _cases() -> list[tuple[Path, type]]:
    out = []
    for path in sorted(CONFIGS.rglob("*.yaml")):
        rel = path.relative_to(CONFIGS).as_posix()
        if rel.split("/")[0] in NOT_LEXRAY:
            continue
        out.append((path, KINDS.get(rel) or KINDS[rel.split("/")[0]]))
    return out


@pytest.mark.parametrize(("path", "kind"), _cases(), ids=lambda v: v.name if isinstance(v, Path) else "")
def test_shipped_config_loads(path: Path, kind: type) -> None:
    assert load_config(kind, path) is not None
