"""``lexray findings``: label reports with the chest X-ray finding labeler."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from lexray.cli._args import CommandError, check_output_file, not_utf8
from lexray.config import ConfigError, load_config, save_config

# lexray.findings loads spaCy and medspaCy (seconds): each command imports it when it runs.

app = typer.Typer(
    help="Finding labels (14 CheXpert observations + mentions) from report text.", no_args_is_help=True
)
console = Console()


@app.command("label")
def label_cmd(
    reports: Path = typer.Argument(
        ..., help="Reports: a manifest (.parquet), JSON lines, or one report per line."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Labels file to write (JSON lines)."),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML recipe (LabelRunConfig fields)."),
    overrides: list[str] = typer.Option(
        None, "--set", help="Override a.b=c (repeatable), e.g. text=impression, labeler.n_process=2."
    ),
) -> None:
    """Label every report; bad records go to <stem>.rejects.jsonl, the resolved config beside the labels."""
    from lexray.findings.runs import LabelRunConfig, label_file

    check_output_file(out, example="labels.jsonl", inputs=[reports])
    try:
        cfg = load_config(LabelRunConfig, config, overrides or [])
    except ConfigError as exc:
        raise CommandError(str(exc)) from exc
    try:
        stats = label_file(reports, out, cfg)
    except UnicodeDecodeError as exc:
        raise CommandError(not_utf8(reports, exc)) from exc
    except (FileNotFoundError, ValueError) as exc:
        raise CommandError(str(exc)) from exc
    save_config(cfg, out.parent, filename=f"{out.name.split('.')[0]}.config.yaml")
    rate = stats.labelled / stats.seconds if stats.seconds else 0.0
    typer.echo(f"{stats.labelled} reports labelled -> {stats.out} ({rate:.0f} reports/s)")
    if stats.rejected:
        typer.echo(f"{stats.rejected} records skipped -> {stats.rejects}")


@app.command("show")
def show_cmd(text: str = typer.Argument(..., help="One report (quote it).")) -> None:
    """Print the observations and mentions the labeler reads from one report."""
    from lexray.findings import CHEXPERT_OBSERVATIONS, get_labeler

    labels = get_labeler()(text)
    obs = Table("observation", "status")
    for name in CHEXPERT_OBSERVATIONS:
        if labels.observations[name] != "absent":
            obs.add_row(name, labels.observations[name])
    console.print(obs)
    mentions = Table(
        "finding", "class", "status", "text", "side", "zone", "severity", "chronicity", "section"
    )
    for m in labels.mentions:
        mentions.add_row(
            m.observation,
            m.category or "-",
            m.status,
            m.text,
            m.laterality or "",
            m.location or "",
            m.severity or "",
            m.chronicity or "",
            m.section or "",
        )
    console.print(mentions)


@app.command("stats")
def stats_cmd(
    labels: Path = typer.Argument(..., help="A labels file written by `lexray findings label`."),
) -> None:
    """Count reports per observation and status."""
    from lexray.findings import CHEXPERT_OBSERVATIONS, STATUSES
    from lexray.findings.runs import label_counts

    if not labels.is_file():
        raise CommandError(f"{labels} does not exist")
    try:
        counts = label_counts(labels)
    except UnicodeDecodeError as exc:
        raise CommandError(not_utf8(labels, exc, "JSON lines")) from exc
    except (ValueError, KeyError, TypeError, AttributeError) as exc:  # not the labeler's JSON lines
        raise CommandError(
            f"{labels} is not a labels file written by `lexray findings label` ({type(exc).__name__}: {exc})"
        ) from exc
    table = Table("observation", *STATUSES)
    for name in CHEXPERT_OBSERVATIONS:
        table.add_row(name, *(str(counts[name][s]) for s in STATUSES))
    console.print(table)
