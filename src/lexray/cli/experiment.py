"""``lexray experiment``: grids of runs that test a claim, e.g. ``style-mix``."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(no_args_is_help=True)


@app.callback()
def _group() -> None:
    """Experiments that train and evaluate grids of models (style-mix)."""


@app.command("style-mix")
def style_mix(
    config: Path = typer.Option(..., "--config", "-c", help="YAML with StyleMixConfig fields."),
    overrides: list[str] = typer.Option([], "--set", help="Override a field, e.g. seeds=[0,1] (repeatable)."),
) -> None:
    """Add hospital-style reports to CLIP training, per text tower and seed, and tabulate the change."""
    from lexray.config import load_config
    from lexray.experiments.style_mix import StyleMixConfig, run_style_mix

    if not config.is_file():
        raise typer.BadParameter(f"{config} does not exist", param_hint="--config")
    table = run_style_mix(load_config(StyleMixConfig, config, overrides))
    typer.echo(table.read_text(encoding="utf-8"))
    typer.echo(f"table: {table}; plot: {table.parent / 'degradation.png'}; cells: {table.parent / 'cells'}")
