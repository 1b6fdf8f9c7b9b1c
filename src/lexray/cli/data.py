"""``lexray data``: download Open-i, prepare manifests from datasets, and summarise a manifest."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from lexray.cli._args import CommandError
from lexray.data.download import OPENI_ARTIFACTS, DownloadError, download, extract_tar
from lexray.errors import LexrayError

# lexray.data.prepare (pandas and every source reader) and lexray.data.stats are imported inside their
# commands, so `lexray data --help` starts without them.

app = typer.Typer(help="Datasets -> study manifest (download, prepare, stats).", no_args_is_help=True)
console = Console()

_DATASETS = {"openi": OPENI_ARTIFACTS}


@app.command("download")
def download_cmd(
    dataset: str = typer.Argument(..., help="Dataset to fetch: openi."),
    dest: Path = typer.Option(Path("data/openi"), help="Folder for the archives and their extracted files."),
    images: bool = typer.Option(True, help="Also fetch the images (NLMCXR_png.tgz, about 1.3 GB)."),
    extract: bool = typer.Option(True, help="Extract each archive after it is verified."),
    sha256: list[str] = typer.Option(None, "--sha256", help="Expected digest as NAME=HEX (repeatable)."),
    base_url: str | None = typer.Option(None, help="Mirror to fetch the archive names from instead of NLM."),
) -> None:
    """Fetch a public dataset's archives: resumable (HTTP Range), size/SHA-256 verified, atomic, extracted."""
    if dataset not in _DATASETS:
        raise CommandError(f"unknown dataset {dataset!r}; available: {', '.join(_DATASETS)}")
    for folder in (dest, *dest.parents):
        if folder.exists() and not folder.is_dir():
            raise CommandError(f"--dest {dest}: {folder} is a file, not a folder; choose another --dest")
    digests: dict[str, str] = {}
    for item in sha256 or []:
        name, sep, value = item.partition("=")
        if not sep or not value:
            raise CommandError(f"--sha256 {item!r} must look like NAME=HEX")
        digests[name] = value
    wanted = [a for key, a in _DATASETS[dataset].items() if key != "images" or images]
    for artifact in wanted:
        url = f"{base_url.rstrip('/')}/{artifact.name}" if base_url else artifact.url
        try:
            path = download(
                url, dest / artifact.name, digests.get(artifact.name, artifact.sha256), artifact.size
            )
            if extract:
                extract_tar(path, dest)
        except DownloadError as exc:
            typer.secho(f"error: {exc}", fg="red", err=True)  # a failed download exits 1, not 2 (bad input)
            raise typer.Exit(1) from exc
        typer.echo(f"{artifact.name}: ok ({path})")


@app.command("prepare")
def prepare_cmd(
    sources: list[str] = typer.Argument(
        None, help="KIND=PATH, KIND in openi, mimic-cxr, chexpert-plus, hospital (repeatable)."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Manifest file to write (.parquet)."),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML recipe (PrepareConfig fields)."),
    overrides: list[str] = typer.Option(
        None, "--set", help="Override a.b=c (repeatable), e.g. openi.split_file=X."
    ),
) -> None:
    """Read datasets into one manifest; bad records go to <stem>.rejects.jsonl beside it."""
    from lexray.config import load_config, save_config
    from lexray.data.prepare import SOURCE_KINDS, PrepareConfig, config_path, prepare

    base: dict = {}
    for spec in sources or []:
        kind, sep, path = spec.partition("=")
        if not sep or kind not in SOURCE_KINDS or not path:
            raise CommandError(
                f"source {spec!r} must be KIND=PATH with KIND one of {', '.join(SOURCE_KINDS)}"
            )
        key = SOURCE_KINDS[kind]
        if key == "hospital":
            base.setdefault("hospital", []).append({"path": path})
        else:
            base[key] = {"path": path}
    try:
        cfg = load_config(PrepareConfig, config, overrides or [], base=base)
        summary = prepare(cfg, out, protect=[config] if config is not None else [])
    except LexrayError as exc:
        raise CommandError(str(exc)) from exc
    save_config(cfg, summary.manifest.parent, filename=config_path(summary.manifest).name)
    # Rows read are counted for tabular exports; every one is a study's row or a reject.
    table = Table("source", "rows read", "studies", "rejected", title=str(summary.manifest))
    for src in sorted(set(summary.studies) | {s for s, _ in summary.rejected} | set(summary.rows_read)):
        rejected = sum(n for (s, _), n in summary.rejected.items() if s == src)
        rows = summary.rows_read.get(src, 0)
        table.add_row(src, str(rows) if rows else "-", str(summary.studies.get(src, 0)), str(rejected))
    console.print(table)
    if summary.rejected:
        reasons = ", ".join(f"{src} {why} {n:,}" for (src, why), n in sorted(summary.rejected.items()))
        typer.echo(f"rejects ({reasons}): {summary.rejects}")


@app.command("stats")
def stats_cmd(
    manifest: Path = typer.Argument(..., help="Manifest written by `lexray data prepare`."),
    as_json: bool = typer.Option(False, "--json", help="Print the numbers as JSON."),
) -> None:
    """Counts per split and source, section availability, report lengths, images and rejected records."""
    from lexray.data.stats import manifest_stats

    try:
        stats = manifest_stats(manifest)
    except LexrayError as exc:
        raise CommandError(str(exc)) from exc
    if as_json:
        typer.echo(json.dumps(stats, indent=2))
        return
    splits = sorted({s for v in stats["by_split_source"].values() for s in v})
    t = Table("source", *splits, "total", title=f"{stats['studies']:,} studies")
    for src, counts in sorted(stats["by_split_source"].items()):
        t.add_row(src, *(f"{counts.get(s, 0):,}" for s in splits), f"{sum(counts.values()):,}")
    console.print(t)
    t = Table(
        "source", "findings", "impression", "both", "indication", "comparison", title="section availability"
    )
    for src, share in sorted(stats["sections"].items()):
        keys = ("findings", "impression", "findings_and_impression", "indication", "comparison")
        t.add_row(src, *(f"{share[k]:.1%}" for k in keys))
    console.print(t)
    t = Table(
        "source",
        "mean",
        "min",
        "p5",
        "p25",
        "median",
        "p75",
        "p95",
        "max",
        title="report words (findings + impression)",
    )
    for src, w in sorted(stats["report_words"].items()):
        t.add_row(src, *(f"{w[k]:g}" for k in ("mean", "min", "p5", "p25", "p50", "p75", "p95", "max")))
    console.print(t)
    img = stats["images"]
    views = ", ".join(f"{k} {v:,}" for k, v in img["views"].items()) or "none"
    console.print(
        f"images: {img['total']:,} ({views}); studies without images: {img['studies_without_images']:,}"
    )
    if stats["rejects"]:
        t = Table("source", "reason", "rejected", title="rejected records")
        for src, reasons in sorted(stats["rejects"].items()):
            for reason, n in sorted(reasons.items(), key=lambda kv: -kv[1]):
                t.add_row(src, reason, f"{n:,}")
        console.print(t)
    else:
        console.print("rejected records: none")
