"""Bidirectional retrieval protocols: image vs study level, exact-pair vs duplicate-aware.

* **study level**: one image embedding per study (the mean of its images' embeddings, L2-normalised
  again) against one report per study: an N x N similarity.
* **image level**: image->text ranks every image against the studies' reports (its own study's report
  is the positive); text->image ranks every report against all images, where any image of its study
  is a positive (so hit@k and true recall@k differ and both are reported).
* **exact**: only the true pair counts (the published protocol). **dedup**: a retrieved report counts
  when it is identical to the true report after :func:`normalize_report` (lower case, punctuation and
  extra whitespace removed) — thousands of CXR reports read "No acute cardiopulmonary process.", and
  under the exact protocol retrieving one of their identical twins is scored as a miss.

Studies without any image are left out of both sides (logged with their count).

**published** (``RetrievalConfig.published``, the LLM2CLIP4CXR ``retrieval.py`` protocol): every image is
one row paired with its study's report, an N x N matrix of images against those N reports with the
diagonal as the only ground truth (a study's report appears once per image, and identical reports are
not merged), R@1/5/10 both ways, similarity ``clip`` (exp(logit_scale) x dot of raw features), ``dot``
or ``cosine``. A hit@K is rank <= K with rank = 1 + #{j : s_ij > s_ii} (ties in favour of the pair, as
the published script's saved ranks).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from lexray.data.study import normalize_report
from lexray.ranking import DEFAULT_KS, Ties, retrieval_ranks, summarize_ranks

log = logging.getLogger(__name__)

LEVELS = ("study", "image")
MODES = ("exact", "dedup")
DIRECTIONS = ("image_to_text", "text_to_image")


@dataclass(frozen=True)
class RetrievalConfig:
    """Which retrieval protocols to compute and how."""

    ks: tuple[int, ...] = DEFAULT_KS  # cut-offs K for hit@K (CXR "Recall@K") and true recall@K
    levels: tuple[str, ...] = LEVELS  # "study" (N x N, mean image embedding) and/or "image"
    modes: tuple[str, ...] = MODES  # "exact" (only the true pair) and/or "dedup" (identical reports count)
    ties: Ties = "pessimistic"  # negatives tied with the best positive count ahead ("optimistic": behind)
    true_recall: bool = True  # also compute true recall@K where a query has several positives
    block_mb: int = 256  # memory for one score block (rows x keys x 4 bytes)
    published: tuple[str, ...] = ()  # similarities of the published protocol (clip, dot, cosine); () = off
    published_ks: tuple[int, ...] = (1, 5, 10)  # its cut-offs


SIMILARITIES = ("clip", "dot", "cosine")


def published_raw_features(
    model: Any, images: Sequence[Any], texts: Sequence[str], batch_size: int = 32
) -> dict[str, Any]:
    """Raw (unnormalised) features and the log logit scale of a dual encoder, for the clip/dot similarities.

    Raises:
        ValueError: the model cannot give raw features (its ``embed_*`` take no ``normalize``) or has no
            ``logit_scale``.
    """
    try:
        image = model.embed_images(images, batch_size, normalize=False)
        text = model.embed_texts(texts, batch_size, normalize=False)
    except TypeError as exc:
        raise ValueError(
            f"{type(model).__name__} gives no raw features (embed_images(..., normalize=False)); "
            "use retrieval.published=[cosine]"
        ) from exc
    scale = getattr(model, "logit_scale", None)
    if scale is None:
        raise ValueError(f"{type(model).__name__} has no logit_scale; the clip similarity needs it")
    return {"image": image, "text": text, "logit_scale": float(torch.as_tensor(scale).detach().float())}


def published_retrieval(
    image_features: np.ndarray,
    text_features: np.ndarray,
    similarity: str = "clip",
    logit_scale: float | None = None,
    ks: Sequence[int] = (1, 5, 10),
    block_rows: int = 4096,
) -> dict[str, Any]:
    """The published diagonal-ground-truth protocol: row i of both matrices is one pair.

    Args:
        image_features: (N, D) image features, raw (as the model returns them) for clip and dot.
        text_features: (M, D) report features; the first ``min(N, M)`` rows of each side are used.
        similarity: ``clip`` (exp(logit_scale) * dot), ``dot`` or ``cosine`` (L2-normalised first).
        logit_scale: the model's log scale; needed by ``clip``.
        ks: cut-offs.
        block_rows: image rows scored at a time.

    Returns:
        ``{"image_to_report": {"R@1": %, ...}, "report_to_image": {...}, "num_queries": N, "similarity": ...}``
        with recalls in percent, as the published script prints them.
    """
    if similarity not in SIMILARITIES:
        raise ValueError(f"similarity {similarity!r} is unknown; use one of {', '.join(SIMILARITIES)}")
    if similarity == "clip" and logit_scale is None:
        raise ValueError("similarity 'clip' needs the model's logit_scale")
    n = min(len(image_features), len(text_features))
    img = torch.as_tensor(np.asarray(image_features[:n], dtype=np.float32))
    txt = torch.as_tensor(np.asarray(text_features[:n], dtype=np.float32))
    if similarity == "cosine":
        img, txt = torch.nn.functional.normalize(img, dim=-1), torch.nn.functional.normalize(txt, dim=-1)
    scale = float(np.exp(logit_scale)) if similarity == "clip" else 1.0
    diag = scale * (img * txt).sum(-1)  # (N,) the pairs' scores, from the same formula as the blocks
    ahead_i2t = torch.zeros(n, dtype=torch.long)  # reports scoring above image i's own
    ahead_t2i = torch.zeros(n, dtype=torch.long)  # images scoring above report j's own
    for start in range(0, n, block_rows):
        rows = slice(start, min(start + block_rows, n))
        block = scale * img[rows] @ txt.T  # (b, N)
        idx = torch.arange(rows.start, rows.stop)
        block[idx - start, idx] = diag[rows]  # the exact pair score on the diagonal
        ahead_i2t[rows] = (block > diag[rows, None]).sum(1)
        ahead_t2i += (block > diag[None, :]).sum(0)
    out: dict[str, Any] = {"num_queries": n, "similarity": similarity}
    for name, ahead in (("image_to_report", ahead_i2t), ("report_to_image", ahead_t2i)):
        out[name] = {f"R@{k}": 100.0 * float((ahead + 1 <= k).float().mean()) if n else 0.0 for k in ks}
    return out


def duplicate_groups(texts: Sequence[str]) -> np.ndarray:
    """(N,) int id per text; texts identical after :func:`normalize_report` share an id."""
    _, ids = np.unique(
        np.array([normalize_report(t) for t in texts], dtype=object).astype(str), return_inverse=True
    )
    return ids.ravel().astype(np.int64)


def study_image_embeddings(
    image_embeddings: np.ndarray, image_study: np.ndarray, n_studies: int
) -> np.ndarray:
    """(n_studies, D) mean of each study's image embeddings, L2-normalised; zero rows for studies without images."""
    image_study = np.asarray(image_study, dtype=np.int64)
    out = np.zeros((n_studies, image_embeddings.shape[1]), dtype=np.float64)
    np.add.at(out, image_study, image_embeddings.astype(np.float64))
    norm = np.linalg.norm(out, axis=1, keepdims=True)
    return (out / np.where(norm > 0, norm, 1.0)).astype(np.float32)


def bidirectional_retrieval(
    image_embeddings: np.ndarray,
    image_study: Sequence[int] | np.ndarray,
    text_embeddings: np.ndarray,
    report_texts: Sequence[str],
    config: RetrievalConfig = RetrievalConfig(),
    progress: bool = False,
    raw_features: dict[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """Retrieval metrics in both directions for each requested level and mode.

    Args:
        image_embeddings: (Ni, D) L2-normalised image embeddings.
        image_study: (Ni,) index of each image's study (a row of ``text_embeddings``).
        text_embeddings: (Ns, D) L2-normalised report embeddings, one per study.
        report_texts: (Ns,) the reports, used only to find duplicates for the "dedup" mode.
        config: protocols to compute.
        progress: show progress bars.
        raw_features: for the published clip/dot similarities, ``{"image": (Ni, D), "text": (Ns, D),
            "logit_scale": float}`` of raw features (same rows as the embeddings).

    Returns:
        ``{"study/exact/image_to_text": {"hit@1": ..., "median_rank": ..., ...}, ...}`` and, when
        ``config.published`` is set, ``{"published/cosine/image_to_text": {"hit@1": ..., "n_queries": ...}}``
        (R@K of :func:`published_retrieval`, in %).
    """
    for level in config.levels:
        if level not in LEVELS:
            raise ValueError(f"unknown retrieval level {level!r}; choose from {LEVELS}")
    for mode in config.modes:
        if mode not in MODES:
            raise ValueError(f"unknown retrieval mode {mode!r}; choose from {MODES}")
    for sim in config.published:
        if sim not in SIMILARITIES:
            raise ValueError(f"unknown published similarity {sim!r}; choose from {SIMILARITIES}")
    image_embeddings = np.asarray(image_embeddings, dtype=np.float32)
    text_embeddings = np.asarray(text_embeddings, dtype=np.float32)
    image_study = np.asarray(image_study, dtype=np.int64)
    n_studies = len(text_embeddings)
    if len(report_texts) != n_studies:
        raise ValueError(f"{n_studies} text embeddings but {len(report_texts)} report texts")
    if len(image_study) != len(image_embeddings):
        raise ValueError(f"{len(image_embeddings)} image embeddings but {len(image_study)} study indices")
    if len(image_study) and (image_study.min() < 0 or image_study.max() >= n_studies):
        raise ValueError(f"image_study holds indices outside 0..{n_studies - 1}")

    has_image = np.bincount(image_study, minlength=n_studies) > 0
    if not has_image.all():
        log.warning(
            "%d of %d studies have no image and are left out of retrieval", int((~has_image).sum()), n_studies
        )
    keep = np.flatnonzero(has_image)
    remap = np.full(n_studies, -1, dtype=np.int64)
    remap[keep] = np.arange(len(keep))
    texts = text_embeddings[keep]
    img_study = remap[image_study]
    dup = duplicate_groups([report_texts[i] for i in keep])
    study_imgs = (
        study_image_embeddings(image_embeddings, img_study, len(keep)) if "study" in config.levels else None
    )

    results: dict[str, dict[str, Any]] = {}
    block = config.block_mb * 2**20
    for level in config.levels:
        for mode in config.modes:
            group_of_study = np.arange(len(keep)) if mode == "exact" else dup
            if level == "study":
                imgs, img_groups = study_imgs, group_of_study
            else:
                imgs, img_groups = image_embeddings, group_of_study[img_study]
            txt_groups = group_of_study
            for direction in DIRECTIONS:
                if direction == "image_to_text":
                    q, qg, k, kg = imgs, img_groups, texts, txt_groups
                else:
                    q, qg, k, kg = texts, txt_groups, imgs, img_groups
                multi = np.bincount(kg).max() > 1
                name = f"{level}/{mode}/{direction}"
                res = retrieval_ranks(
                    q,
                    k,
                    qg,
                    kg,
                    ties=config.ties,
                    recall_ks=config.ks if (config.true_recall and multi) else (),
                    block_bytes=block,
                    progress=progress,
                    desc=name,
                )
                results[name] = summarize_ranks(res, config.ks, curve=True)
    for sim in config.published:
        feats = raw_features or {}
        if sim != "cosine" and not feats:
            raise ValueError(
                f"published similarity {sim!r} needs the model's raw (unnormalised) features and logit "
                "scale; pass raw_features, or use cosine, which the normalised embeddings give exactly"
            )
        images = feats.get("image", image_embeddings)
        reports = feats.get("text", text_embeddings)
        # One row per image, paired with its own study's report (the published CSV layout).
        pub = published_retrieval(
            images, reports[image_study], sim, feats.get("logit_scale"), config.published_ks
        )
        for direction, key in zip(DIRECTIONS, ("image_to_report", "report_to_image"), strict=True):
            results[f"published/{sim}/{direction}"] = {
                **{f"hit@{k}": pub[key][f"R@{k}"] for k in config.published_ks},
                "n_queries": float(pub["num_queries"]),
            }
    return results
