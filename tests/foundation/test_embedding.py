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
