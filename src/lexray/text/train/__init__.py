"""Text-encoder training: MNTP (stage 1) then supervised contrastive learning (stage 2).

The run is here; its pieces have one module each: the data phase (:mod:`.data`: train studies, variants,
fabricated studies, all cached in the run directory), the two loops (:mod:`.loops`), what they share
(:mod:`._stage`: state, checkpoints, optimiser) and the bench scored while training (:mod:`.monitor`).
Multi-process runs go through Accelerate.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from lexray.config import save_config
from lexray.text.bench import load_bench
from lexray.text.config import TextTrainConfig
from lexray.text.encoder import TextEncoder
from lexray.text.train._stage import StageRun, StageState
from lexray.text.train.data import (
    FORBIDDEN_SPLITS,
    VARIANTS_SUBDIR,
    VariantPool,
    contrastive_data,
    fabricated_studies,
    load_train_studies,
    merge_pools,
    prepare_variants,
)
from lexray.text.train.loops import contrastive_epoch, contrastive_step, run_contrastive, run_mntp
from lexray.text.train.monitor import bench_monitor
from lexray.training import MetricsLog, latest_checkpoint, make_accelerator
from lexray.training.checkpoint import TRAINER_STATE
from lexray.training.memory import configure_cpu_memory, release_free_memory

__all__ = [
    "FORBIDDEN_SPLITS",
    "VARIANTS_SUBDIR",
    "StageState",
    "VariantPool",
    "contrastive_epoch",
    "contrastive_step",
    "fabricated_studies",
    "load_train_studies",
    "merge_pools",
    "prepare_variants",
    "run_contrastive",
    "run_mntp",
    "train",
]

log = logging.getLogger(__name__)


def train(config: TextTrainConfig, accelerator: Any | None = None, stop_at_step: int | None = None) -> Path:
    """Run the configured stages and save the encoder into ``config.output_dir``.

    Writes ``config.yaml`` (the resolved run config), ``metrics.jsonl``, ``variants/`` (cached
    variants), ``checkpoints/`` (every ``save_every`` steps) and the encoder files (loadable with
    :meth:`TextEncoder.from_pretrained`). With ``resume`` a run continues from its latest checkpoint and
    ends with the same weights as an uninterrupted one.

    Args:
        config: the run.
        accelerator: an ``accelerate.Accelerator`` to use (default: one made for ``config``).
        stop_at_step: stop with a checkpoint after this many optimizer steps (MNTP steps first, then
            contrastive), as an interruption would; None runs to the end.
    """
    from accelerate.utils import set_seed

    # Before the first multiplication: varying batch shapes otherwise grow oneDNN's kernel caches and
    # fragment the heap by gigabytes over a CPU run (lexray.training.memory).
    configure_cpu_memory()
    accelerator = accelerator or make_accelerator(config.mixed_precision, broadcast_buffers=False)
    out = Path(config.output_dir)
    if config.threads:
        torch.set_num_threads(config.threads)
    set_seed(config.seed)
    wi = config.contrastive.weight_interpolation
    if wi != 1.0 and not (0.0 <= wi <= 1.0 and config.contrastive.lora.enabled):
        raise ValueError(
            f"contrastive.weight_interpolation={wi}: needs contrastive.lora.enabled and a value in [0, 1]"
        )
    if not 0.0 <= config.data.fabricated_studies <= 1.0:
        raise ValueError(f"data.fabricated_studies={config.data.fabricated_studies}: a share in [0, 1]")
    # Read on every process before any training: a bad file fails at once with its name, and no process
    # is left waiting in a collective for one that failed alone.
    bench = load_bench(config.eval_bench) if config.eval_bench and config.eval_every else None
    if accelerator.is_main_process:
        save_config(config, out)
    metrics = MetricsLog(out, accelerator.is_main_process, accelerator.num_processes, config.mixed_precision)
    ckpt = latest_checkpoint(out) if config.resume else None
    run = StageRun(
        accelerator,
        metrics,
        out,
        config.log_every,
        config.save_every,
        config.keep_checkpoints,
        stop_at_step,
        (ckpt, json.loads((ckpt / TRAINER_STATE).read_text())) if ckpt else None,
    )
    studies = load_train_studies(config.data)
    encoder = TextEncoder.from_config(
        dataclasses.replace(config.encoder, lora=dataclasses.replace(config.encoder.lora, enabled=False))
    )
    encoder.freeze_backbone()
    started = time.perf_counter()
    # A checkpoint of the contrastive stage holds the MNTP-merged backbone: MNTP is not rerun.
    mntp_done = run.resume is not None and run.resume[1]["stage"] == "contrastive"
    if config.mntp.enabled:
        if not mntp_done:
            _make_trainable(encoder, config.mntp.lora)
            losses = run_mntp(encoder, [s.report_text for s in studies], config.mntp, config.seed, run)
            log.info(
                "MNTP: loss %.3f -> %.3f over %d steps", _mean(losses[:5]), _mean(losses[-5:]), len(losses)
            )
            if stop_at_step is not None and stop_at_step <= config.mntp.steps:
                return out
            # LLM2Vec: fold the MNTP adapters in, then train fresh adapters contrastively.
            encoder.merge_lora()
            encoder.freeze_backbone()
            release_free_memory()  # MNTP's vocabulary-sized logits and optimiser state go back
        run.step_offset = config.mntp.steps
    if config.contrastive.enabled:
        train_studies, pool = contrastive_data(
            studies, config.data, config.seed, out / VARIANTS_SUBDIR, accelerator.main_process_first
        )
        release_free_memory()  # the variants and labels are made: their scratch memory goes back
        _make_trainable(encoder, config.contrastive.lora)
        monitor = bench_monitor(encoder, bench, config, metrics, accelerator)
        losses = run_contrastive(
            encoder, train_studies, pool, config.contrastive, config.seed, run, monitor=monitor
        )
        log.info(
            "contrastive: loss %.3f -> %.3f over %d steps", _mean(losses[:5]), _mean(losses[-5:]), len(losses)
        )
        if stop_at_step is not None and stop_at_step < run.step_offset + config.contrastive.steps:
            return out
        if wi != 1.0:
            encoder.scale_lora(wi)
            log.info("kept %.2f of the contrastive LoRA update (WiSE-FT)", wi)
            if monitor is not None:
                monitor(config.contrastive.steps, weight_interpolation=wi)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        encoder.save_pretrained(out, merge=True if config.save == "merged" else None)
        metrics.write(
            "done",
            run.step_offset + config.contrastive.steps * config.contrastive.enabled,
            train_seconds=round(time.perf_counter() - started, 1),
        )
    return out


def _make_trainable(encoder: TextEncoder, lora: Any) -> None:
    """Fresh LoRA adapters for a stage, or full fine-tuning when the stage's LoRA is disabled."""
    if lora.enabled:
        encoder.apply_lora(lora)
    else:
        encoder.unfreeze_backbone()


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan
