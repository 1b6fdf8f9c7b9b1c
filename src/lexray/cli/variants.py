"""``lexray variants``: make clinically equivalent and single-error report variants; summarise a store."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from lexray.cli._args import check_output_dir
from lexray.config import ConfigError, load_config, save_config

app = typer.Typer(help="Report variants (rules or LLM) checked by the finding labeler.", no_args_is_help=True)
log = logging.getLogger(__name__)


def _csv(values: list[str] | None) -> list[str]:
    """Accept both ``--styles a,b`` and ``--styles a --styles b``."""
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()]


@app.command("make")
def make(
    manifest: Path = typer.Option(..., "--manifest", "-m", help="Study manifest (Parquet) to read."),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Store directory (variants.jsonl, failures.jsonl, config.yaml)."
    ),
    styles: list[str] = typer.Option(
        None, "--styles", help="Styles, comma-separated or repeated (default: config)."
    ),
    generator: str = typer.Option(
        None, "--generator", "-g", help="rules | hf:MODEL | openai:URL (default: config)."
    ),
    error_types: list[str] = typer.Option(None, "--error-types", help="Error types for the 'error' style."),
    seed: int = typer.Option(None, help="Seed of rule styles and error edits."),
    limit: int = typer.Option(None, help="Use only the first N selected studies."),
    config: Path = typer.Option(None, "--config", "-c", help="YAML with VariantsConfig fields."),
    set_: list[str] = typer.Option(
        None, "--set", help="Override a config key, e.g. --set llm.concurrency=16."
    ),
) -> None:
    """Generate variants of a manifest's studies into a resumable store (re-run to resume)."""
    from lexray.data.manifest import read_manifest
    from lexray.variants.backends import BackendError
    from lexray.variants.config import VariantsConfig
    from lexray.variants.pipeline import VariantsError, generate_variants, select_studies
    from lexray.variants.prompts import PromptError
    from lexray.variants.store import VariantStore

    check_output_dir(out)
    overrides = list(set_ or [])
    if styles:
        overrides.append(f"styles={json.dumps(_csv(styles))}")
    if error_types:
        overrides.append(f"error_types={json.dumps(_csv(error_types))}")
    for key, value in (("generator", generator), ("seed", seed), ("limit", limit)):
        if value is not None:
            overrides.append(f"{key}={json.dumps(value)}")
    try:
        cfg = load_config(VariantsConfig, config, overrides)
        studies = select_studies(read_manifest(manifest), cfg)
        save_config(cfg, out)
        store = VariantStore(out)
        summary = generate_variants(studies, cfg, store)
    except (ConfigError, VariantsError, BackendError, PromptError, OSError, ValueError) as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from exc
    typer.echo(
        f"{summary.studies} studies: wrote {summary.written} variants ({summary.accepted} accepted, "
        f"{summary.not_applicable} not applicable), {summary.skipped} already done, "
        f"{summary.failures} LLM failures -> {store.path}"
    )
    for reason, n in summary.failure_reasons.most_common():
        typer.echo(f"  failure: {reason}: {n}")


@app.command("stats")
def stats(
    store_path: Path = typer.Argument(..., help="Store directory or variants.jsonl."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON rows instead of a table."),
) -> None:
    """Counts and rejection rates per generator, style and error type."""
    from lexray.variants.pipeline import variant_stats
    from lexray.variants.store import VariantStore

    store = VariantStore(store_path)
    if not store.path.is_file():
        typer.secho(
            f"error: no variant store at {store.path}; run `lexray variants make` first", fg="red", err=True
        )
        raise typer.Exit(2)
    rows = variant_stats(store)
    if as_json:
        typer.echo(
            json.dumps(
                [{**dataclasses.asdict(r), "rejection_rate": round(r.rejection_rate, 4)} for r in rows],
                indent=1,
            )
        )
        return
    table = Table(
        "generator",
        "style",
        "error",
        "prompt",
        "total",
        "accepted",
        "rejected",
        "n/a",
        "failed",
        "reject %",
        "top reason",
    )
    for r in rows:
        table.add_row(
            r.generator,
            r.style,
            r.error_type,
            r.prompt_version,
            str(r.total),
            str(r.accepted),
            str(r.rejected),
            str(r.not_applicable),
            str(r.failures),
            f"{100 * r.rejection_rate:.1f}",
            r.top_reason,
        )
    Console(width=200).print(table)
