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
    the manifest's folder) and extra fields synthetic=true and phantom_findings (the drawn ground truth).
    """
    from lexray.config import ConfigError, load_config, save_config
    from lexray.data.manifest import ManifestError, read_manifest, write_manifest
    from lexray.data.phantom import PhantomConfig, render_studies
    from lexray.data.study import Reject

    try:
        cfg = load_config(PhantomConfig, config, overrides or [])
        studies = read_manifest(manifest)
    except (ConfigError, ManifestError) as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from exc
    result = render_studies(studies, out.parent, cfg)
    rejects = [
        Reject(source="phantom", record=sid, reason="empty_report", detail=why) for sid, why in result.skipped
    ]
    write_manifest(result.studies, out, rejects=rejects)
    save_config(cfg, out.parent, filename=f"{out.stem}.phantom.yaml")
    normal = sum(f.normal for f in result.findings.values())
    typer.echo(
        f"{len(result.studies)} SYNTHETIC phantoms ({normal} normal, "
        f"{len(set(f.key() for f in result.findings.values()))} distinct findings) -> {out}; "
        f"skipped {len(result.skipped)}"
    )
