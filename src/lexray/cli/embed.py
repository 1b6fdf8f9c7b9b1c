"""``lexray embed``: embed a manifest's images or reports with a trained dual encoder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import typer

from lexray.cli._args import CommandError, check_output_file

app = typer.Typer(help="Embeddings from a trained dual encoder (images, texts).", no_args_is_help=True)

# Declared once so that `embed images` and `embed texts` cannot drift apart in name or help.
_MODEL = typer.Option(..., "--model", "-m", help="A dual-encoder directory or a `lexray clip train` run.")
_SPLIT = typer.Option(None, help="Only this split (default: all).")


def _load(model: Path, manifest: Path, split: str | None):  # noqa: ANN202 - (model, studies, writes)
    from lexray.clip.model import DualEncoder
    from lexray.data.manifest import ManifestError, read_manifest, select
    from lexray.training.sharded import shard_across_launch

    try:
        studies = select(read_manifest(manifest), split=split)
        encoder = DualEncoder.from_pretrained(model)
    except (ManifestError, FileNotFoundError, ValueError) as exc:
        raise CommandError(str(exc)) from exc
    # Under `accelerate launch`, each process embeds a share of every call; only the main one saves.
    encoder, writes = shard_across_launch(encoder)
    return encoder, studies, writes


def _save(out: Path, embeddings: np.ndarray, ids: list[str], extra: dict[str, list[str]]) -> None:
    """One .npz: ``embeddings`` (N, E) float32, ``study_id`` (N,) and any per-row columns."""
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, embeddings=embeddings, study_id=np.array(ids), **{k: np.array(v) for k, v in extra.items()})
    typer.echo(f"{len(ids)} embeddings of size {embeddings.shape[1]} -> {out}")


@app.command("images")
def images_cmd(
    model: Path = _MODEL,
    manifest: Path = typer.Option(..., "--manifest", help="Manifest whose images to embed."),
    out: Path = typer.Option(..., "--out", "-o", help="Output .npz (embeddings, study_id, path)."),
    split: str | None = _SPLIT,
    image_root: Path | None = typer.Option(
        None, help="Folder relative image paths are under (default: the manifest's)."
    ),
    batch_size: int = typer.Option(32, min=1, help="Images per forward pass."),
) -> None:
    """Embed every image of the manifest's studies; unreadable images are skipped and counted."""
    from lexray.embedding import embed_safely

    check_output_file(out, example="images.npz", inputs=[manifest])
    encoder, studies, writes = _load(model, manifest, split)
    root = image_root or manifest.parent
    rows = [(s.study_id, str(im.resolve(root))) for s in studies for im in s.images]
    if not rows:
        raise CommandError(f"{manifest} has no images{f' in split {split}' if split else ''}")
    paths = [path for _, path in rows]
    vectors, failed = embed_safely(encoder.embed_images, paths, batch_size, progress=True, desc="images")
    for _, reason in failed:
        typer.secho(f"skipped: {reason}", fg="yellow", err=True)
    if failed:
        typer.echo(f"skipped {len(failed)} unreadable images")
    ok = np.ones(len(rows), dtype=bool)
    ok[[i for i, _ in failed]] = False
    kept = [row for row, good in zip(rows, ok, strict=True) if good]
    if writes:
        _save(out, vectors[ok], [sid for sid, _ in kept], {"path": [path for _, path in kept]})


@app.command("texts")
def texts_cmd(
    model: Path = _MODEL,
    manifest: Path = typer.Option(..., "--manifest", help="Manifest whose reports to embed."),
    out: Path = typer.Option(..., "--out", "-o", help="Output .npz (embeddings, study_id)."),
    split: str | None = _SPLIT,
    batch_size: int = typer.Option(32, min=1, help="Reports per forward pass."),
) -> None:
    """Embed each study's findings + impression; studies without report text are skipped."""
    check_output_file(out, example="texts.npz", inputs=[manifest])
    encoder, studies, writes = _load(model, manifest, split)
    kept = [s for s in studies if s.report_text.strip()]
    if len(kept) < len(studies):
        typer.echo(f"skipped {len(studies) - len(kept)} studies without findings or impression")
    if not kept:
        raise CommandError(f"{manifest} has no report text{f' in split {split}' if split else ''}")
    emb = encoder.embed_texts([s.report_text for s in kept], batch_size=batch_size)
    if writes:
        _save(out, emb, [s.study_id for s in kept], {})
