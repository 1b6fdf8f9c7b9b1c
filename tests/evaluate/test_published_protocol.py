"""The published retrieval protocol: diagonal ground truth, R@1/5/10 both ways, clip / dot / cosine.

The oracle is the published script's own procedure written naively: the N x N matrix, then
``topk`` along each axis and "is the diagonal index among them".
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lexray.evaluate.protocol import RetrievalConfig, bidirectional_retrieval, published_retrieval


def _oracle(img: np.ndarray, txt: np.ndarray, similarity: str, logit_scale: float, ks=(1, 5, 10)):
    i, t = torch.tensor(img), torch.tensor(txt)
    if similarity == "cosine":
        i, t = torch.nn.functional.normalize(i, dim=-1), torch.nn.functional.normalize(t, dim=-1)
    s = i @ t.T * (math.exp(logit_scale) if similarity == "clip" else 1.0)
    gt = torch.arange(len(s))
    out = {}
    for name, dim in (("image_to_report", 1), ("report_to_image", 0)):
        out[name] = {}
        for k in ks:
            top = s.topk(min(k, len(s)), dim=dim).indices
            top = top if dim == 1 else top.T
            out[name][f"R@{k}"] = 100.0 * (top == gt[:, None]).any(1).float().mean().item()
    return out


@pytest.mark.parametrize("similarity", ["clip", "dot", "cosine"])
def test_matches_the_published_topk_procedure(similarity):
    rng = np.random.default_rng(0)
    # Raw features with very different norms, so cosine ranks differently from dot.
    img = rng.normal(size=(40, 8)).astype(np.float32) * rng.uniform(0.1, 5, size=(40, 1)).astype(np.float32)
    txt = (img + rng.normal(size=(40, 8)) * 2).astype(np.float32) * rng.uniform(0.1, 5, size=(40, 1)).astype(
        np.float32
    )
    ours = published_retrieval(img, txt, similarity, logit_scale=math.log(1 / 0.07), block_rows=7)
    expected = _oracle(img, txt, similarity, math.log(1 / 0.07))
    for direction in ("image_to_report", "report_to_image"):
        for k in (1, 5, 10):
            assert ours[direction][f"R@{k}"] == pytest.approx(expected[direction][f"R@{k}"], abs=1e-9)
    assert ours["num_queries"] == 40 and ours["similarity"] == similarity
    # clip and dot rank identically; cosine does not, on these features.
    if similarity != "cosine":
        other = published_retrieval(img, txt, "dot" if similarity == "clip" else "clip", logit_scale=2.0)
        assert other["image_to_report"] == ours["image_to_report"]
    else:
        assert ours != published_retrieval(img, txt, "dot")


def test_duplicates_are_not_merged_and_min_n_is_used():
    txt = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=np.float32)  # reports 0 and 1 identical
    img = np.array([[1.0, 0.0], [1.0, 0.0]], dtype=np.float32)
    out = published_retrieval(img, txt, "dot")
    assert out["num_queries"] == 2
    # A tie with an identical twin is resolved in favour of the pair (rank = 1 + strictly greater).
    assert out["image_to_report"]["R@1"] == 100.0
    with pytest.raises(ValueError, match="logit_scale"):
        published_retrieval(img, txt, "clip")
    with pytest.raises(ValueError, match="similarity"):
        published_retrieval(img, txt, "euclid")


def test_bidirectional_retrieval_reports_the_published_protocol_per_image():
    rng = np.random.default_rng(1)
    texts = rng.normal(size=(5, 6)).astype(np.float32)
    image_study = np.array([0, 0, 1, 2, 3, 4, 4])  # studies 0 and 4 have two images each
    images = (texts[image_study] + rng.normal(size=(7, 6)) * 0.8).astype(np.float32)
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    reports = ["a", "b", "c", "d", "e"]
    cfg = RetrievalConfig(levels=("study",), modes=("exact",), published=("cosine", "dot"))
    with pytest.raises(ValueError, match="raw"):
        bidirectional_retrieval(unit(images), image_study, unit(texts), reports, cfg)
    res = bidirectional_retrieval(
        unit(images),
        image_study,
        unit(texts),
        reports,
        cfg,
        raw_features={"image": images, "text": texts, "logit_scale": 0.0},
    )
    # One row per image, its study's report repeated: a 7 x 7 diagonal protocol.
    for sim in ("cosine", "dot"):
        expected = published_retrieval(images, texts[image_study], sim)
        for direction, key in (("image_to_text", "image_to_report"), ("text_to_image", "report_to_image")):
            got = res[f"published/{sim}/{direction}"]
            assert got["n_queries"] == 7
            assert {k: v for k, v in got.items() if k != "n_queries"} == {
                f"hit@{k}": v for k, v in ((int(r[2:]), v) for r, v in expected[key].items())
            }
