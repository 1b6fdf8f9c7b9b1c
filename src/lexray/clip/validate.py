"""Validation retrieval for training: embed held-out pairs, rank both ways, score with :mod:`lexray.ranking`.

Two ground truths are reported: **exact** (only the true pair counts, the published protocol) and,
when the pairs carry a group such as the phantom findings key, **group** (any report whose group equals
the true report's counts: the fair ceiling on phantoms, where many reports render alike).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from lexray.clip.data import Pair
from lexray.clip.model import DualEncoder
from lexray.ranking import retrieval_ranks, summarize_ranks
from lexray.training.sharded import ShardedEmbedder

DIRECTIONS = ("i2t", "t2i")


def retrieval_metrics(
    image_emb: np.ndarray,
    text_emb: np.ndarray,
    groups: Sequence[str] | None = None,
    ks: Sequence[int] = (1, 5, 10),
) -> dict[str, float]:
    """hit@k (CXR "Recall@K", in %) both ways for row-aligned pairs.

    Args:
        image_emb: (N, E) L2-normalised image embeddings, row i pairs with ``text_emb[i]``.
        text_emb: (N, E) L2-normalised report embeddings.
        groups: optional (N,) labels; adds ``group/...`` metrics where any same-group key is a hit.
        ks: cut-offs.

    Returns:
        ``{"exact/i2t/R@1": ..., "exact/t2i/R@10": ..., "exact/rsum": ..., "group/i2t/R@10": ...}``;
        ``rsum`` is the sum of every R@k of both directions (the checkpoint selection score).
    """
    n = len(image_emb)
    protocols: dict[str, np.ndarray] = {"exact": np.arange(n)}
    if groups is not None:
        protocols["group"] = np.unique(
            np.asarray(list(groups), dtype=object).astype(str), return_inverse=True
        )[1]
    out: dict[str, float] = {}
    for name, g in protocols.items():
        total = 0.0
        for direction, (q, k) in zip(DIRECTIONS, ((image_emb, text_emb), (text_emb, image_emb)), strict=True):
            summary = summarize_ranks(retrieval_ranks(q, k, g, g), ks)
            for kk in ks:
                out[f"{name}/{direction}/R@{kk}"] = summary[f"hit@{kk}"]
                total += summary[f"hit@{kk}"]
            out[f"{name}/{direction}/median_rank"] = summary["median_rank"]
        out[f"{name}/rsum"] = total
    return out


class _PairEmbedder:
    """The embedding protocol over validation pairs: an "image" is a pair, embedded by its first image."""

    def __init__(self, model: DualEncoder, load_pixels: Callable[[Pair], torch.Tensor]) -> None:
        self.model, self.load_pixels = model, load_pixels

    def embed_images(self, pairs: Sequence[Pair], batch_size: int) -> np.ndarray:
        """(len(pairs), E) image embeddings of each pair's first image."""
        out = np.zeros((len(pairs), self.model.embed_dim), dtype=np.float32)
        for start in range(0, len(pairs), batch_size):
            chunk = pairs[start : start + batch_size]
            pixels = torch.stack([self.load_pixels(p) for p in chunk])  # (b, C, S, S)
            out[start : start + len(chunk)] = self.model.encode_image(pixels).float().cpu().numpy()
        return out

    def embed_texts(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        """(len(texts), E) report embeddings."""
        return self.model.embed_texts(list(texts), batch_size=batch_size)


@torch.no_grad()
def embed_pairs(
    model: DualEncoder,
    pairs: Sequence[Pair],
    load_pixels: Callable[[Pair], torch.Tensor],
    texts: Sequence[str],
    batch_size: int = 64,
    rank: int = 0,
    world: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Embed each pair's first image and its text: ((N, E), (N, E)) float32, L2-normalised.

    With ``world > 1`` every process of the launch must call it with the same pairs: each embeds a
    rank-strided share (:class:`lexray.training.ShardedEmbedder`) and all get every row back in order,
    so the metrics equal a one-process validation's.

    Args:
        model: the (unwrapped) dual encoder.
        pairs: validation pairs.
        load_pixels: pair -> preprocessed image tensor (C, S, S).
        texts: the report text of each pair.
        batch_size: images per forward pass.
        rank: this process's index in the launch.
        world: processes of the launch sharing the work.
    """
    was_training = model.training
    model.eval()
    embedder = ShardedEmbedder(_PairEmbedder(model, load_pixels), rank, world)
    images = embedder.embed_images(pairs, batch_size)
    text = embedder.embed_texts(texts, batch_size)
    model.train(was_training)
    return images, text


def evaluate_split(
    model: DualEncoder,
    manifest: str,
    split: str = "test",
    ks: Sequence[int] = (1, 5, 10),
    report_format: str = "plain",
    batch_size: int = 64,
) -> dict[str, float]:
    """Retrieval metrics of a model on one split of a manifest (first image of each study).

    When every study carries ``extra["phantom_findings"]`` the ``group/...`` metrics count any report
    whose rendered findings equal the true report's as a hit.
    """
    from lexray.clip.data import SourceConfig, load_pairs
    from lexray.data.images import load_radiograph

    pairs, _ = load_pairs(SourceConfig(manifest=manifest, split=split))
    if not pairs:
        raise ValueError(f"{manifest} has no usable pairs in split {split!r}")
    pre = model.image_tower.preprocess
    images, texts = embed_pairs(
        model,
        pairs,
        lambda p: pre(load_radiograph(p.images[0]).pixels),
        [p.text(report_format) for p in pairs],
        batch_size,
    )
    groups = [p.group for p in pairs] if all(p.group for p in pairs) else None
    metrics = retrieval_metrics(images, texts, groups, ks)
    metrics["n_pairs"] = float(len(pairs))
    return metrics
