"""Kept for old imports: the retrieval ranks and metrics live in :mod:`lexray.ranking`."""

from lexray.ranking import RankResult, retrieval_ranks, summarize_ranks

__all__ = ["RankResult", "retrieval_ranks", "summarize_ranks"]
