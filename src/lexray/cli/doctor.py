"""``lexray doctor``: what this machine has, what is missing, and the command that fixes each gap."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from lexray import models


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def doctor() -> None:
    """Check torch and its device, offline models, caches and data; print what to do next."""
    import torch

    table = Table("check", "status", "next step")
    ok, todo = "[green]ok[/green]", "[yellow]missing[/yellow]"
    cuda = torch.cuda.is_available()
    device = torch.cuda.get_device_name(0) if cuda else f"CPU ({os.cpu_count()} cores)"
    table.add_row(
        "torch",
        f"{torch.__version__} on {device}",
        "" if cuda else "GPU recipes need CUDA; CPU recipes run here",
    )
    for dist in ("transformers", "peft", "accelerate", "timm", "faiss-cpu", "medspacy"):
        v = _version(dist)
        table.add_row(dist, v or todo, "" if v else "make setup  (or pip install -e .)")
    table.add_row("LEXRAY_HOME", str(models.lexray_home()), "set LEXRAY_HOME to move caches")
    table.add_row(
        "HF cache",
        os.environ.get("HF_HOME", str(Path.home() / ".cache" / "huggingface")),
        "offline mode on (HF_HUB_OFFLINE)" if models.hub_offline() else "hub ids download here when online",
    )
    for alias in models.ALIASES.values():
        if not alias.package:
            table.add_row(f"model {alias.name}", "hub only", f"needs network: {alias.hub_id}")
        elif models.is_installed(alias.name):
            table.add_row(f"model {alias.name}", ok, str(models.offline_dir(alias.name)))
        else:
            table.add_row(f"model {alias.name}", todo, models.INSTALL_HINT)
    openi = [Path(p) for p in (os.environ.get("LEXRAY_OPENI", ""), "../shared/data/openi") if p]
    found = next((p for p in openi if (p / "NLMCXR_reports.tgz").is_file()), None)
    table.add_row(
        "Open-i reports",
        str(found) if found else todo,
        "" if found else "lexray data download openi  (or set LEXRAY_OPENI=DIR)",
    )
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    table.add_row(
        "chromium (browser test)",
        chromium or todo,
        "" if chromium else "make browser  (apt-get install chromium)",
    )
    Console().print(table)
    missing = [a.name for a in models.ALIASES.values() if a.package and not models.is_installed(a.name)]
    if missing:
        typer.echo(f"Next: `{models.INSTALL_HINT}` installs {', '.join(missing)}; then `make demo`.")
    else:
        typer.echo("Ready: `make demo` runs the whole pipeline offline.")
