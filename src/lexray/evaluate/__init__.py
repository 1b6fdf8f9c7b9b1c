"""Evaluation: exact retrieval metrics, 5x200 zero-shot, retrieval as report generation, robustness."""

from lexray.evaluate.protocol import (
    RetrievalConfig,
    bidirectional_retrieval,
    duplicate_groups,
    normalize_report,
    study_image_embeddings,
)
from lexray.evaluate.retrieval import RankResult, retrieval_ranks, summarize_ranks

__all__ = [
    "RankResult",
    "RetrievalConfig",
    "bidirectional_retrieval",
    "duplicate_groups",
    "normalize_report",
    "retrieval_ranks",
    "study_image_embeddings",
    "summarize_ranks",
]
