"""Entry point of the ``lexray`` command: registers one Typer sub-app per pipeline stage."""

from __future__ import annotations

import importlib
import logging

import typer

from lexray import __version__

app = typer.Typer(
    name="lexray",
    help=(
        "Chest X-ray image-text retrieval with LLM report encoders.\n\n"
        "Pipeline: data -> variants -> text (MNTP, contrastive) -> clip -> evaluate -> index -> serve."
    ),
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

# (module under lexray.cli, attribute holding a Typer app or a command function, group name). A Typer app
# becomes that group; a function becomes a top-level command (group None) or a command named after its
# module inside a group listed before it. Order is the pipeline order shown in --help.
_COMMANDS: list[tuple[str, str, str | None]] = [
    ("models", "app", "models"),
    ("doctor", "doctor", None),
    ("data", "app", "data"),
    ("phantom", "phantom", "data"),
    ("findings", "app", "findings"),
    ("variants", "app", "variants"),
    ("text", "app", "text"),
    ("encode", "encode", None),
    ("clip", "app", "clip"),
    ("embed", "app", "embed"),
    ("evaluate", "app", "evaluate"),
    ("index", "app", "index"),
    ("search", "search", None),
    ("serve", "serve", None),
    ("demo", "demo", None),
]


def _register() -> None:
    groups: dict[str, typer.Typer] = {}
    for module_name, attr, group in _COMMANDS:
        module = importlib.import_module(f"lexray.cli.{module_name}")
        obj = getattr(module, attr)
        if isinstance(obj, typer.Typer):
            app.add_typer(obj, name=group)
            groups[str(group)] = obj
        elif group is None:
            app.command()(obj)
        else:  # a command function that belongs to a group registered earlier
            groups[group].command(module_name)(obj)


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging.")) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )


@app.command()
def version() -> None:
    """Print lexray's version."""
    typer.echo(__version__)


_register()


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
