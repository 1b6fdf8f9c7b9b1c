"""``lexray clip``: train the dual encoder."""

from __future__ import annotations

from pathlib import Path

import typer

from lexray.config import ConfigError

app = typer.Typer(help="Dual-tower image-report model (CLIP): training.", no_args_is_help=True)


@app.command("train")
def train_cmd(
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML recipe (ClipTrainConfig fields)."),
    overrides: list[str] = typer.Option(
        None, "--set", help="Override a.b=c (repeatable), e.g. max_steps=50."
    ),
    stop_at_step: int | None = typer.Option(
        None, help="Stop after this step with a resumable checkpoint (time-boxing); run again to resume."
    ),
) -> None:
    """Train a dual encoder; the run directory gets config.yaml, metrics.jsonl, tb/, checkpoints, best/, final/."""
    from lexray.clip.train import load_train_config, train

    try:
        cfg = load_train_config(config, overrides or [])
        run_dir = train(cfg, stop_at_step=stop_at_step)
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"run directory: {run_dir}")


@app.command("cache-texts")
def cache_texts_cmd(
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML recipe (ClipTrainConfig fields)."),
    overrides: list[str] = typer.Option(None, "--set", help="Override a.b=c (repeatable)."),
    also: list[str] = typer.Option(
        None, "--also", help="Also cache MANIFEST:SPLIT (repeatable), e.g. the test split."
    ),
    shard: int = typer.Option(0, min=0, help="This process's shard (0-based)."),
    num_shards: int = typer.Option(1, min=1, help="Processes filling the cache side by side."),
) -> None:
    """Fill the frozen text tower's feature cache before training (each shard in its own process)."""
    from lexray.clip.data import SourceConfig
    from lexray.clip.train import fill_text_cache, load_train_config

    if shard >= num_shards:
        typer.secho(f"error: --shard {shard} must be below --num-shards {num_shards}", fg="red", err=True)
        raise typer.Exit(2)
    extra = []
    for spec in also or []:
        manifest, sep, split = spec.rpartition(":")
        if not sep or not manifest:
            typer.secho(f"error: --also {spec!r} must be MANIFEST:SPLIT", fg="red", err=True)
            raise typer.Exit(2)
        extra.append(SourceConfig(manifest=manifest, split=split))
    try:
        n = fill_text_cache(load_train_config(config, overrides or []), extra, shard, num_shards)
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"cached features of {n} texts (shard {shard + 1}/{num_shards})")
