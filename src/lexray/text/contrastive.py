"""Stage 2, supervised contrastive learning: InfoNCE with in-batch and hard negatives.

Anchors are reports; positives are clinically equivalent variants (or findings <-> impression);
hard negatives are single-error variants. Candidates that are really positives (same study, the same
normalised text, or the same finding labels as the anchor) are masked out of the denominator. With
several processes (Accelerate), candidates are gathered from every process so negatives grow with
the world size; GradCache-style chunking keeps memory flat for large batches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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
    ) -> dict[str, torch.Tensor]:
        """Loss terms for anchors (B, D), positives (N, D), hard negatives (M, D) or None.

        Args:
            fn_mask: (B, N) True for in-batch positives to drop from anchor i's denominator.
            offset: index of anchor 0's positive among ``positives`` (non-zero when gathered).
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
            # positives -> anchors (only the local block when gathered: anchors are local)
            local_p = p[offset : offset + a.shape[0]]
            back = self.scale * local_p @ a.T  # (B, B)
            if fn_mask is not None:
                back = back.masked_fill(fn_mask[:, offset : offset + a.shape[0]].T, float("-inf"))
            terms["infonce_reverse"] = F.cross_entropy(back, torch.arange(a.shape[0], device=a.device))
        return terms


def gather_with_grad(x: torch.Tensor, accelerator: Any | None) -> tuple[torch.Tensor, int]:
    """Concatenate ``x`` (B, ...) from every process; the local slice keeps its gradient.

    Returns:
        (all rows (world * B, ...), offset of this process's rows). Needs equal B on every process.
    """
    if accelerator is None or accelerator.num_processes == 1:
        return x, 0
    everything = accelerator.gather(x.detach())  # (world * B, ...), no grad
    rank, b = accelerator.process_index, x.shape[0]
    merged = torch.cat([everything[: rank * b], x, everything[(rank + 1) * b :]])
    return merged, rank * b


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
) -> tuple[torch.Tensor, list[_RandContext]]:
    """Embed without building a graph, chunk by chunk, remembering each chunk's RNG state."""
    reps, states = [], []
    device = torch.device("cpu")
    for start in range(0, len(texts), chunk_size):
        states.append(_RandContext(device))
        with torch.no_grad():
            out = embed(texts[start : start + chunk_size])
        device = out.device
        reps.append(out)
    return torch.cat(reps), states


def grad_cache_backward(
    embed: Callable[[Sequence[str]], torch.Tensor],
    groups: Sequence[Sequence[str]],
    loss_fn: Callable[[list[torch.Tensor]], dict[str, torch.Tensor]],
    chunk_size: int,
) -> dict[str, torch.Tensor]:
    """GradCache (Gao et al., 2021): the exact full-batch contrastive gradient with chunk-sized memory.

    1. Embed every group of texts (anchors, positives, negatives) in chunks without a graph.
    2. Compute the loss on the detached embeddings and backpropagate to them only.
    3. Re-embed each chunk with a graph (same RNG state) and backpropagate the cached embedding grads.

    Args:
        embed: texts -> (n, D) features with grad.
        groups: lists of texts, one per role.
        loss_fn: list of (n_g, D) embeddings -> loss terms (summed for the backward pass).
        chunk_size: texts per forward pass.

    Returns:
        The detached loss terms.
    """
    cached = [embed_in_chunks(embed, list(texts), chunk_size) for texts in groups]
    reps = [r.detach().requires_grad_() for r, _ in cached]
    terms = loss_fn(reps)
    sum(terms.values()).backward()
    for texts, (_, states), rep in zip(groups, cached, reps, strict=True):
        for k, start in enumerate(range(0, len(texts), chunk_size)):
            states[k].restore()
            out = embed(list(texts[start : start + chunk_size]))
            out.backward(rep.grad[start : start + chunk_size])
    return {k: v.detach() for k, v in terms.items()}
