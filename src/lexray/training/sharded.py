"""Embedding work split across processes: every process embeds a rank-strided share of each call, and
all of them get the whole result back, in the order of the items.

Wrap any :class:`lexray.evaluate.embedder.EmbeddingModel` (a ``DualEncoder``, a text-only baseline) in
:class:`ShardedEmbedder` and hand it to code that embeds, such as ``lexray.evaluate.run_evaluation``.
Every process must make the same calls with the same items, as a launched copy of one command does.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch.distributed as dist

# What an embedding call may raise about one bad item; the caller's retry policy sees it on every rank.
ITEM_ERRORS = (OSError, ValueError, RuntimeError)


class ShardedEmbedder:
    """An embedding model whose calls run split across the processes of a launch.

    Process r embeds items r, r + N, r + 2N, ... of each call (long and short items spread evenly), and the
    rows come back on every process in item order, so the result equals a one-process call row for row.
    When any process fails on its share, every process raises the same ``ValueError``, so a retry (for
    example one image at a time) runs everywhere in step instead of leaving the others waiting.
    """

    def __init__(self, model: Any, rank: int | None = None, world: int | None = None) -> None:
        """Wrap ``model``; ``rank`` / ``world`` default to the process group's (1 process without one)."""
        initialised = dist.is_available() and dist.is_initialized()
        self.model = model
        self.world = world if world is not None else (dist.get_world_size() if initialised else 1)
        self.rank = rank if rank is not None else (dist.get_rank() if initialised else 0)

    def __getattr__(self, name: str) -> Any:
        # Anything but the two embedding calls (config, towers, ...) is the wrapped model's.
        return getattr(self.model, name)

    def embed_texts(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """(len(texts), D) float32 embeddings, computed a share per process."""
        return self._map(lambda part: self.model.embed_texts(part, batch_size), texts)

    def embed_images(self, images: Sequence[Any], batch_size: int = 32) -> np.ndarray:
        """(len(images), D) float32 embeddings, computed a share per process."""
        return self._map(lambda part: self.model.embed_images(part, batch_size), images)

    def _map(self, fn: Callable[[list[Any]], np.ndarray], items: Sequence[Any]) -> np.ndarray:
        if self.world == 1:
            return np.asarray(fn(list(items)), dtype=np.float32)
        mine = list(items[self.rank :: self.world])
        local, error = None, None
        try:
            local = np.asarray(fn(mine), dtype=np.float32) if mine else None
        except ITEM_ERRORS as exc:
            error = f"process {self.rank}: {type(exc).__name__}: {exc}"
        shards: list[Any] = [None] * self.world
        dist.all_gather_object(shards, (local, error))
        errors = [e for _, e in shards if e]
        if errors:
            raise ValueError(errors[0])
        width = next(arr.shape[1:] for arr, _ in shards if arr is not None)
        out = np.empty((len(items), *width), dtype=np.float32)
        for r, (arr, _) in enumerate(shards):
            if arr is not None:
                out[r :: self.world] = arr
        return out


def shard_across_launch(model: Any) -> tuple[Any, bool]:
    """``model`` split across the processes of ``accelerate launch`` / ``torchrun``, and whether this one writes.

    In a single process it returns ``(model, True)`` unchanged. Launched as several, it sets up the process
    group (gloo on CPU) and returns a :class:`ShardedEmbedder`, so every embedding call is computed a share
    per process, and True only on the main process, which alone writes the outputs.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return model, True
    from lexray.training.distributed import make_accelerator

    accelerator = make_accelerator()
    return ShardedEmbedder(model), bool(accelerator.is_main_process)
