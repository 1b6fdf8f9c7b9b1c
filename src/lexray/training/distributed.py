"""Processes: the Accelerator, gathering with gradients, each process's share of a global batch.

Every collective here is a no-op on one process, so the single-process numerics are exactly those of
plain PyTorch. Launch several processes with ``accelerate launch --num_processes N`` (or ``torchrun``);
on a machine without a GPU they talk over gloo on the CPU.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")
log = logging.getLogger(__name__)


def _world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def make_accelerator(
    mixed_precision: str = "no",
    project_dir: str | None = None,
    broadcast_buffers: bool = True,
    timeout: timedelta | None = None,
) -> Any:
    """The run's ``accelerate.Accelerator``, on gloo/CPU when launched as several processes without a GPU.

    Args:
        mixed_precision: "no", "bf16" or "fp16" (fp16 adds a loss scaler on GPUs; on a CPU Accelerate
            runs fp16 as fp32 without one).
        project_dir: where ``save_state`` puts checkpoints.
        broadcast_buffers: DDP re-broadcasts module buffers from rank 0 at every forward. A step that runs
            several forwards (GradCache, length buckets) whose count may differ per process needs False;
            the text stage's buffers are constants (rotary frequencies), so nothing is lost.
        timeout: how long a collective waits for the other processes before the run fails (None keeps
            the backend's default, 10 minutes for NCCL). It reaches the process group only when this
            call creates it: Accelerate keeps a group that already exists, with its own timeout.
    """
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs, InitProcessGroupKwargs

    launched = int(os.environ.get("WORLD_SIZE", "1")) > 1 or "LOCAL_RANK" in os.environ
    # Accelerate only picks the CPU/gloo backend when told to (``accelerate launch --cpu`` sets it).
    cpu = launched and not torch.cuda.is_available()
    engines = [
        e for e in ("FSDP", "DEEPSPEED") if os.environ.get(f"ACCELERATE_USE_{e}", "").lower() == "true"
    ]
    if cpu and engines:
        log.warning("%s needs GPUs: without CUDA this run uses plain DDP over gloo on CPU", engines[0])
    if mixed_precision == "fp16" and not torch.cuda.is_available():
        log.warning("mixed_precision=fp16 without CUDA: Accelerate runs fp32, with no loss scaler")
    return Accelerator(
        mixed_precision=mixed_precision,
        project_dir=project_dir,
        cpu=cpu,
        kwargs_handlers=[
            DistributedDataParallelKwargs(broadcast_buffers=broadcast_buffers),
            *([InitProcessGroupKwargs(timeout=timeout)] if timeout is not None else []),
        ],
    )


def require_single_backward(accelerator: Any, what: str) -> None:
    """Refuse DeepSpeed for a loop that runs several backward passes per optimiser update.

    Accelerate's DeepSpeed backward also steps the engine, so every backward would be an update.

    Raises:
        lexray.config.ConfigError: the run is under DeepSpeed.
    """
    from accelerate.utils import DistributedType

    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        from lexray.config import ConfigError

        raise ConfigError(
            f"{what} runs several backward passes per update, which DeepSpeed turns into several updates: "
            "launch with configs/accelerate/ddp.yaml (or fsdp.yaml), or switch it off"
        )


def gather_with_grad(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Rows (B, ...) of every process -> (world * B, ...), and this process's row offset.

    Gradients flow back to their owners: the backward pass sums, over processes, the gradient each
    process's loss puts on a row and hands it to the process that computed the row (open_clip's
    ``gather_with_grad``). With DDP's gradient averaging this gives exactly the gradient of the mean loss
    over the global batch. Needs the same B on every process (see :func:`gather_varlen_with_grad`).
    """
    world = _world()
    if world == 1:
        return x, 0
    from torch.distributed.nn.functional import all_gather

    with warnings.catch_warnings():
        # torch marks it deprecated in favour of a private module; it is the public differentiable gather.
        warnings.simplefilter("ignore", FutureWarning)
        parts = all_gather(x)
    return torch.cat(parts, dim=0), dist.get_rank() * x.shape[0]


def gather_varlen_with_grad(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Like :func:`gather_with_grad` for a row count that may differ per process (e.g. hard negatives).

    Rows are padded to the largest count, gathered, and the padding cut out again, in rank order.
    """
    world = _world()
    if world == 1:
        return x, 0
    count = torch.tensor([x.shape[0]], device=x.device)
    counts = [torch.zeros_like(count) for _ in range(world)]
    dist.all_gather(counts, count)
    sizes = [int(c) for c in counts]
    width = max(sizes)
    pad = x.new_zeros((width - x.shape[0], *x.shape[1:]))
    everything, _ = gather_with_grad(torch.cat([x, pad]))  # (world * width, ...)
    rows = [everything[r * width : r * width + n] for r, n in enumerate(sizes)]
    return torch.cat(rows), sum(sizes[: dist.get_rank()])


def gather_rows(x: torch.Tensor) -> torch.Tensor:
    """Rows of every process in rank order, without gradient (keys, labels, counts)."""
    if _world() == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(_world())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


def rank_slice(batch: Sequence[T], rank: int, world: int) -> list[T]:
    """This process's contiguous share of a global batch (len divisible by ``world``).

    A sampler draws one duplicate-free global batch and every process takes its slice, so no report
    appears twice across processes, and process r's rows sit at offset ``r * len(batch) // world`` of
    the gathered batch, in the same order a one-process run of the global batch sees them.
    """
    if len(batch) % world:
        raise ValueError(f"a global batch of {len(batch)} does not split into {world} equal shares")
    size = len(batch) // world
    return list(batch[rank * size : (rank + 1) * size])
