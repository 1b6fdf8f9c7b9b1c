"""Token pooling: mean, last token (EOS), [CLS] and latent attention (NV-Embed, as in the published CXR encoder).

Every pooler takes token states ``(B, T, D)`` and a boolean pool mask ``(B, T)`` that is True only on
report tokens (never on the instruction or padding) and returns ``(B, D)``.
"""

from __future__ import annotations

import torch
from torch import nn

from lexray.text.config import LatentPoolingConfig


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``hidden`` (B, T, D) over the positions where ``mask`` (B, T) is True -> (B, D)."""
    weights = mask.to(hidden.dtype).unsqueeze(-1)  # (B, T, 1)
    total = (hidden * weights).sum(dim=1)  # (B, D)
    count = weights.sum(dim=1).clamp_min(1.0)  # (B, 1)
    return total / count


class MeanPooling(nn.Module):
    """Average of the report-token states."""

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Pool (B, T, D) token states over ``mask`` (B, T) -> (B, D)."""
        return masked_mean(hidden, mask)


class LastTokenPooling(nn.Module):
    """State of the last report token (the appended EOS for decoders), for left or right padding."""

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Pick, per row, the state at the highest index where ``mask`` is True -> (B, D)."""
        positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)  # (B, T)
        last = torch.where(mask, positions, torch.full_like(positions, -1)).amax(dim=1).clamp_min(0)  # (B,)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


class CLSPooling(nn.Module):
    """State of the first position: the [CLS] token of a BERT-like encoder padded on the right."""

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> (B, D); ``mask`` is unused (the [CLS] token is never a report token)."""
        return hidden[:, 0]


class LatentAttentionPooling(nn.Module):
    """Latent-attention pooling (Lee et al., NV-Embed, 2024), the pooling of the published CXR encoder.

    Token states are queries; a trainable latent array is both keys and values; multi-head
    cross-attention is followed by a GELU MLP (both residual, unless ``config.residual`` is off as in
    the published LLM2Vec pooler), then a masked mean over tokens. No mask enters the attention: the
    keys are the latents, so each token's output depends on that token alone.
    """

    def __init__(self, dim: int, config: LatentPoolingConfig) -> None:
        super().__init__()
        if dim % config.num_heads:
            raise ValueError(f"hidden size {dim} is not divisible by latent.num_heads={config.num_heads}")
        self.latents = nn.Parameter(torch.randn(config.num_latents, dim) * dim**-0.5)  # (L, D)
        self.attn = nn.MultiheadAttention(dim, config.num_heads, batch_first=True)
        self.mlp = nn.Sequential(
            nn.Linear(dim, dim * config.mlp_ratio), nn.GELU(), nn.Linear(dim * config.mlp_ratio, dim)
        )
        self.residual = config.residual
        # Zero-init the last projections so an untrained pooler starts as plain mean pooling.
        nn.init.zeros_(self.attn.out_proj.weight)
        nn.init.zeros_(self.attn.out_proj.bias)
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Cross-attend tokens (B, T, D) to the latents, MLP, then mean over ``mask`` -> (B, D)."""
        latents = self.latents.to(hidden.dtype).unsqueeze(0).expand(hidden.shape[0], -1, -1)  # (B, L, D)
        attended, _ = self.attn(hidden, latents, latents, need_weights=False)  # (B, T, D)
        if self.residual:
            x = hidden + attended
            x = x + self.mlp(x)
        else:
            x = self.mlp(attended)
        return masked_mean(x, mask)


def build_pooling(kind: str, dim: int, latent: LatentPoolingConfig) -> nn.Module:
    """The pooler named by ``kind`` ("mean", "last", "latent") for hidden size ``dim``."""
    if kind == "mean":
        return MeanPooling()
    if kind == "last":
        return LastTokenPooling()
    if kind == "latent":
        return LatentAttentionPooling(dim, latent)
    if kind == "cls":
        return CLSPooling()
    raise ValueError(f"unknown pooling {kind!r}; use mean, last, latent or cls")
