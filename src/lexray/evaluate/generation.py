"""Retrieval as report generation, and the report metrics that score it.

For each query image the report of the most similar corpus entry (by default the train split) is the
"generated" report — how the published GREEN scores of LLM-encoder CLIP models were obtained. With
``top_k > 1`` the top reports are fused: ``consensus`` keeps the retrieved report that agrees most with
the others (similarity-weighted), ``concat`` joins their distinct sentences.

Metrics: BLEU-1..4 (sacrebleu, corpus level, 13a tokenisation, lower-cased as in R2Gen-style papers),
ROUGE-L (rouge-score, mean F-measure), CheXpert-label F1 (lexray's labeler on both reports; micro over
all observation decisions, macro over observations with any support), and optionally BERTScore,
RadGraph F1 and GREEN, which need extra packages and their own weights; when those are missing the
metric is reported as unavailable with the reason, and the run goes on.
"""

from __future__ import annotations

import importlib
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from lexray.errors import LexrayError
from lexray.evaluate.green import JudgeConfig, green_scores
from lexray.evaluate.protocol import normalize_report

log = logging.getLogger(__name__)

Fusion = Literal["top1", "consensus", "concat"]


class MetricUnavailable(LexrayError, RuntimeError):
    """An optional metric cannot run here (package not installed, or its weights not reachable)."""


@dataclass(frozen=True)
class GenerationConfig:
    """Retrieval-as-generation and report-metric settings."""

    top_k: int = 1  # corpus reports retrieved per query; fused when > 1
    fusion: Fusion = (
        "top1"  # "top1", "consensus" (most agreed-upon of the top k) or "concat" (distinct sentences)
    )
    exclude_same_study: bool = True  # never retrieve the query's own study when it is in the corpus
    lowercase: bool = True  # lower-case before BLEU (ROUGE-L always lower-cases)
    uncertain_as_positive: bool = False  # CheXpert F1: count "uncertain" labels as positive
    bertscore: bool = False  # compute BERTScore (extra report-metrics, weights of bertscore_model)
    bertscore_model: str = "distilbert-base-uncased"  # BERTScore model id or local path
    radgraph: bool = False  # compute RadGraph F1 (package radgraph and its weights)
    green: Literal["off", "judge", "model"] = (
        "off"  # GREEN via an OpenAI-compatible judge or the green-score model
    )
    green_model: str = "StanfordAIMI/GREEN-radllama2-7b"  # model for green="model"
    judge: JudgeConfig = field(default_factory=JudgeConfig)  # endpoint for green="judge"
    block_mb: int = 256  # memory for one similarity block during retrieval


