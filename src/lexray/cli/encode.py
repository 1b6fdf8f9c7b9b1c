"""``lexray encode``: embed a text file, one report per line, into a float32 ``.npy`` array.

Public contract (kept stable): line i of ``--texts`` becomes row i of ``--out``, shape (n, d), float32,
L2-normalised.
"""

from __future__ import annotations

import codecs
from pathlib import Path

import numpy as np
import typer

from lexray import models
from lexray.cli._args import check_output_file
from lexray.errors import LexrayError


class TextFileError(LexrayError, ValueError):
    """A ``--texts`` file that is not UTF-8 text with one report per line; names the line and byte."""


def parse_lines(data: bytes, name: str) -> list[str]:
    """One text per line of UTF-8 ``data`` (a leading byte-order mark is dropped).

    Only newline splits records ("\\r\\n" files too); a report keeps every other character. The final
    newline ends the last line; it does not start an empty one.

    Args:
        data: the file's bytes.
        name: the file's name, for messages.

    Raises:
        TextFileError: bytes that are not UTF-8, or a NUL byte (a binary file), naming the line and the
            byte offset.
    """
    start = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        text = data[start:].decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = start + exc.start
        line = data.count(b"\n", 0, offset) + 1
        raise TextFileError(
            f"{name}: line {line} is not UTF-8 (byte 0x{data[offset]:02x} at byte offset {offset}); "
            "save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`), one report per line"
        ) from None
    nul = text.find("\0")
    if nul >= 0:
        offset = start + len(text[:nul].encode("utf-8"))
        line = data.count(b"\n", 0, offset) + 1
        raise TextFileError(
            f"{name}: line {line} holds a NUL byte (byte offset {offset}): this looks like a binary file; "
            "give a UTF-8 text file with one report per line"
        )
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def read_lines(path: Path) -> list[str]:
    """The texts of a UTF-8 file, one per line (see :func:`parse_lines`).

    Raises:
        TextFileError: the file is missing, a folder, unreadable or not UTF-8 text.
    """
    if path.is_dir():
        raise TextFileError(f"--texts {path} is a folder; give a text file with one report per line")
    if not path.is_file():
        raise TextFileError(f"--texts {path} does not exist; give a text file with one report per line")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TextFileError(f"--texts {path} cannot be read ({exc.strerror or exc})") from exc
    return parse_lines(data, str(path))


def _check_model(reference: str) -> None:
    """Fail on a model reference that cannot load (a file, a missing path, an offline hub id) up front."""
    resolved = models.resolve(reference)
    if resolved.source == "hub" and models.hub_offline():
        models.local_path(reference)  # raises ModelNotAvailableError naming the fix


def encode(
    model: str = typer.Option(
        ..., "--model", "-m", help="Encoder dir, alias (minilm-l6, smollm2-135m) or hub id."
    ),
    texts: Path = typer.Option(..., "--texts", "-t", help="UTF-8 text file: one text per line."),
    out: Path = typer.Option(..., "--out", "-o", help="Output .npy file: float32 (n, d), row i = line i."),
    batch_size: int = typer.Option(32, min=1, help="Texts per forward pass."),
    pooling: str = typer.Option(None, help="Pooling for a base model: mean | last | latent (default mean)."),
) -> None:
    """Embed one text per line of a file into a float32 (n, d) array (row i = line i)."""
    # Every argument is checked before the model loads: a bad one costs no time.
    try:
        check_output_file(out, example="embeddings.npy", inputs=[texts])
        lines = read_lines(texts)
        _check_model(model)
    except LexrayError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from exc
    from lexray.text import TextEncoder, is_encoder_dir

    overrides = {"pooling": pooling} if pooling and not is_encoder_dir(model) else {}
    try:
        encoder = TextEncoder.from_pretrained(model, **overrides)
    except LexrayError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from exc
    except (ValueError, OSError) as exc:  # transformers' own: a folder that holds no usable model
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        typer.secho(
            f"error: --model {model} cannot be loaded as a text encoder ({first}); give an encoder "
            "directory, an alias (lexray models list) or a hub id",
            fg="red",
            err=True,
        )
        raise typer.Exit(2) from exc
    if lines:
        emb = encoder.encode(lines, batch_size=batch_size, show_progress=True)
    else:
        emb = np.zeros((0, encoder.dim), dtype=np.float32)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as f:  # np.save on a handle keeps the exact file name (no ".npy" appended)
        np.save(f, emb.astype(np.float32, copy=False))
    typer.echo(f"{emb.shape[0]} x {emb.shape[1]} float32 -> {out}")
