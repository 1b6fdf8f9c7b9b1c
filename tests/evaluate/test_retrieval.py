"""Blockwise retrieval metrics vs a naive full-matrix oracle, hand-worked cases and the protocols."""

from __future__ import annotations

import numpy as np
import pytest

from lexray.evaluate.protocol import (
    RetrievalConfig,
    bidirectional_retrieval,
    duplicate_groups,
    normalize_report,
    study_image_embeddings,
)
from lexray.ranking import retrieval_ranks, summarize_ranks


def naive_ranks(q, k, qg, kg, ties="pessimistic", ks=()):
    """The oracle: full similarity matrix, then per query a sort with the tie rule as a sort key."""
    s = np.asarray(q, dtype=np.float64) @ np.asarray(k, dtype=np.float64).T
    ranks, hits = [], {kk: [] for kk in ks}
    for i in range(len(q)):
        pos = np.asarray(kg) == qg[i]
        # Sort by score descending; among equal scores negatives first when pessimistic.
        tie_key = pos.astype(int) if ties == "pessimistic" else (~pos).astype(int)
        order = np.lexsort((tie_key, -s[i]))
        pos_sorted = pos[order]
        ranks.append(int(np.argmax(pos_sorted)) + 1)
        for kk in ks:
            hits[kk].append(int(pos_sorted[:kk].sum()))
    return np.array(ranks), {kk: np.array(v) for kk, v in hits.items()}


def int_embeddings(rng, n, d, levels=3):
    # Small integers: every dot product is exact in float32 whatever the summation order, and ties are
    # frequent, so the oracle and the blockwise code must agree bit for bit.
    return rng.integers(-levels, levels + 1, size=(n, d)).astype(np.float32)


@pytest.mark.parametrize("ties", ["pessimistic", "optimistic"])
@pytest.mark.parametrize("block_bytes", [4 * 7, 4 * 1000, 2**20])
def test_blockwise_equals_oracle_single_positive_with_ties(ties, block_bytes):
    rng = np.random.default_rng(0)
    n, d = 83, 3
    q = int_embeddings(rng, n, d, levels=1)
    k = int_embeddings(rng, n, d, levels=1)
    k[10] = k[11]  # exact duplicate keys
    groups = np.arange(n)
    res = retrieval_ranks(q, k, groups, groups, ties=ties, block_bytes=block_bytes)
    want, _ = naive_ranks(q, k, groups, groups, ties=ties)
    np.testing.assert_array_equal(res.ranks, want)


@pytest.mark.parametrize("ties", ["pessimistic", "optimistic"])
def test_blockwise_equals_oracle_multi_positive_and_true_recall(ties):
    rng = np.random.default_rng(1)
    nq, nk, d = 60, 150, 2
    q = int_embeddings(rng, nq, d, levels=2)
    k = int_embeddings(rng, nk, d, levels=2)
    kg = rng.integers(0, 20, size=nk)
    kg[:20] = np.arange(20)  # every group has at least one key
    qg = rng.integers(0, 20, size=nq)
    ks = (1, 3, 10, 50)
    res = retrieval_ranks(q, k, qg, kg, ties=ties, recall_ks=ks, block_bytes=4 * nk * 7)
    want, want_hits = naive_ranks(q, k, qg, kg, ties=ties, ks=ks)
    np.testing.assert_array_equal(res.ranks, want)
    for kk in ks:
        np.testing.assert_array_equal(res.recall_hits[kk], want_hits[kk], err_msg=f"k={kk}")
    np.testing.assert_array_equal(res.n_positives, np.bincount(kg, minlength=20)[qg])


def test_blockwise_equals_oracle_on_random_float_embeddings():
    rng = np.random.default_rng(2)
    q = rng.normal(size=(200, 16)).astype(np.float32)
    k = q + 0.8 * rng.normal(size=q.shape).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    k /= np.linalg.norm(k, axis=1, keepdims=True)
    g = np.arange(200)
    res = retrieval_ranks(q, k, g, g, block_bytes=4 * 200 * 13)
    want, _ = naive_ranks(q, k, g, g)
    np.testing.assert_array_equal(res.ranks, want)
    m = summarize_ranks(res)
    assert m["hit@1"] == pytest.approx(100 * np.mean(want == 1))
    assert m["mrr"] == pytest.approx(np.mean(1 / want))


