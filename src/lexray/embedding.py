"""The embedding protocol every stage uses, and the one rule for embedding records that may be bad.

:class:`EmbeddingModel` is what evaluation, the index and ``lexray embed`` need from a model
(:class:`lexray.clip.DualEncoder` implements it). :func:`embed_safely` embeds a list of items batch by
batch so that one bad record (an unreadable image, a text the model rejects) skips only itself:

* a batch that raises is embedded again item by item; an item that still raises is a failure whose
  reason is ``"<ErrorType>: <message>"``;
* a vector that is not finite or has zero length is a failure too (it would rank as noise);
* when *no* item of the call embeds, the model or the environment is broken, not the data, and
  :class:`EmbeddingError` is raised with the last error;
* the model returning the wrong number of rows is a bug in the model and raises at once.

Failed rows are zeros in the returned array, so rows stay aligned with the items.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from lexray.errors import LexrayError

log = logging.getLogger(__name__)


@runtime_checkable
class EmbeddingModel(Protocol):
    """Embeds radiographs and report texts into one space; both return L2-normalised float32 arrays."""

    def embed_images(self, images: Sequence[Any], batch_size: int) -> np.ndarray:
        """(N, D) embeddings of images (file paths or pixel arrays)."""
        ...

    def embed_texts(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        """(N, D) embeddings of report texts."""
        ...


class EmbeddingError(LexrayError, RuntimeError):
    """Nothing could be embedded, or the model returned the wrong shape: not one bad record but all of them."""


def embed_safely(
    embed: Callable[..., np.ndarray],
    items: Sequence[Any],
    batch_size: int,
    progress: bool = False,
    desc: str = "embedding",
) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """Embed ``items`` with ``embed(batch, batch_size=...)``; a bad item skips only itself.

    Args:
        embed: a model's ``embed_images`` or ``embed_texts`` (anything taking a list and ``batch_size``).
        items: what to embed (paths, pixel arrays or texts).
        batch_size: items per call of ``embed``.
        progress: show a progress bar.
        desc: the progress bar's label.

    Returns:
        ((N, D) float32 embeddings with zero rows for failed items, [(index, reason)] of the failures).

    Raises:
        EmbeddingError: no item embedded, or ``embed`` returned another number of rows than it was given.
    """
    from tqdm.auto import tqdm

    rows: list[np.ndarray | None] = []
    failed: list[tuple[int, str]] = []
    last: Exception | None = None
    for start in tqdm(range(0, len(items), batch_size), desc=desc, disable=not progress, unit="batch"):
        batch = list(items[start : start + batch_size])
        try:
            chunk: list[np.ndarray | None] = list(_call(embed, batch, batch_size))
        except EmbeddingError:
            raise
        except Exception as exc:  # a bad record in the batch: isolate it instead of losing the batch
            log.debug("a batch at %d failed (%s); embedding it item by item", start, type(exc).__name__)
            chunk = []
            for j, item in enumerate(batch):
                try:
                    chunk.append(_call(embed, [item], 1)[0])
                except EmbeddingError:
                    raise
                except Exception as one:  # recorded as the item's failure reason
                    failed.append((start + j, f"{type(one).__name__}: {one}"))
                    chunk.append(None)
                    last = one
        for j, vector in enumerate(chunk):
            if vector is not None and not (np.all(np.isfinite(vector)) and np.any(vector)):
                failed.append((start + j, "the model returned a zero or non-finite vector"))
                chunk[j] = None
        rows.extend(chunk)
    good = [r for r in rows if r is not None]
    if not good:
        first = min(failed)[1] if failed else "no items"
        raise EmbeddingError(
            f"none of the {len(items)} items could be embedded (first error: {first}); "
            "check the input paths (image_root) and that the model loads"
        ) from last
    dim = good[0].shape[0]
    failed.sort()
    zero = np.zeros(dim, dtype=np.float32)
    return np.stack([zero if r is None else r for r in rows]), failed


def _call(embed: Callable[..., np.ndarray], batch: list[Any], batch_size: int) -> np.ndarray:
    """``embed(batch)`` as a float32 (n, D) array; another row count is the model's bug."""
    out = np.asarray(embed(batch, batch_size=batch_size), dtype=np.float32)
    if out.ndim != 2 or out.shape[0] != len(batch):
        raise EmbeddingError(
            f"the model returned shape {out.shape} for {len(batch)} items, expected ({len(batch)}, D)"
        )
    return out
