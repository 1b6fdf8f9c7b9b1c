"""Stage 1, masked next-token prediction (MNTP, LLM2Vec): teach a bidirectional decoder to use both sides.

A fraction of the report tokens is masked (80% replaced by a mask token, 10% by a random token, 10%
kept, as in BERT); the token at position i is predicted from the output at position i - 1, so the
LLM's own next-token head is reused unchanged.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn
from torch.nn import functional as F

from lexray import models
from lexray.text.encoder import TextEncoder

IGNORE = -100


def mask_token_id(encoder: TextEncoder) -> int:
    """The id replacing masked tokens: the tokenizer's mask token, else the architecture's choice ("_")."""
    tok = encoder.tokenizer
    if tok.mask_token_id is not None:
        return int(tok.mask_token_id)
    text = encoder.spec.mask_token_text
    if text is None:
        raise ValueError(
            f"{encoder.config.model}: the tokenizer has no mask token and the arch table names none"
        )
    ids = tok(text, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise ValueError(f"mask text {text!r} is not a single token for {encoder.config.model}")
    return int(ids[0])


def mask_batch(
    batch: dict[str, torch.Tensor],
    mask_prob: float,
    mask_id: int,
    vocab_size: int,
    generator: torch.Generator | None = None,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Mask report tokens for MNTP.

    Only pooled (report) positions with a predecessor are candidates; every row gets at least one mask.

    Returns:
        The batch with masked ``input_ids`` and ``labels`` (B, T): the original id at masked positions,
        -100 elsewhere.
    """
    ids = batch["input_ids"]
    candidates = batch["pool_mask"].clone()
    candidates[:, 0] = False  # position 0 has no previous output to predict it from
    draw = torch.rand(ids.shape, generator=generator)
    chosen = candidates & (draw < mask_prob)
    # guarantee one masked token per row that has any candidate
    empty = ~chosen.any(dim=1) & candidates.any(dim=1)
    if empty.any():
        score = torch.where(candidates, draw, torch.full_like(draw, 2.0))
        first = score.argmin(dim=1)
        chosen[empty, first[empty]] = True
    labels = torch.where(chosen, ids, torch.full_like(ids, IGNORE))
    action = torch.rand(ids.shape, generator=generator)
    random_ids = torch.randint(0, vocab_size, ids.shape, generator=generator)
    masked = ids.clone()
    masked = torch.where(chosen & (action < 0.8), torch.full_like(ids, mask_id), masked)
    masked = torch.where(chosen & (action >= 0.8) & (action < 0.9), random_ids, masked)
    return {**batch, "input_ids": masked}, labels


class MNTPHead(nn.Module):
    """The LLM's frozen output head: token states -> (final norm ->) vocabulary logits.

    An encoder that pools without the final norm (``final_norm: false``) still has to predict tokens
    through it: the LM head was trained on normed states, and raw early-layer states give it logits
    far from any token (a loss above log(vocab)).
    """

    def __init__(self, weight: torch.Tensor, norm: nn.Module | None = None) -> None:
        super().__init__()
        self.weight = weight  # (V, D); shared with the input embeddings when the model ties them
        self.norm = norm if norm is not None else nn.Identity()
        self.norm.requires_grad_(False)

    @classmethod
    def from_encoder(cls, encoder: TextEncoder) -> MNTPHead:
        """The head of the encoder's base LLM (tied input embeddings, or ``lm_head.weight`` from its files),
        with the base model's final norm when the encoder leaves it out."""
        norm = encoder.dropped_final_norm()
        base = encoder.base_model()
        if getattr(base.config, "tie_word_embeddings", False):
            return cls(base.get_input_embeddings().weight.detach(), norm)
        directory = Path(models.local_path(encoder.config.model))
        for path in sorted(directory.glob("*.safetensors")):
            with safe_open(str(path), framework="pt") as f:
                if "lm_head.weight" in f.keys():
                    return cls(f.get_tensor("lm_head.weight").to(base.dtype), norm)
        raise ValueError(f"{directory}: no lm_head.weight in its safetensors files; MNTP needs the LM head")

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        """(N, D) states -> (N, V) logits."""
        states = self.norm.to(states.device)(states).to(states.dtype)
        return states @ self.weight.to(states.dtype).T


class MNTPLoss(nn.Module):
    """Cross-entropy of token i predicted from the output at position i - 1, on masked positions only."""

    def __init__(self, head: MNTPHead) -> None:
        super().__init__()
        self.head = head

    def forward(self, hidden: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """``hidden`` (B, T, D) token states of the masked batch, ``labels`` (B, T) -> {"mntp": loss}."""
        targets = labels[:, 1:].to(hidden.device)  # (B, T-1): token i ...
        states = hidden[:, :-1]  # (B, T-1, D): ... read at position i - 1
        keep = targets != IGNORE
        # Only masked positions go through the (large) vocabulary projection.
        logits = self.head(states[keep].float())  # (N, V)
        return {"mntp": F.cross_entropy(logits, targets[keep])}