def test_hand_worked_case():
    # 3 queries, 3 keys in 1-D. Scores q_i * k_j:
    # q0=1: [2, 1, 2] -> positive k0 = 2, tied with k2 -> pessimistic rank 2, optimistic rank 1
    # q1=1: [2, 1, 2] -> positive k1 = 1, k0 and k2 above -> rank 3 either way
    # q2=-1: [-2, -1, -2] -> positive k2 = -2, k1 above, k0 tied -> pessimistic 3, optimistic 2
    q = np.array([[1.0], [1.0], [-1.0]], dtype=np.float32)
    k = np.array([[2.0], [1.0], [2.0]], dtype=np.float32)
    g = [0, 1, 2]
    assert retrieval_ranks(q, k, g, g).ranks.tolist() == [2, 3, 3]
    assert retrieval_ranks(q, k, g, g, ties="optimistic").ranks.tolist() == [1, 3, 2]
    m = summarize_ranks(retrieval_ranks(q, k, g, g), ks=(1, 2))
    assert m["hit@1"] == 0.0
    assert m["hit@2"] == pytest.approx(100 / 3)
    assert m["median_rank"] == 3.0
    assert m["mrr"] == pytest.approx((1 / 2 + 1 / 3 + 1 / 3) / 3)


def test_collapsed_model_gets_worst_rank_under_pessimistic_ties():
    q = np.ones((5, 4), dtype=np.float32) / 2
    g = np.arange(5)
    assert retrieval_ranks(q, q, g, g).ranks.tolist() == [5] * 5
    assert retrieval_ranks(q, q, g, g, ties="optimistic").ranks.tolist() == [1] * 5


def test_errors_name_the_problem():
    q = np.zeros((2, 3), dtype=np.float32)
    with pytest.raises(ValueError, match="no positive key"):
        retrieval_ranks(q, q, [0, 5], [0, 1])
    bad = q.copy()
    bad[1, 0] = np.nan
    with pytest.raises(ValueError, match="row 1"):
        retrieval_ranks(bad, q, [0, 1], [0, 1])
    with pytest.raises(ValueError, match="dimension"):
        retrieval_ranks(q, np.zeros((2, 4), dtype=np.float32), [0, 1], [0, 1])


def test_normalize_and_duplicate_groups():
    assert normalize_report("No acute  cardiopulmonary process.") == "no acute cardiopulmonary process"
    ids = duplicate_groups(["No acute process.", "no acute process", "Small effusion."])
    assert ids[0] == ids[1] != ids[2]


def test_study_level_mean_embedding():
    imgs = np.array([[1, 0], [0, 1], [3, 4]], dtype=np.float32)
    out = study_image_embeddings(imgs, np.array([0, 0, 1]), 3)
    np.testing.assert_allclose(out[0], [2**-0.5, 2**-0.5], rtol=1e-6)
    np.testing.assert_allclose(out[1], [0.6, 0.8], rtol=1e-6)
    np.testing.assert_array_equal(out[2], [0, 0])


def test_bidirectional_protocols_by_hand():
    # Two studies with the same normalised report; study 0 has two images.
    texts = np.array([[1, 0], [0.6, 0.8], [0, 1]], dtype=np.float32)
    reports = ["Normal chest.", "normal chest", "Effusion."]
    imgs = np.array([[0.6, 0.8], [1, 0], [1, 0], [0, 1]], dtype=np.float32)  # image 0 matches report 1
    image_study = np.array([0, 0, 1, 2])
    res = bidirectional_retrieval(imgs, image_study, texts, reports, RetrievalConfig(ks=(1, 2)))
    # image level, exact, image->text: img0 (study 0): scores [0.6, 1.0, 0.8] -> rank 3;
    # img1 (study 0): [1, .6, 0] -> 1; img2 (study 1): [1, .6, 0] -> 2; img3 (study 2): [0, .8, 1] -> 1.
    assert res["image/exact/image_to_text"]["hit@1"] == pytest.approx(50.0)
    assert res["image/exact/image_to_text"]["median_rank"] == pytest.approx(1.5)
    # dedup: reports 0 and 1 are one group, so img0 and img2 hit at rank 1.
    assert res["image/dedup/image_to_text"]["hit@1"] == pytest.approx(100.0)
    # image level text->image: report 0 has two positive images; true recall@1 = 1/2 for it.
    t2i = res["image/exact/text_to_image"]
    assert "recall@1" in t2i and t2i["recall@1"] <= t2i["hit@1"]
    assert set(res) == {
        f"{lv}/{m}/{d}"
        for lv in ("study", "image")
        for m in ("exact", "dedup")
        for d in ("image_to_text", "text_to_image")
    }


