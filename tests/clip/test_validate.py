"""Validation retrieval metrics against a naive sort-based oracle."""

from __future__ import annotations

import numpy as np
import pytest

from lexray.clip.validate import retrieval_metrics


def naive_hit_at_k(q: np.ndarray, k: np.ndarray, groups: np.ndarray, kk: int) -> float:
    """% of queries with a same-group key among the kk highest scores (ties are impossible here)."""
    hits = 0
    for i in range(len(q)):
        order = np.argsort(-(k @ q[i]))[:kk]
        hits += any(groups[j] == groups[i] for j in order)
    return 100.0 * hits / len(q)


@pytest.mark.parametrize("seed", [0, 1])
def test_metrics_match_the_naive_oracle(seed: int) -> None:
    rng = np.random.default_rng(seed)
    img = rng.standard_normal((30, 8)).astype(np.float32)
    txt = (img + rng.standard_normal((30, 8)).astype(np.float32)).astype(np.float32)
    img /= np.linalg.norm(img, axis=1, keepdims=True)
    txt /= np.linalg.norm(txt, axis=1, keepdims=True)
    groups = [f"g{i % 7}" for i in range(30)]
    m = retrieval_metrics(img, txt, groups, ks=(1, 5))
    exact = np.arange(30)
    g = np.array([i % 7 for i in range(30)])
    for kk in (1, 5):
        assert m[f"exact/i2t/R@{kk}"] == pytest.approx(naive_hit_at_k(img, txt, exact, kk))
        assert m[f"exact/t2i/R@{kk}"] == pytest.approx(naive_hit_at_k(txt, img, exact, kk))
        assert m[f"group/i2t/R@{kk}"] == pytest.approx(naive_hit_at_k(img, txt, g, kk))
        assert m[f"group/i2t/R@{kk}"] >= m[f"exact/i2t/R@{kk}"]
    assert m["exact/rsum"] == pytest.approx(
        sum(m[f"exact/{d}/R@{kk}"] for d in ("i2t", "t2i") for kk in (1, 5))
    )


def test_perfect_embeddings_score_100() -> None:
    emb = np.eye(5, dtype=np.float32)
    m = retrieval_metrics(emb, emb, None, ks=(1,))
    assert m["exact/i2t/R@1"] == m["exact/t2i/R@1"] == 100.0 and "group/i2t/R@1" not in m
