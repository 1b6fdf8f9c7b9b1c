"""One evaluation run: embed a manifest split with a model and compute every requested metric.

Reads studies (``lexray.data.manifest``), embeds reports and images through the
:class:`~lexray.evaluate.embedder.EmbeddingModel` protocol, then computes retrieval metrics, retrieval
as report generation (corpus: by default the train split), style robustness and, when a 5x200 label
file is given, zero-shot classification. Writes ``metrics.json``, ``metrics.md``, PNG plots,
``generated.jsonl``, ``skipped.jsonl`` and the resolved ``config.yaml`` into the output directory.

Studies without report text or without a readable image are skipped, counted and listed with the
reason in ``skipped.jsonl``; the run never dies on one bad record.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lexray.config import save_config
from lexray.data.study import Study, TextField, resolve_path
from lexray.embedding import EmbeddingModel, embed_safely
from lexray.evaluate.generation import GenerationConfig, retrieval_as_generation
from lexray.evaluate.protocol import (
    RetrievalConfig,
    bidirectional_retrieval,
    published_raw_features,
    study_image_embeddings,
)
from lexray.evaluate.robustness import style_robustness
from lexray.ranking import retrieval_ranks, summarize_ranks

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RobustnessConfig:
    """Style robustness: variant queries vs original queries."""

    styles: tuple[str, ...] = (
        "shorthand",
        "impression_only",
        "expanded",
    )  # variant styles to test ((): skip)
    variants: str = ""  # a variant store (dir or .jsonl) with accepted variants; "" renders rule styles here
    seed: int = 0  # seed for rule-rendered variants


@dataclass(frozen=True)
class ZeroShotConfig:
    """Zero-shot classification on a 5x200-style label file (``lexray evaluate build-5x200`` output)."""

    labels: str = ""  # CSV with an image path column and "label"; "" skips zero-shot
    path_column: str = "Path"  # column holding image paths
    image_root: str = ""  # base for relative paths ("" = the CSV's folder)


@dataclass(frozen=True)
class EvaluateConfig:
    """A full evaluation run."""

    split: str = "test"  # manifest split to evaluate
    corpus_split: str = "train"  # split of the corpus manifest retrieved from for report generation
    text_field: TextField = "report_text"  # Study text that is embedded and compared
    batch_size: int = 32  # embedding batch size
    max_studies: int = 0  # evaluate only the first N studies of the split (0: all)
    image_root: str = ""  # base for relative image paths ("" = the manifest's folder)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)  # retrieval protocols
    generation: GenerationConfig = field(default_factory=GenerationConfig)  # retrieval as report generation
    run_generation: bool = True  # compute retrieval-as-generation metrics
    robustness: RobustnessConfig = field(default_factory=RobustnessConfig)  # style robustness
    zeroshot: ZeroShotConfig = field(default_factory=ZeroShotConfig)  # zero-shot classification
    # Study.extra key whose equal values count as a hit (e.g. phantom_findings: the same-findings protocol);
    # "" = not computed. Scored on the same study embeddings as the exact protocol.
    group_key: str = ""


def _variant_texts(
    studies: Sequence[Study], config: RobustnessConfig, text_field: str
) -> dict[str, tuple[list[str], list[int]]]:
    """style -> (variant texts, study indices) from a variant store or rendered by the rule styles."""
    out: dict[str, tuple[list[str], list[int]]] = {s: ([], []) for s in config.styles}
    index = {st.study_id: i for i, st in enumerate(studies)}
    if config.variants:
        from lexray.variants.store import VariantStore

        for rec in VariantStore(config.variants).iter_records():
            if rec.style in out and rec.kind == "equivalent" and rec.accepted and rec.study_id in index:
                texts, idx = out[rec.style]
                if index[rec.study_id] not in idx:  # one variant per study and style (first in the store)
                    texts.append(rec.text)
                    idx.append(index[rec.study_id])
        return out
    from lexray.variants.rules import render_rule_style

    for style in config.styles:
        texts, idx = out[style]
        for i, st in enumerate(studies):
            text, reason = render_rule_style(st, style, config.seed)
            if not reason and text.strip() and text.strip() != st.text(text_field).strip():
                texts.append(text)
                idx.append(i)
    return out


def run_evaluation(
    model: EmbeddingModel,
    studies: Sequence[Study],
    out_dir: str | Path,
    config: EvaluateConfig = EvaluateConfig(),
    corpus: Sequence[Study] | None = None,
    image_root: str | Path = ".",
    labeler: Callable[[str], Any] | None = None,
    progress: bool = True,
    model_name: str = "",
) -> dict[str, Any]:
    """Evaluate ``model`` on the ``config.split`` studies and write the run directory.

    Args:
        model: an embedding model (``lexray.clip.DualEncoder`` or anything with the same two methods).
        studies: all studies of the manifest (the split is selected here).
        out_dir: run directory (created).
        config: what to compute.
        corpus: studies to retrieve reports from (their ``config.corpus_split``); default ``studies``.
        image_root: base for relative image paths when ``config.image_root`` is empty.
        labeler: CheXpert labeler for the report metrics (default ``lexray.findings.get_labeler()``).
        progress: progress bars.
        model_name: recorded in metrics.json.

    Returns:
        The metrics written to ``metrics.json``.
    """
    from lexray.evaluate.report import write_report

    t0 = time.time()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_config(config, out)
    root = Path(config.image_root or image_root)
    skipped: list[dict[str, str]] = []

    chosen = [s for s in studies if s.split == config.split]
    if not chosen:
        splits = sorted({s.split for s in studies})
        raise ValueError(f"no studies in split {config.split!r}; the manifest has splits {splits}")
    if config.max_studies:
        chosen = chosen[: config.max_studies]
    kept: list[Study] = []
    for st in chosen:
        if not st.text(config.text_field).strip():
            skipped.append({"study_id": st.study_id, "reason": f"empty {config.text_field}"})
        elif not st.images:
            skipped.append({"study_id": st.study_id, "reason": "no images"})
        else:
            kept.append(st)
    image_paths = [str(im.resolve(root)) for st in kept for im in st.images]
    image_study = np.array([i for i, st in enumerate(kept) for _ in st.images], dtype=np.int64)
    log.info("evaluating %d studies (%d images) of split %r", len(kept), len(image_paths), config.split)

    img_emb, failed = embed_safely(
        model.embed_images, image_paths, config.batch_size, progress, desc="embedding images"
    )
    for idx, reason in failed:
        skipped.append(
            {"study_id": kept[image_study[idx]].study_id, "image": image_paths[idx], "reason": reason}
        )
    ok = np.ones(len(image_paths), dtype=bool)
    ok[[i for i, _ in failed]] = False
    img_emb, image_study = img_emb[ok], image_study[ok]
    # Studies whose every image failed leave the evaluation (their images are listed in skipped.jsonl).
    with_image = np.bincount(image_study, minlength=len(kept)) > 0
    remap = np.cumsum(with_image) - 1
    kept = [st for st, keep in zip(kept, with_image, strict=True) if keep]
    image_study = remap[image_study]
    with open(out / "skipped.jsonl", "w", encoding="utf-8") as f:
        for row in skipped:
            f.write(json.dumps(row) + "\n")
    if skipped:
        log.warning("%d records skipped (reasons in %s)", len(skipped), out / "skipped.jsonl")
    if not kept:
        raise ValueError(
            f"no study of split {config.split!r} has a readable image and a report (see {out}/skipped.jsonl)"
        )
    texts = [st.text(config.text_field) for st in kept]
    txt_emb = np.asarray(model.embed_texts(texts, config.batch_size), dtype=np.float32)

    metrics: dict[str, Any] = {
        "model": model_name,
        "split": config.split,
        "n_studies": len(kept),
        "n_images": int(ok.sum()),
        "n_skipped": len(skipped),
        "protocol": {
            "ties": config.retrieval.ties,
            "hit@k": "share of queries whose first positive is within the top k (CXR papers' Recall@K)",
            "recall@k": "mean share of a query's positives within the top k (reported when queries have several)",
            "study level": "mean image embedding per study vs one report per study",
            "dedup": "a report identical after normalisation to the true one counts as a hit",
        },
    }
    raw = None
    if any(sim != "cosine" for sim in config.retrieval.published):  # clip/dot score raw features
        ok_paths = [p for p, good in zip(image_paths, ok, strict=True) if good]
        raw = published_raw_features(model, ok_paths, texts, config.batch_size)
    metrics["retrieval"] = bidirectional_retrieval(
        img_emb, image_study, txt_emb, texts, config.retrieval, progress=progress, raw_features=raw
    )
    study_img = study_image_embeddings(img_emb, image_study, len(kept))
    if config.group_key:
        metrics["retrieval_same_group"] = _same_group_retrieval(kept, study_img, txt_emb, config)

    if config.run_generation:
        pool = [s for s in (corpus if corpus is not None else studies) if s.split == config.corpus_split]
        pool = [s for s in pool if s.text(config.text_field).strip()]
        if not pool:
            log.warning(
                "no %r studies with text to retrieve reports from; generation skipped", config.corpus_split
            )
            metrics["generation"] = {"unavailable": f"empty corpus split {config.corpus_split!r}"}
        else:
            corpus_texts = [s.text(config.text_field) for s in pool]
            corpus_emb = np.asarray(model.embed_texts(corpus_texts, config.batch_size), dtype=np.float32)
            q = np.arange(len(kept))
            gen, generated = retrieval_as_generation(
                study_img[q],
                [texts[i] for i in q],
                corpus_emb,
                corpus_texts,
                config.generation,
                query_ids=[kept[i].study_id for i in q],
                corpus_ids=[s.study_id for s in pool],
                labeler=labeler,
                progress=progress,
            )
            gen["corpus"] = {"split": config.corpus_split, "n": len(pool)}
            metrics["generation"] = gen
            with open(out / "generated.jsonl", "w", encoding="utf-8") as f:
                for i, text in zip(q, generated, strict=True):
                    f.write(json.dumps({"study_id": kept[i].study_id, "generated": text}) + "\n")

    if config.robustness.styles:
        variants = _variant_texts(kept, config.robustness, config.text_field)
        emb_by_style = {}
        for style, (vt, vi) in variants.items():
            pairs = list(zip(vt, vi, strict=True))
            e = (
                model.embed_texts([t for t, _ in pairs], config.batch_size)
                if pairs
                else np.zeros((0, txt_emb.shape[1]))
            )
            emb_by_style[style] = (
                np.asarray(e, dtype=np.float32),
                np.array([i for _, i in pairs], dtype=np.int64),
            )
        metrics["robustness"] = style_robustness(
            study_img,
            np.arange(len(kept)),
            txt_emb,
            emb_by_style,
            ks=config.retrieval.ks,
            ties=config.retrieval.ties,
            block_bytes=config.retrieval.block_mb * 2**20,
        )

    if config.zeroshot.labels:
        metrics["zeroshot"] = _zero_shot(model, config)

    metrics["seconds"] = round(time.time() - t0, 1)
    write_report(metrics, out)
    return metrics


def _same_group_retrieval(
    kept: Sequence[Study], study_img: np.ndarray, txt_emb: np.ndarray, config: EvaluateConfig
) -> dict[str, Any]:
    """hit@k both ways where any study whose ``extra[config.group_key]`` equals the query's is a hit."""
    groups = [st.extra.get(config.group_key, "") for st in kept]
    missing = sum(not g for g in groups)
    if missing:
        return {"unavailable": f"{missing} of {len(kept)} studies have no extra[{config.group_key!r}]"}
    g = np.unique(np.asarray(groups, dtype=object).astype(str), return_inverse=True)[1]
    out: dict[str, Any] = {"key": config.group_key, "groups": int(g.max()) + 1}
    for direction, (q, k) in (
        ("image_to_text", (study_img, txt_emb)),
        ("text_to_image", (txt_emb, study_img)),
    ):
        ranks = retrieval_ranks(q, k, g, g, ties=config.retrieval.ties)
        out[direction] = summarize_ranks(ranks, config.retrieval.ks)
    return out


def _zero_shot(model: EmbeddingModel, config: EvaluateConfig) -> dict[str, Any]:
    import pandas as pd

    from lexray.evaluate.zeroshot import DEFAULT_PROMPTS, zero_shot_classify

    zs = config.zeroshot
    df = pd.read_csv(zs.labels)
    for col in (zs.path_column, "label"):
        if col not in df.columns:
            raise ValueError(
                f"{zs.labels}: needs columns {zs.path_column!r} and 'label' (got {list(df.columns)})"
            )
    root = Path(zs.image_root or Path(zs.labels).parent)
    paths = [str(resolve_path(p, root)) for p in df[zs.path_column].astype(str)]
    classes = sorted(set(df["label"]))
    prompts = {c: DEFAULT_PROMPTS.get(c, (f"{c}.",)) for c in classes}
    return zero_shot_classify(model, paths, list(df["label"]), prompts, config.batch_size)