def retrieve_top_k(
    queries: np.ndarray,
    corpus: np.ndarray,
    k: int,
    query_ids: Sequence[str] | None = None,
    corpus_ids: Sequence[str] | None = None,
    block_bytes: int = 256 * 2**20,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k corpus rows for every query by dot product, blockwise; equal ids are excluded.

    Returns:
        (indices (Nq, k) int64, scores (Nq, k) float32), best first; ties broken by lower corpus index.
    """
    q = torch.as_tensor(np.asarray(queries, dtype=np.float32))
    c = torch.as_tensor(np.asarray(corpus, dtype=np.float32))
    if k < 1 or k > len(c):
        raise ValueError(f"k must be in 1..{len(c)} (corpus size), got {k}")
    exclude = query_ids is not None and corpus_ids is not None
    if exclude:
        labels = {v: i for i, v in enumerate(dict.fromkeys([*corpus_ids, *query_ids]))}
        qi = torch.as_tensor([labels[v] for v in query_ids])
        ci = torch.as_tensor([labels[v] for v in corpus_ids])
    rows = max(1, block_bytes // (4 * len(c)))
    idx = np.empty((len(q), k), dtype=np.int64)
    val = np.empty((len(q), k), dtype=np.float32)
    for s in range(0, len(q), rows):
        scores = q[s : s + rows] @ c.T  # (B, Nc)
        if exclude:
            scores = scores.masked_fill(qi[s : s + rows, None] == ci[None, :], -torch.inf)
        order = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :k]
        idx[s : s + rows] = order.numpy()
        val[s : s + rows] = torch.gather(scores, 1, order).numpy()
    return idx, val


_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def fuse_reports(
    indices: np.ndarray,
    scores: np.ndarray,
    corpus_texts: Sequence[str],
    corpus_emb: np.ndarray,
    fusion: Fusion,
) -> list[str]:
    """One report per query from its retrieved corpus rows.

    Args:
        indices: (Nq, k) retrieved corpus rows, best first.
        scores: (Nq, k) their similarity to the query.
        corpus_texts: corpus reports.
        corpus_emb: (Nc, D) corpus text embeddings (consensus compares the retrieved reports).
        fusion: "top1", "consensus" or "concat".
    """
    if fusion == "top1" or indices.shape[1] == 1:
        return [corpus_texts[i] for i in indices[:, 0]]
    out = []
    for row, sc in zip(indices, scores, strict=True):
        if fusion == "consensus":
            e = corpus_emb[row].astype(np.float64)  # (k, D)
            w = np.exp(sc - sc.max())
            agree = (e @ e.T) @ w - w  # drop self-similarity weight (unit vectors)
            out.append(corpus_texts[row[int(np.argmax(agree))]])
        elif fusion == "concat":
            seen, parts = set(), []
            for i in row:
                for sent in _SENTENCE.split(corpus_texts[i].strip()):
                    key = normalize_report(sent)
                    if key and key not in seen:
                        seen.add(key)
                        parts.append(sent)
            out.append(" ".join(parts))
        else:
            raise ValueError(f"unknown fusion {fusion!r}; choose top1, consensus or concat")
    return out


def bleu_scores(
    hypotheses: Sequence[str], references: Sequence[str], lowercase: bool = True
) -> dict[str, float]:
    """Corpus BLEU-1..4 in [0, 1] with sacrebleu (13a tokenisation, exponential smoothing)."""
    from sacrebleu.metrics import BLEU

    _check_pairs(hypotheses, references)
    out = {}
    for n in range(1, 5):
        bleu = BLEU(max_ngram_order=n, lowercase=lowercase, effective_order=False)
        out[f"bleu{n}"] = bleu.corpus_score(list(hypotheses), [list(references)]).score / 100.0
    return out


def rouge_l(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Mean ROUGE-L F-measure in [0, 1] with Google's rouge-score."""
    from rouge_score import rouge_scorer

    _check_pairs(hypotheses, references)
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    return float(
        np.mean([scorer.score(r, h)["rougeL"].fmeasure for h, r in zip(hypotheses, references, strict=True)])
    )


def _check_pairs(hypotheses: Sequence[str], references: Sequence[str]) -> None:
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    if not hypotheses:
        raise ValueError("no report pairs to score")


def _label_all(labeler: Any, texts: Sequence[str]) -> list[dict[str, str]]:
    if hasattr(labeler, "pipe"):
        return [r.observations for r in labeler.pipe(list(texts))]
    return [labeler(t).observations for t in texts]


def chexpert_f1(
    hypotheses: Sequence[str],
    references: Sequence[str],
    labeler: Callable[[str], Any] | None = None,
    uncertain_as_positive: bool = False,
    observations: Sequence[str] | None = None,
) -> dict[str, Any]:
    """CheXpert-label F1 between generated and reference reports, labelled by lexray's labeler.

    An observation is positive when labelled "positive" (and "uncertain" with ``uncertain_as_positive``).
    Micro F1 pools true/false positives over all observations; macro F1 averages the per-observation F1
    over observations that are positive in at least one reference or hypothesis (others have no F1 and
    are reported as None).

    Returns:
        ``{"f1_micro", "f1_macro", "precision_micro", "recall_micro", "f1": {observation: f1 | None},
        "support": {observation: reference positives}}``.
    """
    _check_pairs(hypotheses, references)
    if labeler is None:
        from lexray.findings import get_labeler

        labeler = get_labeler()
    if observations is None:
        from lexray.findings import CHEXPERT_OBSERVATIONS

        observations = CHEXPERT_OBSERVATIONS
    pos = {"positive", "uncertain"} if uncertain_as_positive else {"positive"}
    hyp = np.array([[o.get(name) in pos for name in observations] for o in _label_all(labeler, hypotheses)])
    ref = np.array([[o.get(name) in pos for name in observations] for o in _label_all(labeler, references)])
    tp = (hyp & ref).sum(axis=0)
    fp = (hyp & ~ref).sum(axis=0)
    fn = (~hyp & ref).sum(axis=0)
    per: dict[str, float | None] = {}
    for i, name in enumerate(observations):
        denom = 2 * tp[i] + fp[i] + fn[i]
        per[name] = float(2 * tp[i] / denom) if denom else None
    defined = [v for v in per.values() if v is not None]
    ttp, tfp, tfn = int(tp.sum()), int(fp.sum()), int(fn.sum())
    return {
        "f1_micro": float(2 * ttp / (2 * ttp + tfp + tfn)) if (ttp + tfp + tfn) else 0.0,
        "precision_micro": float(ttp / (ttp + tfp)) if (ttp + tfp) else 0.0,
        "recall_micro": float(ttp / (ttp + tfn)) if (ttp + tfn) else 0.0,
        "f1_macro": float(np.mean(defined)) if defined else 0.0,
        "f1": per,
        "support": {name: int(ref[:, i].sum()) for i, name in enumerate(observations)},
    }


def _report_metric_package(module: str, name: str, metric: str, package: str, also: str = "") -> Any:
    """``module.name`` from the optional package behind a report metric, or MetricUnavailable naming the
    install line (also when an installed version lacks ``name``, so an incompatible release degrades
    like a missing one).

    Args:
        module: the package's import name.
        name: the function or class the metric calls.
        metric: the metric as the message names it.
        package: the PyPI name the ``report-metrics`` extra installs.
        also: what else the metric needs, appended to the message.
    """
    install = f"`pip install 'lexray[report-metrics]'` ({package}){also}"
    try:
        return getattr(importlib.import_module(module), name)
    except ImportError as exc:
        raise MetricUnavailable(f"{metric} needs {install}") from exc
    except AttributeError as exc:
        raise MetricUnavailable(
            f"{metric} needs {module}.{name}, which the installed {package} lacks: {install}"
        ) from exc


def bertscore(hypotheses: Sequence[str], references: Sequence[str], model: str) -> dict[str, float]:
    """BERTScore F1 (mean) with the ``bert-score`` package.

    Raises:
        MetricUnavailable: package not installed or the model's weights cannot be loaded (offline).
    """
    score = _report_metric_package("bert_score", "score", "BERTScore", "bert-score")
    try:
        _, _, f1 = score(list(hypotheses), list(references), model_type=model, verbose=False)
    except (OSError, ValueError, KeyError) as exc:
        raise MetricUnavailable(f"BERTScore model {model!r} could not be loaded (offline?): {exc}") from exc
    return {"bertscore_f1": float(f1.mean())}


def radgraph_f1(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """RadGraph F1 (partial reward) with the ``radgraph`` package.

    Raises:
        MetricUnavailable: package not installed or its weights cannot be downloaded.
    """
    f1_radgraph = _report_metric_package(
        "radgraph", "F1RadGraph", "RadGraph F1", "radgraph", " and its weights (network on first use)"
    )
    try:
        scorer = f1_radgraph(reward_level="partial")
        result = scorer(hyps=list(hypotheses), refs=list(references))
    except (OSError, ValueError, RuntimeError) as exc:
        raise MetricUnavailable(f"RadGraph weights could not be loaded (offline?): {exc}") from exc
    return {"radgraph_f1": float(result[0])}


def green_model_scores(hypotheses: Sequence[str], references: Sequence[str], model: str) -> dict[str, Any]:
    """GREEN with the published GREEN model through the ``green-score`` package (GPU recommended).

    Raises:
        MetricUnavailable: package not installed or the model cannot be loaded.
    """
    green = _report_metric_package(
        "green_score",
        "GREEN",
        "GREEN with the GREEN model",
        "green-score",
        "; or use green=judge with any OpenAI-compatible endpoint",
    )
    try:
        scorer = green(model, output_dir=".")
        mean, _, scores, _, _ = scorer(list(references), list(hypotheses))
    except (OSError, ValueError, RuntimeError) as exc:
        raise MetricUnavailable(f"GREEN model {model!r} could not be loaded (offline?): {exc}") from exc
    return {"green": float(mean), "scores": [float(s) for s in scores]}


def report_metrics(
    hypotheses: Sequence[str],
    references: Sequence[str],
    config: GenerationConfig = GenerationConfig(),
    labeler: Callable[[str], Any] | None = None,
) -> dict[str, Any]:
    """All report metrics for (generated, reference) pairs; optional ones degrade to ``{"unavailable": why}``."""
    out: dict[str, Any] = {**bleu_scores(hypotheses, references, config.lowercase)}
    out["rougeL"] = rouge_l(hypotheses, references)
    out["chexpert"] = chexpert_f1(hypotheses, references, labeler, config.uncertain_as_positive)
    optional: list[tuple[str, Callable[[], dict[str, Any]]]] = []
    if config.bertscore:
        optional.append(("bertscore", lambda: bertscore(hypotheses, references, config.bertscore_model)))
    if config.radgraph:
        optional.append(("radgraph", lambda: radgraph_f1(hypotheses, references)))
    if config.green == "judge":
        optional.append(("green", lambda: green_scores(references, hypotheses, config.judge)))
    elif config.green == "model":
        optional.append(("green", lambda: green_model_scores(hypotheses, references, config.green_model)))
    for name, fn in optional:
        try:
            out[name] = fn()
        except MetricUnavailable as exc:
            log.warning("%s unavailable: %s", name, exc)
            out[name] = {"unavailable": str(exc)}
    return out


def retrieval_as_generation(
    query_image_emb: np.ndarray,
    references: Sequence[str],
    corpus_text_emb: np.ndarray,
    corpus_texts: Sequence[str],
    config: GenerationConfig = GenerationConfig(),
    query_ids: Sequence[str] | None = None,
    corpus_ids: Sequence[str] | None = None,
    labeler: Callable[[str], Any] | None = None,
    progress: bool = False,
) -> tuple[dict[str, Any], list[str]]:
    """Retrieve a report for every query image and score it against the true report.

    Args:
        query_image_emb: (Nq, D) query image (or study) embeddings.
        references: (Nq,) the true reports.
        corpus_text_emb: (Nc, D) corpus report embeddings.
        corpus_texts: (Nc,) corpus reports.
        config: retrieval and metric settings.
        query_ids: study ids of the queries (with ``corpus_ids`` and ``exclude_same_study``, a study
            never retrieves itself).
        corpus_ids: study ids of the corpus rows.
        labeler: CheXpert labeler (default ``lexray.findings.get_labeler()``).
        progress: show progress bars.

    Returns:
        (metrics, generated reports).
    """
    if len(references) != len(query_image_emb):
        raise ValueError(f"{len(query_image_emb)} query embeddings but {len(references)} references")
    ids = (query_ids, corpus_ids) if config.exclude_same_study else (None, None)
    idx, sc = retrieve_top_k(
        query_image_emb, corpus_text_emb, config.top_k, *ids, block_bytes=config.block_mb * 2**20
    )
    generated = fuse_reports(idx, sc, corpus_texts, corpus_text_emb, config.fusion)
    with tqdm(total=1, desc="report metrics", disable=not progress):
        metrics = report_metrics(generated, references, config, labeler)
    metrics["n"] = len(generated)
    metrics["top_k"] = config.top_k
    metrics["fusion"] = config.fusion
    return metrics, generated
