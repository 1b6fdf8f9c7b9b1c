"""The training kit both stages share: optimiser, schedule, step, gathering, metrics, checkpoints.

The text stage (:mod:`lexray.text.train`) and the dual encoder (:mod:`lexray.clip.train`) import these
pieces instead of carrying their own, so a change of schedule, precision or resume behaviour is made
once. Everything here is stage-agnostic: it knows parameters, optimisers and processes, not reports or
images.
"""

from lexray.training.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from lexray.training.distributed import (
    gather_rows,
    gather_varlen_with_grad,
    gather_with_grad,
    make_accelerator,
    rank_slice,
)
from lexray.training.metrics import METRICS_FILE, MetricsLog
from lexray.training.optim import OptimConfig, build_adamw, lr_schedule, param_groups
from lexray.training.sharded import ShardedEmbedder
from lexray.training.step import optimizer_step

__all__ = [
    "METRICS_FILE",
    "MetricsLog",
    "OptimConfig",
    "ShardedEmbedder",
    "build_adamw",
    "gather_rows",
    "gather_varlen_with_grad",
    "gather_with_grad",
    "latest_checkpoint",
    "load_checkpoint",
    "lr_schedule",
    "make_accelerator",
    "optimizer_step",
    "param_groups",
    "rank_slice",
    "save_checkpoint",
]
