"""Zero-shot classification with prompt ensembles: class embedding = mean of its prompts' embeddings.

Each class is represented by several prompts (the ensemble); their text embeddings are averaged and
L2-normalised again (CLIP's recipe). Images are scored by cosine similarity to each class embedding;
accuracy takes the arg-max, AUROC is one-vs-rest per class and macro-averaged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from lexray.evaluate.embedder import EmbeddingModel

# Prompt ensembles for the five 5x200 classes, written in report style (the text tower was trained on
# reports, not on "a photo of" captions). Severity / location / subtype variations as in GLoRIA.
DEFAULT_PROMPTS: dict[str, tuple[str, ...]] = {
    "Atelectasis": (
        "Atelectasis.",
        "Mild bibasilar atelectasis.",
        "Subsegmental atelectasis at the left lung base.",
        "Minimal linear atelectasis in the right lower lobe.",
        "Plate-like atelectasis in the left mid lung.",
    ),
    "Cardiomegaly": (
        "Cardiomegaly.",
        "The heart is enlarged.",
        "Mild cardiomegaly.",
        "Moderate enlargement of the cardiac silhouette.",
        "Severe cardiomegaly is unchanged.",
    ),
    "Consolidation": (
        "Consolidation.",
        "Right lower lobe consolidation.",
        "Patchy consolidation in the left lower lobe.",
        "Focal consolidation in the right upper lobe concerning for pneumonia.",
        "Dense retrocardiac consolidation.",
    ),
    "Edema": (
        "Pulmonary edema.",
        "Mild pulmonary edema.",
        "Moderate interstitial edema.",
        "Vascular congestion with mild interstitial pulmonary edema.",
        "Severe pulmonary edema with bilateral perihilar opacities.",
    ),
    "Pleural Effusion": (
        "Pleural effusion.",
        "Small left pleural effusion.",
        "Moderate right pleural effusion.",
        "Small bilateral pleural effusions.",
        "Large right pleural effusion with compressive atelectasis.",
    ),
}


def class_embeddings(
    model: EmbeddingModel, prompts: Mapping[str, Sequence[str]], batch_size: int = 32
) -> np.ndarray:
    """(C, D) one L2-normalised embedding per class: the mean of its prompts' embeddings."""
    names = list(prompts)
    flat = [p for n in names for p in prompts[n]]
    if any(len(prompts[n]) == 0 for n in names):
        raise ValueError(
            f"every class needs at least one prompt; empty: {[n for n in names if not prompts[n]]}"
        )
    emb = np.asarray(model.embed_texts(flat, batch_size), dtype=np.float64)  # (P, D)
    out, i = [], 0
    for n in names:
        m = emb[i : i + len(prompts[n])].mean(axis=0)
        out.append(m / max(np.linalg.norm(m), 1e-12))
        i += len(prompts[n])
    return np.stack(out).astype(np.float32)


def binary_auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve for binary ``labels`` (1 positive) and ``scores``; ties count one half.

    The Mann-Whitney statistic from average ranks; uses ``sklearn.metrics.roc_auc_score`` when installed
    (they agree; the fallback keeps the core free of scikit-learn).
    """
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"AUROC needs both classes; got {n_pos} positives and {n_neg} negatives")
    try:
        from sklearn.metrics import roc_auc_score
    except ImportError:
        return _auroc_ranks(labels, scores, n_pos, n_neg)
    return float(roc_auc_score(labels, scores))


def _auroc_ranks(labels: np.ndarray, scores: np.ndarray, n_pos: int, n_neg: int) -> float:
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores), dtype=np.float64)
    # Average 1-based rank over each run of equal scores.
    start = 0
    while start < len(scores):
        end = start
        while end + 1 < len(scores) and sorted_scores[end + 1] == sorted_scores[start]:
            end += 1
        ranks[order[start : end + 1]] = (start + end) / 2 + 1
        start = end + 1
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def zero_shot_metrics(
    scores: np.ndarray, labels: Sequence[int] | np.ndarray, class_names: Sequence[str]
) -> dict:
    """Accuracy (arg-max, %), per-class and macro one-vs-rest AUROC from (N, C) scores and (N,) class indices."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if scores.shape != (len(labels), len(class_names)):
        raise ValueError(
            f"scores shape {scores.shape} does not match {len(labels)} labels x {len(class_names)} classes"
        )
    pred = scores.argmax(axis=1)
    per_class = {n: binary_auroc(labels == c, scores[:, c]) for c, n in enumerate(class_names)}
    return {
        "accuracy": float(100.0 * np.mean(pred == labels)),
        "auroc_macro": float(np.mean(list(per_class.values()))),
        "auroc": per_class,
        "n": int(len(labels)),
    }


def zero_shot_classify(
    model: EmbeddingModel,
    images: Sequence,
    labels: Sequence[str],
    prompts: Mapping[str, Sequence[str]] = DEFAULT_PROMPTS,
    batch_size: int = 32,
) -> dict:
    """Zero-shot classification of ``images`` into the classes of ``prompts``.

    Args:
        model: anything with ``embed_images`` / ``embed_texts`` (see :class:`EmbeddingModel`).
        images: what ``model.embed_images`` accepts (paths or arrays).
        labels: true class name of each image (a key of ``prompts``).
        prompts: class name -> prompt ensemble.
        batch_size: embedding batch size.

    Returns:
        ``{"accuracy": %, "auroc_macro": ..., "auroc": {class: ...}, "n": N}``.
    """
    names = list(prompts)
    unknown = sorted(set(labels) - set(names))
    if unknown:
        raise ValueError(f"labels {unknown} have no prompts; prompt classes are {names}")
    cls = class_embeddings(model, prompts, batch_size)  # (C, D)
    img = np.asarray(model.embed_images(images, batch_size), dtype=np.float32)  # (N, D)
    y = np.array([names.index(lab) for lab in labels])
    return zero_shot_metrics(img @ cls.T, y, names)
