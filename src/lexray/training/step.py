"""The optimiser step: unscale (fp16), clip, step, schedule, zero the gradients, through Accelerate."""

from __future__ import annotations

from typing import Any

import torch


def optimizer_step(
    accelerator: Any,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    grad_clip: float,
) -> float:
    """One update from the accumulated gradients; returns the gradient norm before clipping (NaN if off).

    ``accelerator.clip_grad_norm_`` unscales fp16 gradients before measuring them, and the prepared
    optimiser skips the step (and lowers the loss scale) when they overflowed, so callers never touch the
    scaler themselves. Gradients must come from ``accelerator.backward`` (or code that scales as it does).
    """
    norm = float("nan")
    if grad_clip > 0:
        # DeepSpeed clips inside its engine (its config's gradient_clipping) and may return None here
        value = accelerator.clip_grad_norm_(model.parameters(), grad_clip)
        norm = float(value) if value is not None else norm
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return norm
