"""``lexray text``: train a report encoder (MNTP -> contrastive), score it on a text bench, export it."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from lexray.cli._args import CommandError, check_output_dir, check_output_file, load_text_bench
from lexray.config import ConfigError, load_config

app = typer.Typer(help="LLM report encoders: training, text benchmark, export.", no_args_is_help=True)
log = logging.getLogger(__name__)


@app.command("train")
def train(
    config: Path = typer.Option(None, "--config", "-c", help="YAML recipe with TextTrainConfig fields."),
    set_: list[str] = typer.Option(None, "--set", help="Override a key, e.g. --set contrastive.steps=50."),
    stages: str = typer.Option(
        None, help="Stages to run, comma-separated: mntp, contrastive (default: those the config enables)."
    ),
    out: Path = typer.Option(None, "--out", "-o", help="Run directory (default: the config's output_dir)."),
) -> None:
    """Train a text encoder; the run directory is then a loadable encoder (``--model DIR``)."""
    from lexray.text.config import TextTrainConfig
    from lexray.text.train import train as run_training

    overrides = list(set_ or [])
    if stages is not None:
        chosen = {s.strip() for s in stages.split(",") if s.strip()}
        unknown = chosen - {"mntp", "contrastive"}
        if unknown or not chosen:
            raise CommandError(f"unknown stage(s) {sorted(unknown)}; use mntp and/or contrastive")
        overrides += [f"mntp.enabled={'mntp' in chosen}", f"contrastive.enabled={'contrastive' in chosen}"]
    if out is not None:
        overrides.append(f"output_dir={json.dumps(str(out))}")
    try:
        cfg = load_config(TextTrainConfig, config, overrides)
        run_dir = run_training(cfg)
    except (ConfigError, ValueError, OSError) as exc:
        raise CommandError(str(exc)) from exc
    from accelerate import PartialState

    if PartialState().is_main_process:  # under `accelerate launch` every process gets here; one reports
        typer.echo(f"encoder saved to {run_dir}")


@app.command("evaluate")
def evaluate(
    model: str = typer.Option(
        ..., "--model", "-m", help="Encoder dir, alias (minilm-l6, smollm2-135m), hub id."
    ),
    bench: Path = typer.Option(..., "--bench", "-b", help="textbench JSONL file (evaluation only)."),
    batch_size: int = typer.Option(16, min=1, help="Texts per forward pass."),
    pooling: str = typer.Option(None, help="Pooling for a base model: mean | last | latent (default mean)."),
    causal: bool = typer.Option(False, "--causal", help="Keep a decoder's causal mask (base models only)."),
    dtype: str = typer.Option(
        None, help="Weights dtype: float32 | bfloat16 | float16 (default: the encoder's own)."
    ),
    out: Path = typer.Option(None, "--out", "-o", help="Write the metrics as JSON here."),
) -> None:
    """Score an encoder on a text benchmark (style retrieval R@k, error discrimination)."""
    if out is not None:
        check_output_file(out, example="metrics.json", inputs=[bench])
    from lexray.text import TextEncoder, is_encoder_dir
    from lexray.text.bench import evaluate_bench

    overrides: dict[str, object] = {}
    if not is_encoder_dir(model):
        overrides["bidirectional"] = not causal
        if pooling:
            overrides["pooling"] = pooling
    elif pooling or causal:
        raise CommandError(f"{model} is a trained encoder: its pooling and attention are fixed")
    if dtype:
        overrides["dtype"] = dtype
    try:
        items = load_text_bench(bench)
        encoder = TextEncoder.from_pretrained(model, **overrides)
    except (ValueError, OSError) as exc:
        raise CommandError(str(exc)) from exc
    metrics = evaluate_bench(
        lambda texts: encoder.encode(texts, batch_size=batch_size, show_progress=True), items
    )
    table = Table(title=f"{bench.name}: {model} ({len(items)} reports)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        table.add_row(key, f"{value:.0f}" if key.startswith("errpair_n/") else f"{value:.3f}")  # n = pairs
    Console().print(table)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        record = {"model": model, "bench": str(bench), "n": len(items), "metrics": metrics}
        out.write_text(json.dumps(record, indent=1))


@app.command("export-st")
def export_st(
    model: Path = typer.Argument(..., help="A trained lexray text-encoder directory."),
    out: Path = typer.Argument(
        ..., help="Output directory loadable by sentence_transformers.SentenceTransformer."
    ),
) -> None:
    """Write a sentence-transformers directory (mean or last-token pooling) of a lexray encoder."""
    from lexray.text.export import export_sentence_transformers

    check_output_dir(out, option="OUT")

    try:
        path = export_sentence_transformers(model, out)
    except (ValueError, OSError) as exc:
        raise CommandError(str(exc)) from exc
    typer.echo(f"sentence-transformers model written to {path}")


@app.command("bench-skeleton")
def bench_skeleton(
    out: Path = typer.Option(
        ..., "--out", "-o", help="JSONL to write (keep licensed report text out of git)."
    ),
    openi: Path = typer.Option(None, help="Open-i report archive or folder."),
    split_file: Path = typer.Option(None, help="Split JSON for Open-i (e.g. r2gen_split.json)."),
    manifest: Path = typer.Option(None, help="A lexray manifest.parquet instead of Open-i."),
    split: str = typer.Option("test", help="Split the held-out reports come from."),
    n: int = typer.Option(100, min=1, help="Reports to draw."),
    seed: int = typer.Option(0, help="Seed of the draw."),
) -> None:
    """Draw the source reports of a held-out text bench (abnormal, de-duplicated) for hand-written variants."""
    from lexray.data.manifest import read_studies
    from lexray.text.bench import select_bench_studies, write_bench_skeleton

    check_output_file(out, example="textbench.jsonl", inputs=[p for p in (manifest, openi, split_file) if p])
    try:
        studies = read_studies(manifest, openi, split_file)
        chosen = select_bench_studies([s for s in studies if s.split == split], n=n, seed=seed)
        path = write_bench_skeleton(chosen, out)
    except (ValueError, OSError) as exc:
        raise CommandError(str(exc)) from exc
    typer.echo(
        f"{len(chosen)} {split} reports written to {path}; add the variants as the bench README describes"
    )
