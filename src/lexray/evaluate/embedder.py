"""The embedding protocol evaluation needs from a model; it lives in :mod:`lexray.embedding`, shared by every stage."""

from lexray.embedding import EmbeddingModel

__all__ = ["EmbeddingModel"]
