"""``lexray evaluate``: retrieval metrics, report generation, robustness, zero-shot; compare runs; 5x200; text bench.

``lexray evaluate --model RUN --manifest M --out DIR`` is the same as ``lexray evaluate run ...``.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

import typer
from rich.console import Console
from rich.markdown import Markdown
from typer.core import TyperGroup

from lexray.cli._args import CommandError, check_output_dir, check_output_file, load_text_bench, not_utf8
from lexray.config import load_config

log = logging.getLogger(__name__)

app = typer.Typer(
    help=(
        "Evaluate a model run: exact bidirectional retrieval (study/image level, exact/dedup), retrieval as "
        "report generation, style robustness, zero-shot 5x200. `lexray evaluate --model RUN ...` = `run`."
    ),
    invoke_without_command=True,
)

_MODEL = typer.Option(None, "--model", help="CLIP run directory (lexray.clip DualEncoder).")
_MANIFEST = typer.Option(None, "--manifest", help="Study manifest (Parquet) holding the evaluated split.")
_SPLIT = typer.Option(None, "--split", help="Split to evaluate (default from config: test).")
_CORPUS = typer.Option(None, "--corpus", help="Manifest to retrieve reports from (default: --manifest).")
_OUT = typer.Option(None, "--out", help="Output directory for metrics.json, metrics.md and plots.")
_CONFIG = typer.Option(None, "--config", help="YAML with EvaluateConfig fields.")
_SET = typer.Option([], "--set", help="Override a config field, e.g. retrieval.ties=optimistic (repeatable).")
_IMAGE_ROOT = typer.Option(
    None, "--image-root", help="Base of relative image paths (default: the manifest's folder)."
)


def _load_dual_encoder(run: Path):  # noqa: ANN202 - returns lexray.clip.DualEncoder (imported lazily)
    from lexray.clip import DualEncoder

    if not run.exists():
        raise FileNotFoundError(f"model run {run} does not exist")
    return DualEncoder.from_pretrained(run)


def _run(
    model: Path | None,
    manifest: Path | None,
    split: str | None,
    corpus: Path | None,
    out: Path | None,
    config: Path | None,
    overrides: list[str],
    image_root: Path | None,
    progress: bool,
) -> None:
    missing = [n for n, v in (("--model", model), ("--manifest", manifest), ("--out", out)) if v is None]
    if missing:
        raise CommandError(
            f"missing {', '.join(missing)}: e.g. lexray evaluate --model RUN --manifest M --out DIR"
        )
    check_output_dir(Path(out))
    # Imported here: the evaluation stack (torch, pandas, the metrics) costs seconds at `--help`.
    from lexray.data.manifest import read_manifest
    from lexray.evaluate.runner import EvaluateConfig, run_evaluation
    from lexray.training.sharded import shard_across_launch

    try:
        extra = [f"split={split}"] if split else []
        cfg = load_config(EvaluateConfig, config, [*overrides, *extra])
        studies = read_manifest(manifest)
        corpus_studies = read_manifest(corpus) if corpus else None
        # Under `accelerate launch`, each process embeds a share; the main process alone writes `out`.
        dual, is_main = shard_across_launch(_load_dual_encoder(model))
        with tempfile.TemporaryDirectory(prefix="lexray-eval-") as scratch:
            metrics = run_evaluation(
                dual,
                studies,
                out if is_main else scratch,
                cfg,
                corpus=corpus_studies,
                image_root=image_root or Path(manifest).parent,
                progress=progress and is_main,
                model_name=str(model),
            )
    except (FileNotFoundError, ValueError) as exc:  # ConfigError and ManifestError are ValueErrors
        raise CommandError(str(exc)) from exc
    if not is_main:
        return
    console = Console()
    console.print(Markdown((Path(out) / "metrics.md").read_text(encoding="utf-8")))
    console.print(f"wrote {out}/metrics.json, metrics.md and plots in {metrics['seconds']} s")


def run(
    ctx: typer.Context,
    model: Path | None = _MODEL,
    manifest: Path | None = _MANIFEST,
    split: str | None = _SPLIT,
    corpus: Path | None = _CORPUS,
    out: Path | None = _OUT,
    config: Path | None = _CONFIG,
    overrides: list[str] = _SET,
    image_root: Path | None = _IMAGE_ROOT,
    progress: bool = typer.Option(True, help="Show progress bars."),
) -> None:
    """Evaluate a CLIP run on a manifest split; writes metrics.json, metrics.md, PNG plots and config.yaml."""
    if ctx.invoked_subcommand is not None:  # the group's turn before another sub-command
        return
    # Bare `lexray evaluate` asks for help; bare `lexray evaluate run` is told what is missing.
    if isinstance(ctx.command, TyperGroup) and model is None and manifest is None and out is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(0)
    _run(model, manifest, split, corpus, out, config, overrides, image_root, progress)


# One set of options: `lexray evaluate --model RUN ...` (the group without a sub-command) is `run`.
app.callback()(run)
app.command("run")(run)


@app.command("compare")
def compare(
    runs: list[Path] = typer.Argument(..., help="Output directories of `lexray evaluate run`."),
    out: Path | None = typer.Option(None, "--out", help="Also write the Markdown table to this file."),
) -> None:
    """Put evaluation runs side by side (one column per run)."""
    from lexray.evaluate.report import compare_runs

    if out:
        check_output_file(out, example="compare.md")
    try:
        table = compare_runs(runs)
    except (FileNotFoundError, ValueError, json.JSONDecodeError) as exc:
        raise CommandError(str(exc)) from exc
    if out:
        out.write_text(table, encoding="utf-8")
    Console().print(Markdown(table))


@app.command("build-5x200")
def build_5x200(
    labels: Path = typer.Option(
        ..., "--labels", help="CheXpert train/valid.csv or mimic-cxr-2.0.0-chexpert.csv."
    ),
    out: Path = typer.Option(..., "--out", help="CSV to write (id columns + label)."),
    kind: str = typer.Option("chexpert", "--kind", help="chexpert or mimic."),
    metadata: Path | None = typer.Option(None, "--metadata", help="MIMIC: mimic-cxr-2.0.0-metadata.csv."),
    split_csv: Path | None = typer.Option(None, "--split-csv", help="MIMIC: mimic-cxr-2.0.0-split.csv."),
    split: str | None = typer.Option(
        None, "--split", help="MIMIC: restrict to this split (train/validate/test)."
    ),
    n_per_class: int = typer.Option(200, "--n-per-class", min=1, help="Images per class."),
    seed: int = typer.Option(0, "--seed", help="Seed of the deterministic draw."),
) -> None:
    """Build a CheXpert 5x200 or MIMIC 5x200 zero-shot set from a label file (deterministic for a seed)."""
    from lexray.evaluate.fivex200 import build_chexpert_5x200, build_mimic_5x200

    check_output_file(out, example="5x200.csv", inputs=[p for p in (labels, metadata, split_csv) if p])
    for given in (labels, metadata, split_csv):
        if given is not None and not given.is_file():
            raise CommandError(f"{given} does not exist or is not a file; give the CSV")
    try:
        if kind == "chexpert":
            df = build_chexpert_5x200(labels, n_per_class=n_per_class, seed=seed)
        elif kind == "mimic":
            df = build_mimic_5x200(labels, metadata, split_csv, split, n_per_class=n_per_class, seed=seed)
        else:
            raise ValueError(f"--kind must be chexpert or mimic, got {kind!r}")
    except UnicodeDecodeError as exc:
        raise CommandError(not_utf8(labels, exc, "CSV")) from exc
    except (OSError, ValueError) as exc:
        raise CommandError(str(exc)) from exc
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out, index=False)
    typer.echo(f"wrote {len(df)} rows ({df['label'].nunique()} classes) to {out}")


@app.command("text")
def text_bench(
    model: Path = typer.Option(
        ..., "--model", help="A CLIP run (its text tower) or a text-encoder directory."
    ),
    bench: Path = typer.Option(..., "--bench", help="A textbench-*.jsonl file."),
    out: Path | None = typer.Option(None, "--out", help="Write the metrics as JSON here."),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Embedding batch size."),
) -> None:
    """The report-encoder text benchmark (lexray.text.bench): style-robust retrieval, error discrimination."""
    try:
        from lexray.text.bench import evaluate_bench
    except ImportError as exc:
        raise CommandError(f"the text benchmark module is not available: {exc}") from exc
    if out:
        check_output_file(out, example="metrics.json", inputs=[bench])
    try:
        items = load_text_bench(bench)
        metrics = evaluate_bench(_text_embedder(model, batch_size), items)
    except (FileNotFoundError, ValueError) as exc:
        raise CommandError(str(exc)) from exc
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    lines = ["| metric | value |", "|---|---|", *[f"| {k} | {v:.4f} |" for k, v in metrics.items()]]
    Console().print(Markdown("\n".join(lines)))


def _text_embedder(model: Path, batch_size: int):  # noqa: ANN202 - a texts -> (n, D) callable
    """A CLIP run's text tower when ``model`` is a CLIP run, else a TextEncoder directory."""
    try:
        dual = _load_dual_encoder(model)
    except (FileNotFoundError, ValueError) as first:
        from lexray.text import TextEncoder

        try:
            enc = TextEncoder.from_pretrained(str(model))
        except (OSError, ValueError) as exc:
            raise ValueError(
                f"{model} is neither a CLIP run ({first}) nor a text-encoder directory ({exc})"
            ) from exc
        return lambda texts: enc.encode(texts, batch_size=batch_size)
    return lambda texts: dual.embed_texts(texts, batch_size)
