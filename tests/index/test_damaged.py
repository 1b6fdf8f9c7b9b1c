"""A damaged index version (truncated, garbled or missing files) is an IndexFormatError naming the file."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lexray.cli.main import app
from lexray.index import IndexConfig, IndexFormatError, RetrievalIndex, Searcher, build_index, make_ref


@pytest.fixture
def built(tmp_path: Path, toy_run: Path, toy_module: str, corpus) -> Path:  # noqa: ANN001
    """A committed index of 4 synthetic studies (image and text sides)."""
    from toy_embedder import ToyEmbedder

    studies = corpus(tmp_path, 4)
    cfg = IndexConfig(model_class=toy_module, chunk_size=4)
    ref = make_ref(toy_run, toy_module)
    build_index(studies, ToyEmbedder(dim=32), ref, tmp_path / "idx", cfg, image_root=tmp_path, progress=False)
    return tmp_path / "idx"


def _version(index: Path) -> Path:
    return index / (index / "CURRENT").read_text().strip()


def _truncate(path: Path, keep: int) -> None:
    path.write_bytes(path.read_bytes()[:keep])


@pytest.mark.parametrize(
    ("name", "damage"),
    [
        ("text.faiss", lambda p: _truncate(p, 100)),
        ("image.faiss", lambda p: _truncate(p, 20)),
        ("text_vectors.npy", lambda p: _truncate(p, 140)),
        ("image_vectors.npy", lambda p: p.write_bytes(b"garbage")),
        ("studies.parquet", lambda p: _truncate(p, 300)),
        ("texts.parquet", lambda p: p.write_bytes(b"PAR1 not really")),
        ("images.parquet", lambda p: p.unlink()),
        ("index.json", lambda p: p.write_text("{not json")),
        ("config.yaml", lambda p: p.write_text("faiss: [unclosed")),
    ],
)
def test_damaged_file_is_named_with_the_rebuild_command(built: Path, name: str, damage) -> None:  # noqa: ANN001
    path = _version(built) / name
    damage(path)
    with pytest.raises(IndexFormatError) as err:
        RetrievalIndex.load(built)
    message = str(err.value)
    assert name in message and "lexray index build" in message and f"--out {built}" in message


def test_truncated_faiss_in_search_is_one_line_exit_2(built: Path) -> None:
    _truncate(_version(built) / "text.faiss", 100)
    result = CliRunner().invoke(app, ["search", "--index", str(built), "--text", "lungs"])
    assert result.exit_code == 2, result.output
    assert "text.faiss is damaged" in result.output and "lexray index build" in result.output
    assert isinstance(result.exception, SystemExit)  # not an exception escaping the command


def test_truncated_faiss_in_serve_is_one_line_exit_2(built: Path) -> None:
    _truncate(_version(built) / "text.faiss", 100)
    with socket.socket() as s:  # a free port: serve binds it before it loads the index
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = CliRunner().invoke(app, ["serve", "--index", str(built), "--set", f"port={port}"])
    assert result.exit_code == 2 and "text.faiss is damaged" in result.output
    assert isinstance(result.exception, SystemExit)


def test_intact_index_still_opens(built: Path) -> None:
    assert len(Searcher.open(built).by_text("lungs", k=2, target="text").hits) == 2