def test_studies_without_images_are_left_out():
    texts = np.eye(3, dtype=np.float32)
    imgs = np.eye(3, dtype=np.float32)[:2]
    res = bidirectional_retrieval(imgs, [0, 1], texts, ["a", "b", "c"], RetrievalConfig(levels=("study",)))
    assert res["study/exact/text_to_image"]["n_queries"] == 2
    assert res["study/exact/text_to_image"]["hit@1"] == 100.0


def test_hit_curve_matches_hit_at_k():
    res = retrieval_ranks(
        np.eye(4, dtype=np.float32)[[0, 1, 2, 3]],
        np.eye(4, dtype=np.float32)[[1, 0, 2, 3]],
        [0, 1, 2, 3],
        [0, 1, 2, 3],
    )
    m = summarize_ranks(res, ks=(1, 3), curve=True)
    assert len(m["hit_curve"]) == 3
    assert m["hit_curve"][0] == m["hit@1"] and m["hit_curve"][2] == m["hit@3"]
    assert m["hit_curve"] == sorted(m["hit_curve"])


def test_large_positive_groups_are_split_into_small_blocks():
    # One huge duplicate group: the positive budget (block_bytes / 64) forces one query per block.
    rng = np.random.default_rng(3)
    q = int_embeddings(rng, 30, 2)
    k = int_embeddings(rng, 120, 2)
    kg = np.r_[np.zeros(100, int), np.arange(1, 21)]
    qg = np.r_[np.zeros(20, int), np.arange(1, 11)]
    for block in (64 * 100, 64 * 150, 64 * 120 * 30):
        res = retrieval_ranks(q, k, qg, kg, block_bytes=block, recall_ks=(1, 5))
        want, hits = naive_ranks(q, k, qg, kg, ks=(1, 5))
        np.testing.assert_array_equal(res.ranks, want)
        np.testing.assert_array_equal(res.recall_hits[5], hits[5])


def test_dedupe_rows_merges_exactly_identical_rows():
    import torch

    from lexray.ranking import _dedupe_rows

    rng = np.random.default_rng(4)
    k = rng.normal(size=(50, 7)).astype(np.float32)
    k[[3, 9, 20]] = k[1]
    k[30] = k[31]
    k[40] = 0.0
    k[41] = -0.0  # scores like 0.0, so it is the same vector
    k[42] = k[1]
    k[42, 0] = np.nextafter(k[1, 0], np.float32(np.inf))  # differs in the last bit: a distinct vector
    uniq, key_to_u, mult = _dedupe_rows(torch.from_numpy(k))
    np.testing.assert_array_equal(uniq.numpy()[key_to_u], k + np.float32(0))
    assert len(uniq) == 50 - 3 - 1 - 1
    assert mult[key_to_u[1]] == 4 and mult[key_to_u[30]] == 2 and mult[key_to_u[40]] == 2
    assert key_to_u[42] != key_to_u[1]


def test_huge_finite_values_are_not_mistaken_for_inf():
    q = np.full((2, 4), 3e38, dtype=np.float32)  # row sums overflow float32, values are finite
    g = [0, 1]
    assert retrieval_ranks(q / 3e38, q / 3e38, g, g).ranks.tolist() == [2, 2]
    from lexray.ranking import _as_matrix

    assert _as_matrix(q, "q").shape == (2, 4)
    bad = q.copy()
    bad[1, 2] = np.inf
    with pytest.raises(ValueError, match="row 1"):
        _as_matrix(bad, "q")
