"""Evaluation: exact retrieval metrics, 5x200 zero-shot, retrieval as report generation, robustness.

Public API::

    from lexray.evaluate import (
        retrieval_ranks, summarize_ranks,            # blockwise exact ranks -> hit@K, recall@K, MRR
        bidirectional_retrieval, RetrievalConfig,    # study/image level x exact/dedup, both directions
        retrieval_as_generation, GenerationConfig,   # top-1 / fused retrieved report + report metrics
        style_robustness,                            # variant vs original text->image queries
        zero_shot_classify, build_chexpert_5x200, build_mimic_5x200,
        green_scores, parse_green_reply, JudgeConfig,  # GREEN through an OpenAI-compatible judge
        run_evaluation, EvaluateConfig,              # a whole run: metrics.json, metrics.md, plots
        EmbeddingModel,                              # the protocol a model must follow
    )
"""

from lexray.evaluate.embedder import EmbeddingModel
from lexray.evaluate.fivex200 import FIVE_CLASSES, build_chexpert_5x200, build_mimic_5x200, select_5x200
from lexray.evaluate.generation import (
    GenerationConfig,
    MetricUnavailable,
    bleu_scores,
    chexpert_f1,
    report_metrics,
    retrieval_as_generation,
    retrieve_top_k,
    rouge_l,
)
from lexray.evaluate.green import GreenReply, JudgeConfig, green_prompt, green_scores, parse_green_reply
from lexray.evaluate.protocol import (
    RetrievalConfig,
    bidirectional_retrieval,
    duplicate_groups,
    normalize_report,
    study_image_embeddings,
)
from lexray.evaluate.robustness import style_robustness
from lexray.evaluate.runner import EvaluateConfig, RobustnessConfig, ZeroShotConfig, run_evaluation
from lexray.evaluate.zeroshot import DEFAULT_PROMPTS, binary_auroc, zero_shot_classify
from lexray.ranking import RankResult, retrieval_ranks, summarize_ranks

__all__ = [
    "DEFAULT_PROMPTS",
    "FIVE_CLASSES",
    "EmbeddingModel",
    "EvaluateConfig",
    "GenerationConfig",
    "GreenReply",
    "JudgeConfig",
    "MetricUnavailable",
    "RankResult",
    "RetrievalConfig",
    "RobustnessConfig",
    "ZeroShotConfig",
    "bidirectional_retrieval",
    "binary_auroc",
    "bleu_scores",
    "build_chexpert_5x200",
    "build_mimic_5x200",
    "chexpert_f1",
    "duplicate_groups",
    "green_prompt",
    "green_scores",
    "normalize_report",
    "parse_green_reply",
    "report_metrics",
    "retrieval_as_generation",
    "retrieval_ranks",
    "retrieve_top_k",
    "rouge_l",
    "run_evaluation",
    "select_5x200",
    "study_image_embeddings",
    "style_robustness",
    "summarize_ranks",
    "zero_shot_classify",
]
