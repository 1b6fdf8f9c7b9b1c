"""Stage 2, supervised contrastive learning: InfoNCE with in-batch and hard negatives.

Anchors are reports; positives are clinically equivalent variants (or findings <-> impression);
hard negatives are single-error variants. Candidates that are really positives (same study, the same
normalised text, or the same finding labels as the anchor) are masked out of the denominator. With
several processes (Accelerate), candidates are gathered from every process so negatives grow with
the world size; GradCache-style chunking keeps memory flat for large batches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

NO_KEY = -1  # a key column value that never matches


def false_negative_mask(row_keys: torch.Tensor, col_keys: torch.Tensor, offset: int = 0) -> torch.Tensor:
    """(B, N) True where candidate j shares any key with anchor i (and is not i's own positive).

    Args:
        row_keys: (B, G) int64 keys of the anchors (e.g. study id, normalised-text hash, label hash);
            ``NO_KEY`` never matches.
        col_keys: (N, G) keys of the positive candidates, same columns.
        offset: index of anchor 0's own positive among the candidates (rank * B with gathering).
    """
    same = (row_keys[:, None, :] == col_keys[None, :, :]) & (row_keys[:, None, :] != NO_KEY)  # (B, N, G)
    mask = same.any(dim=-1)
    own = torch.arange(row_keys.shape[0], device=mask.device) + offset
    mask[torch.arange(row_keys.shape[0], device=mask.device), own] = False
    return mask


class InfoNCELoss(nn.Module):
    """InfoNCE over cosine similarities scaled by ``scale`` (= 1 / temperature; published 50).

    For anchor i the candidates are every positive in the batch (its own is the target, the others are
    in-batch negatives) plus every hard negative. loss_i = -log softmax(scale * cos(a_i, c))[target].

    Use it when each anchor has exactly one known positive; pass ``fn_mask`` when other in-batch
    candidates may also be correct (duplicate or clinically identical reports), since penalising them
    teaches the model to separate equivalent reports.
    """

    def __init__(self, scale: float = 50.0, symmetric: bool = False) -> None:
        super().__init__()
        self.scale = scale
        self.symmetric = symmetric

    def forward(
        self,
        anchors: torch.Tensor,
        positives: torch.Tensor,
        negatives: torch.Tensor | None = None,
        fn_mask: torch.Tensor | None = None,
        offset: int = 0,
        all_anchors: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Loss terms for anchors (B, D), positives (N, D), hard negatives (M, D) or None.

        Args:
            fn_mask: (B, N) True for in-batch positives to drop from anchor i's denominator.
            offset: index of anchor 0's positive among ``positives`` (non-zero when gathered).
            all_anchors: (N, D) the anchors of every process, for the reverse direction of a symmetric
                loss (each local positive is scored against the global anchors); None = ``anchors``.
        """
        a = F.normalize(anchors.float(), dim=-1)  # (B, D)
        p = F.normalize(positives.float(), dim=-1)  # (N, D)
        logits = self.scale * a @ p.T  # (B, N)
        if fn_mask is not None:
            logits = logits.masked_fill(fn_mask, float("-inf"))
        if negatives is not None and negatives.shape[0]:
            n = F.normalize(negatives.float(), dim=-1)
            logits = torch.cat([logits, self.scale * a @ n.T], dim=1)  # (B, N + M)
        targets = torch.arange(a.shape[0], device=a.device) + offset
        terms = {"infonce": F.cross_entropy(logits, targets)}
        if self.symmetric:
            # positives -> anchors: the local positives against every anchor of the global batch
            same = all_anchors is None or all_anchors is anchors  # one process: reuse, same graph
            a_all = a if same else F.normalize(all_anchors.float(), dim=-1)  # (N, D)
            local_p = p[offset : offset + a.shape[0]]
            back = self.scale * local_p @ a_all.T  # (B, N)
            if fn_mask is not None:
                # positive i and anchor j carry the keys of their examples, so the mask is the same one
                back = back.masked_fill(fn_mask, float("-inf"))
            terms["infonce_reverse"] = F.cross_entropy(back, targets)
        return terms


class _RandContext:
    """Captures the RNG state so a recomputed forward (GradCache) draws the same dropout masks."""

    def __init__(self, device: torch.device) -> None:
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
        self.device = device

    def restore(self) -> None:
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state(self.cuda, self.device)


def embed_in_chunks(
    embed: Callable[[Sequence[str]], torch.Tensor], texts: Sequence[str], chunk_size: int
) -> tuple[torch.Tensor | None, list[_RandContext]]:
    """Embed without building a graph, chunk by chunk, remembering each chunk's RNG state (None: no text)."""
    reps, states = [], []
    device = torch.device("cpu")
    for start in range(0, len(texts), chunk_size):
        states.append(_RandContext(device))
        with torch.no_grad():
            out = embed(texts[start : start + chunk_size])
        device = out.device
        reps.append(out)
    return (torch.cat(reps) if reps else None), states


def grad_cache_backward(
    embed: Callable[[Sequence[str]], torch.Tensor],
    groups: Sequence[Sequence[str]],
    loss_fn: Callable[[list[torch.Tensor]], dict[str, torch.Tensor]],
    chunk_size: int,
    backward: Callable[[torch.Tensor], None] | None = None,
    no_sync: Callable[[], AbstractContextManager[Any]] | None = None,
) -> dict[str, torch.Tensor]:
    """GradCache (Gao et al., 2021): the exact full-batch contrastive gradient with chunk-sized memory.

    1. Embed every group of texts (anchors, positives, negatives) in chunks without a graph.
    2. Compute the loss on the detached (fp32) embeddings and backpropagate to them only.
    3. Re-embed each chunk with a graph (same RNG state) and backpropagate the cached embedding grads,
       as the surrogate loss ``sum(embedding * cached_grad)``, through ``backward``.

    Step 3 is the only one that reaches the weights, so it must go through the trainer's backward: with
    fp16 ``accelerator.backward`` multiplies by the loss scale that the optimiser step later divides by
    (a plain ``.backward()`` there would shrink every update by that scale).

    Args:
        embed: texts -> (n, D) features with grad.
        groups: lists of texts, one per role.
        loss_fn: list of (n_g, D) embeddings -> loss terms (summed for the backward pass).
        chunk_size: texts per forward pass.
        backward: runs the backward pass of a scalar (``accelerator.backward``; default ``Tensor.backward``).
        no_sync: context in which every chunk but the last runs (``lambda: accelerator.no_sync(model)``),
            so DDP all-reduces the accumulated gradients once, after the last chunk.

    Returns:
        The detached loss terms.
    """
    backward = backward or torch.Tensor.backward
    cached = [embed_in_chunks(embed, list(texts), chunk_size) for texts in groups]
    first = next(r for r, _ in cached if r is not None)
    empty = first.new_zeros((0, first.shape[1]), dtype=torch.float32)  # a role without text this time
    # fp32 leaves: their gradients are unscaled, so in fp16 they must not live in half precision
    reps = [(r.detach().float() if r is not None else empty.clone()).requires_grad_() for r, _ in cached]
    terms = loss_fn(reps)
    sum(terms.values()).backward()  # reaches only the leaves above, never a weight
    chunks = [
        (k, start, texts, states, rep)
        for texts, (_, states), rep in zip(groups, cached, reps, strict=True)
        for k, start in enumerate(range(0, len(texts), chunk_size))
    ]
    for i, (k, start, texts, states, rep) in enumerate(chunks):
        last = i == len(chunks) - 1
        with no_sync() if no_sync is not None and not last else nullcontext():
            states[k].restore()
            out = embed(list(texts[start : start + chunk_size]))  # (c, D)
            backward((out.float() * rep.grad[start : start + chunk_size]).sum())
    return {k: v.detach() for k, v in terms.items()}
