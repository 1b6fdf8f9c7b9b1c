from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest
import yaml

from lexray.config import ConfigError, describe, load_config, parse_override, save_config


@dataclass(frozen=True)
class Optim:
    lr: float = 1e-4  # learning rate
    betas: tuple[float, float] = (0.9, 0.999)  # Adam betas


@dataclass(frozen=True)
class Run:
    name: str = "run"  # run name
    epochs: int = 1  # passes over the data
    pooling: Literal["mean", "eos"] = "mean"  # pooling mode
    modules: tuple[str, ...] = ("q_proj",)  # LoRA targets
    out: Path | None = None  # output directory
    optim: Optim = field(default_factory=Optim)  # optimiser settings


def test_defaults_and_yaml(tmp_path: Path) -> None:
    f = tmp_path / "r.yaml"
    f.write_text("name: a\nepochs: 3\noptim:\n  lr: 0.5\nmodules: [q_proj, v_proj]\n")
    cfg = load_config(Run, f)
    assert cfg == Run(name="a", epochs=3, modules=("q_proj", "v_proj"), optim=Optim(lr=0.5))


def test_overrides_are_typed(tmp_path: Path) -> None:
    cfg = load_config(
        Run, overrides=["optim.lr=2e-5", "epochs=4", "pooling=eos", "out=/x", "optim.betas=[0.8, 0.9]"]
    )
    assert cfg.optim.lr == pytest.approx(2e-5) and isinstance(cfg.optim.lr, float)
    assert cfg.epochs == 4 and cfg.pooling == "eos" and cfg.out == Path("/x")
    assert cfg.optim.betas == (0.8, 0.9)


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("epoch=2", "unknown key epoch in Run; allowed keys: name, epochs"),
        ("optim.lrr=1", "unknown key optim.lrr in Optim; allowed keys: lr, betas"),
        ("epochs=1.0", "epochs: expected an integer, got 1.0"),
        ("pooling=cls", "pooling: expected one of 'mean' | 'eos'"),
        ("optim.betas=[1]", "optim.betas: expected 2 items"),
        ("name.x=1", "name.x: name is a str, not a section"),
        ("justakey", "must look like key.path=value"),
    ],
)
def test_bad_overrides_name_the_key(override: str, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(Run, overrides=[override])
    assert needle in str(err.value)


def test_unknown_key_in_yaml(tmp_path: Path) -> None:
    f = tmp_path / "r.yaml"
    f.write_text("optim:\n  momentum: 0.9\n")
    with pytest.raises(ConfigError, match="unknown key optim.momentum in Optim; allowed keys: lr, betas"):
        load_config(Run, f)


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(Run, tmp_path / "nope.yaml")


def test_save_roundtrip(tmp_path: Path) -> None:
    cfg = load_config(Run, overrides=["optim.lr=0.25", "out=/tmp/o"])
    path = save_config(cfg, tmp_path / "run")
    assert yaml.safe_load(path.read_text())["optim"]["lr"] == 0.25
    assert load_config(Run, path) == cfg


def test_parse_override_values() -> None:
    assert parse_override("a.b=3") == (["a", "b"], 3)
    assert parse_override("a=hello world") == (["a"], "hello world")


def test_describe_lists_fields() -> None:
    rows = describe(Optim)
    assert rows[0] == ("lr", "float", "0.0001")
