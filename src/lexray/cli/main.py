"""Entry point of the ``lexray`` command: one lazily loaded sub-command per pipeline stage.

Command modules are imported only when their command runs (or its own ``--help`` is asked for), so
``lexray --help`` and ``lexray version`` start without torch, spaCy or FAISS. Any
:class:`lexray.errors.LexrayError` raised inside a command becomes one ``error: ...`` line and exit 2.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from typing import Any

import typer
from typer import _click as click  # typer's own click: its objects are what typer builds
from typer.core import TyperCommand, TyperGroup

from lexray import __version__
from lexray.errors import LexrayError


@dataclass(frozen=True)
class _Entry:
    """One top-level command or group, loaded from ``lexray.cli.<module>`` when it is first used."""

    module: str  # module under lexray.cli
    attr: str  # attribute holding a Typer app (a group) or a command function
    summary: str  # the one-line help shown by `lexray --help` (a test checks it matches the command's)
    extra: tuple[tuple[str, str], ...] = ()  # (module, function) commands added to this group, by module name


# Top-level commands first, then the groups in pipeline order: the order `lexray --help` shows.
_COMMANDS: dict[str, _Entry] = {
    "doctor": _Entry(
        "doctor", "doctor", "Check torch and its device, offline models, caches and data; print what to do next."
    ),
    "encode": _Entry(
        "encode", "encode", "Embed one text per line of a file into a float32 (n, d) array (row i = line i)."
    ),
    "search": _Entry("search", "search", "Find reports for a film (--image) or films for a description (--text)."),
    "serve": _Entry(
        "serve", "serve", "Serve the search API (/v1, /docs) and the web page (/) on 127.0.0.1 by default."
    ),
    "demo": _Entry(
        "demo",
        "demo",
        "Run the whole pipeline offline on CPU: data, phantoms, report encoder, CLIP, evaluation, index.",
    ),
    "models": _Entry("models", "app", "Model aliases, offline weights and published-model importers."),
    "data": _Entry(
        "data", "app", "Datasets -> study manifest (download, prepare, stats).", extra=(("phantom", "phantom"),)
    ),
    "findings": _Entry("findings", "app", "Finding labels (14 CheXpert observations + mentions) from report text."),
    "variants": _Entry("variants", "app", "Report variants (rules or LLM) checked by the finding labeler."),
    "text": _Entry("text", "app", "LLM report encoders: training, text benchmark, export."),
    "clip": _Entry("clip", "app", "Dual-tower image-report model (CLIP): training."),
    "embed": _Entry("embed", "app", "Embeddings from a trained dual encoder (images, texts)."),
    "evaluate": _Entry(
        "evaluate",
        "app",
        "Evaluate a model run: exact bidirectional retrieval (study/image level, exact/dedup), retrieval as "
        "report generation, style robustness, zero-shot 5x200. `lexray evaluate --model RUN ...` = `run`.",
    ),
    "index": _Entry("index", "app", "Build and extend retrieval indexes (vectors + FAISS + metadata)."),
    "experiment": _Entry("experiment", "app", "Experiments that train and evaluate grids of models (style-mix)."),
}


def load_command(name: str) -> click.Command:
    """Import the module behind command ``name`` and build its click command (a group or a command)."""
    entry = _COMMANDS[name]
    obj = getattr(importlib.import_module(f"lexray.cli.{entry.module}"), entry.attr)
    if isinstance(obj, typer.Typer):
        sub = obj
        for module_name, function in entry.extra:
            registered = {info.name for info in sub.registered_commands}
            if module_name not in registered:  # a second load in one process must not register it twice
                sub.command(module_name)(getattr(importlib.import_module(f"lexray.cli.{module_name}"), function))
    else:
        sub = typer.Typer()
        sub.command(name)(obj)
    command = typer.main.get_command(sub)
    command.name = name
    return command


class _LazyGroup(TyperGroup):
    """The root group: loads a command's module on first use and names user errors instead of raising."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._loaded: dict[str, click.Command] = {}
        self._listing = False  # True while the root help is being formatted

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*super().list_commands(ctx), *_COMMANDS]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        eager = super().get_command(ctx, cmd_name)
        if eager is not None or cmd_name not in _COMMANDS:
            return eager
        if cmd_name in self._loaded:
            return self._loaded[cmd_name]
        if self._listing:  # the root help needs only a name and a line: don't import the module for it
            return TyperCommand(cmd_name, help=_COMMANDS[cmd_name].summary)
        self._loaded[cmd_name] = load_command(cmd_name)
        return self._loaded[cmd_name]

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LexrayError as exc:
            typer.secho(f"error: {exc}", fg="red", err=True)
            raise typer.Exit(2) from exc


app = typer.Typer(
    name="lexray",
    cls=_LazyGroup,
    help=(
        "Chest X-ray image-text retrieval with LLM report encoders.\n\n"
        "Pipeline: data -> variants -> text (MNTP, contrastive) -> clip -> evaluate -> index -> serve."
    ),
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging.")) -> None:
    # lexray's own progress at INFO; other libraries (FAISS's loader, absl, ...) only from WARNING up,
    # unless --verbose. Libraries are imported when a command runs, after this, so this covers them.
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    logging.getLogger("lexray").setLevel(logging.DEBUG if verbose else logging.INFO)


@app.command()
def version() -> None:
    """Print lexray's version."""
    typer.echo(__version__)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
