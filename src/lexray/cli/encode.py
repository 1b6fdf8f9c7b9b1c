"""``lexray encode``: embed a text file, one report per line, into a float32 ``.npy`` array.

Public contract (kept stable): line i of ``--texts`` becomes row i of ``--out``, shape (n, d), float32,
L2-normalised.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import typer


def encode(
    model: str = typer.Option(
        ..., "--model", "-m", help="Encoder dir, alias (minilm-l6, smollm2-135m) or hub id."
    ),
    texts: Path = typer.Option(..., "--texts", "-t", help="UTF-8 text file: one text per line."),
    out: Path = typer.Option(..., "--out", "-o", help="Output .npy file: float32 (n, d), row i = line i."),
    batch_size: int = typer.Option(32, help="Texts per forward pass."),
    pooling: str = typer.Option(None, help="Pooling for a base model: mean | last | latent (default mean)."),
) -> None:
    """Embed one text per line of a file into a float32 (n, d) array (row i = line i)."""
    from lexray.text import TextEncoder, is_encoder_dir

    if not texts.is_file():
        typer.secho(
            f"error: {texts} does not exist; give a text file with one report per line", fg="red", err=True
        )
        raise typer.Exit(2)
    # Only newline splits records ("\r\n" files too); a report keeps any other characters.
    lines = texts.read_text(encoding="utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline ends the last line, it does not start a new one
    lines = [line.removesuffix("\r") for line in lines]
    overrides = {"pooling": pooling} if pooling and not is_encoder_dir(model) else {}
    try:
        encoder = TextEncoder.from_pretrained(model, **overrides)
    except (ValueError, OSError) as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from exc
    if lines:
        emb = encoder.encode(lines, batch_size=batch_size, show_progress=True)
    else:
        emb = np.zeros((0, encoder.dim), dtype=np.float32)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as f:  # np.save on a handle keeps the exact file name (no ".npy" appended)
        np.save(f, emb.astype(np.float32, copy=False))
    typer.echo(f"{emb.shape[0]} x {emb.shape[1]} float32 -> {out}")
