"""``lexray search``: query an index with a radiograph or a description and print the top-k."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table


def _clip(text: str, n: int = 160) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def search(
    index: Path = typer.Option(..., "--index", help="Index directory."),
    image: Path | None = typer.Option(None, "--image", help="Query radiograph (PNG, JPEG or DICOM)."),
    text: str | None = typer.Option(None, "--text", help="Query description."),
    k: int = typer.Option(5, "-k", "--k", min=1, help="Number of results."),
    target: str | None = typer.Option(
        None,
        help="Side to search: 'text' (reports) or 'image' (films); default: the other side of the query.",
    ),
) -> None:
    """Find reports for a film (--image) or films for a description (--text)."""
    if (image is None) == (text is None):
        typer.secho("error: give exactly one of --image or --text", fg="red", err=True)
        raise typer.Exit(2)
    if target not in (None, "text", "image"):
        typer.secho(f"error: --target must be 'text' or 'image', got {target!r}", fg="red", err=True)
        raise typer.Exit(2)
    if image is not None and not image.is_file():
        kind = "is a folder" if image.is_dir() else "does not exist"
        typer.secho(f"error: --image {image} {kind}; give a PNG, JPEG or DICOM file", fg="red", err=True)
        raise typer.Exit(2)
    # Imported here: the index stack (FAISS, pandas, torch) costs seconds at `--help`.
    from lexray.data.images import ImageError, load_radiograph
    from lexray.index import IndexFormatError, ModelLoadError, Searcher

    try:
        searcher = Searcher.open(index)
        if image is not None:
            pixels = load_radiograph(image).pixels  # (H, W) in [0, 1]
            result = searcher.by_image(pixels, k=k, target=target or "text")
        else:
            result = searcher.by_text(text or "", k=k, target=target or "image")
    except (IndexFormatError, ModelLoadError, ImageError, KeyError, ValueError) as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from exc
    idx = searcher.index
    side = result.hits[0].modality if result.hits else (target or "")
    table = Table("#", "score", "study", "image" if side == "image" else "images", "findings", "impression")
    for hit in result.hits:
        study = idx.study(hit.study_id)
        if hit.image is not None:
            where = f"{hit.image.view or '?'} {Path(hit.image.path).name}"
        else:
            where = ", ".join(im.view or "?" for im in study.images) or "-"
        table.add_row(
            str(hit.rank),
            f"{hit.score:.3f}",
            hit.study_id,
            where,
            _clip(study.findings),
            _clip(study.impression),
        )
    console = Console()
    console.print(table)
    console.print(f"embedding {result.embed_ms:.0f} ms, index search {result.search_ms:.2f} ms")
