"""``embed_safely``: the one rule for embedding records that may be bad."""

from __future__ import annotations

import numpy as np
import pytest

from lexray.embedding import EmbeddingError, embed_safely


def _model(bad: set[str], zero: set[str] = frozenset(), calls: list[int] | None = None):
    """Embeds "name" to a one-hot-ish vector; raises on any batch holding a bad name."""

    def embed(items: list[str], batch_size: int) -> np.ndarray:
        if calls is not None:
            calls.append(len(items))
        if bad & set(items):
            raise OSError(f"cannot read {sorted(bad & set(items))[0]}")
        return np.array([[0.0, 0.0] if it in zero else [1.0, float(len(it))] for it in items])

    return embed


def test_a_bad_item_skips_only_itself() -> None:
    calls: list[int] = []
    items = ["a", "bb", "bad", "dddd", "e"]
    vectors, failed = embed_safely(_model({"bad"}, calls=calls), items, batch_size=2)
    assert failed == [(2, "OSError: cannot read bad")]
    assert vectors.shape == (5, 2) and vectors.dtype == np.float32
    assert np.array_equal(vectors[[0, 1, 3, 4], 1], [1, 2, 4, 1]) and not vectors[2].any()
    assert calls == [2, 2, 1, 1, 1]  # the failing batch (bad, dddd) is retried item by item


def test_zero_and_non_finite_vectors_are_failures() -> None:
    vectors, failed = embed_safely(_model(set(), zero={"z"}), ["a", "z"], batch_size=4)
    assert failed == [(1, "the model returned a zero or non-finite vector")]
    assert vectors[0].any() and not vectors[1].any()


def test_nothing_embedding_is_an_error_not_a_skip() -> None:
    with pytest.raises(EmbeddingError, match="none of the 2 items.*OSError: cannot read x"):
        embed_safely(_model({"x", "y"}), ["x", "y"], batch_size=1)


def test_a_wrong_row_count_is_the_models_bug() -> None:
    with pytest.raises(EmbeddingError, match=r"shape \(1, 2\) for 2 items"):
        embed_safely(lambda items, batch_size: np.ones((1, 2)), ["a", "b"], batch_size=2)


def test_embed_images_cli_skips_unreadable_files_and_fails_when_none_reads(tmp_path) -> None:
    from typer.testing import CliRunner

    from lexray.cli.main import app
    from lexray.clip import DualEncoder, DualEncoderConfig, TextTowerConfig
    from lexray.data.manifest import write_manifest
    from lexray.data.study import Image, Study
    from lexray.phantoms import PhantomFindings, render_phantom, save_phantom_png
    from lexray.testing import build_tiny_llama
    from lexray.vision import VisionConfig

    vision = VisionConfig(kind="small_cnn", image_size=32, cnn_widths=(8, 16), cnn_out_dim=16)
    text = TextTowerConfig(encoder=str(build_tiny_llama(tmp_path / "llama")), max_length=32)
    DualEncoder.from_config(DualEncoderConfig(vision=vision, text=text, embed_dim=8)).save_pretrained(
        tmp_path / "run" / "final"
    )
    studies = []
    for i in range(3):
        sid = f"s{i}"
        save_phantom_png(
            tmp_path / f"{sid}.png", render_phantom(PhantomFindings(), sid, 32), sid, PhantomFindings()
        )
        studies.append(Study(sid, sid, "phantom", "test", (Image(f"{sid}.png"),), findings="Clear."))
    (tmp_path / "bad.png").write_bytes(b"not a png")
    studies.append(Study("bad", "bad", "phantom", "test", (Image("bad.png"),), findings="Clear."))
    write_manifest(studies, tmp_path / "m.parquet")
    write_manifest(studies[3:], tmp_path / "only-bad.parquet")

    def embed(manifest: str, out: str):
        args = ["embed", "images", "--model", str(tmp_path / "run"), "--manifest", str(tmp_path / manifest)]
        return CliRunner().invoke(app, [*args, "--out", str(tmp_path / out), "--batch-size", "2"])

    res = embed("m.parquet", "ok.npz")
    assert res.exit_code == 0, res.output
    assert "skipped 1 unreadable images" in res.output
    data = np.load(tmp_path / "ok.npz")
    assert list(data["study_id"]) == ["s0", "s1", "s2"] and data["embeddings"].shape == (3, 8)
    res = embed("only-bad.parquet", "none.npz")
    assert res.exit_code == 2 and "Traceback" not in res.output
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "none of the 1 items could be embedded" in errors[0]
    assert not (tmp_path / "none.npz").exists()
