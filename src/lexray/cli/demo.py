"""``lexray demo``: the whole pipeline, offline, on CPU, in one command (what ``make demo`` runs).

The pipeline is :mod:`lexray.pipelines.demo`; this module only reads the options and serves the result.
"""

from __future__ import annotations

from pathlib import Path

import typer


def demo(
    config: Path | None = typer.Option(None, "--config", help="YAML with DemoConfig fields."),
    overrides: list[str] = typer.Option(
        [], "--set", help="Override a field, e.g. out=runs/demo2 (repeatable)."
    ),
    openi: str | None = typer.Option(None, "--openi", help="Open-i folder or NLMCXR_reports.tgz."),
    out: str | None = typer.Option(None, "--out", help="Output folder (default runs/demo)."),
    text_encoder: str | None = typer.Option(None, "--text-encoder", help="Reuse a trained text-encoder dir."),
    serve: bool = typer.Option(False, "--serve", help="Then serve the web page on 127.0.0.1."),
    port: int = typer.Option(8000, help="Port for --serve."),
) -> None:
    """Run the whole pipeline offline on CPU: data, phantoms, report encoder, CLIP, evaluation, index."""
    from lexray.cli._args import check_output_dir
    from lexray.config import load_config
    from lexray.pipelines.demo import DemoConfig, run_demo

    extra = [f"{k}={v}" for k, v in (("openi", openi), ("out", out), ("text_encoder", text_encoder)) if v]
    try:
        cfg = load_config(DemoConfig, config, [*overrides, *extra])
        check_output_dir(Path(cfg.out), option="out")  # before any work: a file there fails only at the end
        run_demo(cfg)
    except (FileNotFoundError, ValueError) as exc:  # lexray's own errors are named by the root command
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from exc
    if serve:
        import uvicorn

        from lexray.index import Searcher
        from lexray.serve import ServeConfig, create_app

        typer.echo(f"serving http://127.0.0.1:{port}/ (Ctrl-C stops)")
        app = create_app(Searcher.open(Path(cfg.out) / "index"), ServeConfig(host="127.0.0.1", port=port))
        uvicorn.run(app, host="127.0.0.1", port=port)
