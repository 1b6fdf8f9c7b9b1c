"""``lexray index``: build an index from a model run and a manifest, append to it, describe it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from lexray.cli._args import CommandError, check_index_dir
from lexray.config import load_config
from lexray.errors import LexrayError

if TYPE_CHECKING:
    from lexray.index import BuildReport

# The index stack (FAISS, pandas, torch) is imported inside each command: `index --help` stays fast.

app = typer.Typer(
    help="Build and extend retrieval indexes (vectors + FAISS + metadata).", no_args_is_help=True
)

_ERRORS = (LexrayError, ValueError)  # every config, manifest, model and index error


def _print_report(report: BuildReport, verb: str) -> None:
    table = Table(
        "side", "vectors", f"{verb}", "recall@10 vs exact", title=f"index {report.path} ({report.version})"
    )
    for side, n in report.vectors.items():
        recall = report.recall_at_10.get(side)
        table.add_row(
            side, str(n), str(report.added.get(side, 0)), "exact" if recall is None else f"{recall:.3f}"
        )
    console = Console()
    console.print(table)
    console.print(
        f"studies: {report.studies}; skipped records: {len(report.rejects)}; reused chunks: {report.resumed_chunks}"
    )
    for r in report.rejects[:10]:
        console.print(f"  skipped study {r.record or '(no id)'}: {r.reason}: {r.detail}", markup=False)
    if len(report.rejects) > 10:
        console.print(f"  ... and {len(report.rejects) - 10} more in rejects.jsonl")


@app.command("build")
def build(
    model: Path = typer.Option(..., "--model", help="Model run directory (a lexray.clip DualEncoder run)."),
    manifest: Path = typer.Option(..., "--manifest", help="Study manifest (Parquet) to index."),
    out: Path = typer.Option(..., "--out", help="Index directory; an existing index gets a new version."),
    config: Path | None = typer.Option(None, "--config", help="YAML with IndexConfig fields."),
    overrides: list[str] = typer.Option([], "--set", help="Override a config field, e.g. faiss.kind=hnsw."),
    progress: bool = typer.Option(True, help="Show progress bars."),
) -> None:
    """Embed a manifest's images and reports and write an index (resumes an interrupted build).

    Under ``accelerate launch`` every process embeds a share of the chunks; the main one alone writes.
    """
    from lexray.data.manifest import read_manifest
    from lexray.index import IndexConfig, build_index, load_model, make_ref
    from lexray.training.sharded import shard_across_launch

    check_index_dir(out)
    try:
        cfg = load_config(IndexConfig, config, overrides)
        studies = read_manifest(manifest)
        ref = make_ref(model, cfg.model_class)
        embedder, writes = shard_across_launch(load_model(ref))
        report = build_index(
            studies, embedder, ref, out, cfg, image_root=manifest.parent, progress=progress and writes
        )
    except _ERRORS as exc:
        raise CommandError(str(exc)) from exc
    if writes:
        _print_report(report, "embedded")


@app.command("add")
def add(
    index: Path = typer.Option(..., "--index", help="Existing index directory."),
    manifest: Path = typer.Option(..., "--manifest", help="Manifest with the studies to append."),
    progress: bool = typer.Option(True, help="Show progress bars."),
) -> None:
    """Append a manifest's new studies with the index's own model (studies already present are skipped).

    Sharded under ``accelerate launch`` as ``index build`` is.
    """
    from lexray.data.manifest import read_manifest
    from lexray.index import RetrievalIndex, add_to_index, load_model
    from lexray.training.sharded import shard_across_launch

    try:
        current = RetrievalIndex.load(index)
        studies = read_manifest(manifest)
        embedder, writes = shard_across_launch(load_model(current.model_ref))
        report = add_to_index(
            index, studies, embedder, image_root=manifest.parent, progress=progress and writes
        )
    except _ERRORS as exc:
        raise CommandError(str(exc)) from exc
    if writes:
        _print_report(report, "added")


@app.command("info")
def info(index: Path = typer.Option(..., "--index", help="Index directory.")) -> None:
    """Describe an index: version, model, counts, FAISS kind and its measured recall."""
    from lexray.index import RetrievalIndex

    try:
        idx = RetrievalIndex.load(index)
    except _ERRORS as exc:
        raise CommandError(str(exc)) from exc
    ref = idx.model_ref
    table = Table("field", "value", title=f"index {index}")
    table.add_row("version", idx.version)
    table.add_row("created", str(idx.info.get("created", "")))
    table.add_row("model", f"{ref.path} ({ref.model_class}, fingerprint {ref.fingerprint})")
    table.add_row("embedding width", str(idx.embed_dim))
    table.add_row("studies / images", f"{len(idx.studies)} / {len(idx.images)}")
    for side in idx.modalities:
        f = idx.info["faiss"][side]
        recall = f.get("recall_at_10_vs_exact")
        table.add_row(
            f"{side} vectors",
            f"{len(idx.meta(side))} ({f['kind']}, recall@10 vs exact: {'exact' if recall is None else f'{recall:.3f}'})",
        )
    table.add_row("skipped records", str(idx.info.get("rejects", 0)))
    Console().print(table)
