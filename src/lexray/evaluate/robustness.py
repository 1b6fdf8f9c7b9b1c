"""Style robustness: text->image retrieval with rewritten queries vs the original queries.

For each style (shorthand, impression-only, expanded, ...) the studies that have a variant in that
style are ranked twice against the same image keys — once with the original report as query, once with
the variant — and the drop (original minus variant, in points of hit@K, and in MRR) is reported. Both
runs use exactly the same studies and keys, so the drop is the effect of the style alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from lexray.ranking import DEFAULT_KS, Ties, retrieval_ranks, summarize_ranks


def style_robustness(
    image_keys: np.ndarray,
    key_study: Sequence[int] | np.ndarray,
    original_queries: np.ndarray,
    variants: Mapping[str, tuple[np.ndarray, Sequence[int] | np.ndarray]],
    ks: Sequence[int] = DEFAULT_KS,
    ties: Ties = "pessimistic",
    block_bytes: int = 256 * 2**20,
) -> dict[str, dict]:
    """Text->image retrieval per style, original vs variant queries, and the drop.

    Args:
        image_keys: (Nk, D) image (or study-mean image) embeddings.
        key_study: (Nk,) study index of each key.
        original_queries: (Ns, D) original report embeddings, row = study index.
        variants: style -> ((Nv, D) variant report embeddings, (Nv,) their study indices).
        ks: cut-offs for hit@K.
        ties: tie rule (see :func:`lexray.ranking.retrieval_ranks`).
        block_bytes: memory for one score block.

    Returns:
        ``{style: {"n": Nv, "original": {...}, "variant": {...}, "drop": {"hit@1": points, ..., "mrr": ...}}}``.
    """
    key_study = np.asarray(key_study, dtype=np.int64)
    out: dict[str, dict] = {}
    for style, (emb, study) in variants.items():
        study = np.asarray(study, dtype=np.int64)
        if len(study) == 0:
            out[style] = {"n": 0}
            continue
        if len(emb) != len(study):
            raise ValueError(f"style {style!r}: {len(emb)} variant embeddings but {len(study)} study indices")
        orig = summarize_ranks(
            retrieval_ranks(
                original_queries[study], image_keys, study, key_study, ties=ties, block_bytes=block_bytes
            ),
            ks,
        )
        var = summarize_ranks(
            retrieval_ranks(emb, image_keys, study, key_study, ties=ties, block_bytes=block_bytes), ks
        )
        drop = {f"hit@{k}": orig[f"hit@{k}"] - var[f"hit@{k}"] for k in ks}
        drop["mrr"] = orig["mrr"] - var["mrr"]
        out[style] = {"n": int(len(study)), "original": orig, "variant": var, "drop": drop}
    return out
