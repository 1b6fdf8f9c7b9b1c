"""``lexray data phantom``: render a synthetic radiograph per report of a manifest (a command function)."""

from __future__ import annotations

from pathlib import Path

import typer


def phantom(
    manifest: Path = typer.Option(..., "--manifest", help="Input manifest (studies with report text)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output manifest (.parquet); PNGs go beside it."),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML recipe (PhantomConfig fields)."),
    overrides: list[str] = typer.Option(None, "--set", help="Override a.b=c (repeatable), e.g. size=128."),
) -> None:
    """Render one SYNTHETIC frontal phantom per study from its labelled findings.

    The output manifest lists the same studies with the phantom as their only image (paths relative to
    the manifest's folder, in a folder per run) and extra fields synthetic=true and phantom_findings (the
    drawn ground truth). Rerunning over an earlier output replaces it atomically; an interrupted run
    leaves the earlier one intact and resumes when started again.
    """
    from lexray.config import load_config, save_config
    from lexray.data.manifest import check_output_manifest, read_manifest
    from lexray.phantoms import PhantomConfig, write_phantom_run

    # A bad recipe, output path or manifest is a LexrayError: the CLI prints it as one line, exit 2.
    cfg = load_config(PhantomConfig, config, overrides or [])
    inputs = [manifest, *([config] if config is not None else [])]
    check_output_manifest(out, inputs, [out.with_name(f"{out.stem}.phantom.yaml")])
    studies = read_manifest(manifest)
    result = write_phantom_run(studies, out, cfg)
    save_config(cfg, out.parent, filename=f"{out.stem}.phantom.yaml")
    normal = sum(f.normal for f in result.findings.values())
    typer.echo(
        f"{len(result.studies)} SYNTHETIC phantoms ({normal} normal, "
        f"{len(set(f.key() for f in result.findings.values()))} distinct findings) -> {out}; "
        f"skipped {len(result.skipped)}"
    )
