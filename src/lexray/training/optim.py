"""Parameter groups, layer-wise learning-rate decay, AdamW and the warmup + decay schedule."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

# Parameters whose name ends with one of these get no weight decay whatever their shape: scalars and
# vectors that set a scale or a query (decaying them pulls the temperature or the pooling latents to 0).
NO_DECAY_NAMES = ("logit_scale", "logit_bias", "latents")


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with linear warmup then cosine or linear decay, layer-wise decay and gradient clipping."""

    lr: float = 1e-4  # peak learning rate (the top of the image tower, projections, temperature)
    text_lr: float = 0.0  # CLIP: peak learning rate of trainable text-tower weights (0 = lr)
    weight_decay: float = 0.05  # AdamW weight decay (never on biases, norms, latents, temperature)
    betas: tuple[float, float] = (0.9, 0.98)  # AdamW betas (CLIP's 0.98 for stability)
    eps: float = 1e-6  # AdamW epsilon
    layer_decay: float = 1.0  # layer-wise LR decay: layer i of n gets lr * decay^(n - i) (1 = off)
    warmup_steps: int = 100  # linear warmup steps
    schedule: Literal["cosine", "linear"] = "cosine"  # decay shape after the warmup
    min_lr_ratio: float = 0.0  # floor of the decay as a fraction of the peak
    grad_clip: float = 5.0  # max global gradient norm (0 = off)


def decays(name: str, param: nn.Parameter) -> bool:
    """Whether weight decay applies: matrices only, never biases, norm gains, latents or the temperature."""
    return param.ndim > 1 and not name.endswith(NO_DECAY_NAMES)


def param_groups(
    model: nn.Module,
    lr: float,
    weight_decay: float,
    lr_of: Callable[[str], float] | None = None,
) -> list[dict]:
    """Trainable parameters of ``model`` grouped by (learning rate, weight decay), in model order.

    Args:
        model: the module being trained; frozen parameters are left out.
        lr: the learning rate of every parameter ``lr_of`` does not set.
        weight_decay: applied to the parameters :func:`decays` accepts, 0 for the others.
        lr_of: parameter name -> its peak learning rate (layer decay, per-tower rates); None = ``lr``.

    Raises:
        ValueError: every parameter is frozen.
    """
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        key = (lr_of(name) if lr_of else lr, weight_decay if decays(name, p) else 0.0)
        groups.setdefault(key, []).append(p)
    if not groups:
        raise ValueError("nothing to train: every parameter is frozen")
    return [{"params": ps, "lr": g_lr, "weight_decay": wd} for (g_lr, wd), ps in groups.items()]


def layer_decay_lr(lr: float, decay: float, layer_id: int, num_layers: int) -> float:
    """BEiT/EVA layer-wise decay: ``lr * decay ** (num_layers - layer_id)``; lower layers move less."""
    return lr * decay ** (num_layers - layer_id)


def build_adamw(
    groups: list[dict], lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8
) -> torch.optim.AdamW:
    """AdamW over ``groups`` (each group keeps its own ``lr`` and ``weight_decay``)."""
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps)


def lr_schedule(
    optimizer: torch.optim.Optimizer,
    warmup: int,
    total: int,
    shape: Literal["cosine", "linear"] = "cosine",
    floor: float = 0.0,
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup to each group's peak, then cosine or linear decay to ``floor`` x peak at ``total``.

    Step k of the warmup runs at ``(k + 1) / warmup`` of the peak, so the first step already moves.
    """

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        if shape == "linear":
            # Kept exactly as the text stage always decayed (the delivered recipe depends on it).
            return max(floor, (total - step) / max(1, total - warmup))
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
