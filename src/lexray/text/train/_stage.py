"""What the MNTP and contrastive loops share: stage state, checkpoint policy, batch plan, optimiser."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from lexray.text.config import StageConfig
from lexray.text.encoder import TextEncoder
from lexray.training import (
    MetricsLog,
    build_adamw,
    load_checkpoint,
    lr_schedule,
    param_groups,
    save_checkpoint,
)

log = logging.getLogger(__name__)


@dataclasses.dataclass
class StageState:
    """Where a stage's loop is; saved with each checkpoint (``trainer_state.json``)."""

    stage: str  # "mntp" or "contrastive"
    step: int = 0  # optimizer steps done in this stage
    epoch: int = 0  # epoch of the batch plan
    batch: int = 0  # next batch index within that epoch
    mask_rng: list[int] = dataclasses.field(default_factory=list)  # MNTP masking generator state
    scheduler: dict[str, Any] = dataclasses.field(default_factory=dict)  # the LR scheduler's state


@dataclasses.dataclass
class StageRun:
    """What both stage loops share: the accelerator, the metrics log and the checkpoint policy."""

    accelerator: Any
    metrics: MetricsLog
    out: Path
    log_every: int
    save_every: int
    keep_checkpoints: int
    stop_at_step: int | None  # global step (MNTP steps, then contrastive) after which to stop
    resume: tuple[Path, dict[str, Any]] | None  # a checkpoint and its trainer state
    step_offset: int = 0  # global steps done before the current stage

    def resume_for(self, stage: str) -> dict[str, Any] | None:
        """The trainer state to resume ``stage`` from (after loading the checkpoint), or None."""
        if self.resume is None or self.resume[1]["stage"] != stage:
            return None
        path, state = self.resume
        load_checkpoint(self.accelerator, path)
        log.info("resumed %s at step %d from %s", stage, state["step"], path)
        return state

    def start(
        self, encoder: TextEncoder, config: StageConfig, stage: str
    ) -> tuple[Any, torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR, StageState]:
        """The prepared model, optimiser, schedule and state of ``stage``, resumed when a checkpoint is."""
        optimizer, scheduler = stage_optimizer(encoder, config)
        model, optimizer = self.accelerator.prepare(encoder, optimizer)
        state = StageState(stage)
        resumed = self.resume_for(stage)
        if resumed is not None:
            state = StageState(**resumed)
            scheduler.load_state_dict(state.scheduler)
        return model, optimizer, scheduler, state

    def log_step(self, state: StageState, steps: int, **fields: Any) -> None:
        """Write a ``metrics.jsonl`` record on the first step, every ``log_every`` steps and the last."""
        if (state.step - 1) % self.log_every == 0 or state.step == steps:
            self.metrics.write(state.stage, state.step, **fields)

    def after_step(self, state: StageState, scheduler: Any, mask_rng: torch.Generator | None = None) -> bool:
        """Checkpoint when due; True when the run must stop here (an interruption, for tests)."""
        done = self.step_offset + state.step
        stop = self.stop_at_step is not None and done >= self.stop_at_step
        if stop or (self.save_every and done % self.save_every == 0):
            state.scheduler = scheduler.state_dict()
            if mask_rng is not None:
                state.mask_rng = mask_rng.get_state().tolist()
            save_checkpoint(
                self.accelerator, self.out, done, dataclasses.asdict(state), self.keep_checkpoints
            )
        return stop


def endless_batches(make_epoch: Callable[[int], list[list[Any]]], state: StageState) -> Iterator[list[Any]]:
    """Endless batches; epoch k's batches are ``make_epoch(k)``, a pure function, so a resumed run
    re-creates exactly the batches it would have seen. Advances ``state.epoch`` / ``state.batch``."""
    cache: dict[int, list[list[Any]]] = {}
    while True:
        if state.epoch not in cache:
            cache.clear()
            cache[state.epoch] = make_epoch(state.epoch)
            if not cache[state.epoch]:
                raise ValueError("an epoch produced no batch: fewer training examples than one batch")
        plan = cache[state.epoch]
        if state.batch >= len(plan):
            state.epoch, state.batch = state.epoch + 1, 0
            continue
        state.batch += 1
        yield plan[state.batch - 1]


def stage_optimizer(
    encoder: TextEncoder, config: StageConfig
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW (torch defaults) over the trainable weights; linear warmup, then linear decay to zero."""
    optimizer = build_adamw(param_groups(encoder, config.lr, config.weight_decay), config.lr)
    return optimizer, lr_schedule(optimizer, config.warmup_steps, config.steps, shape="linear")
