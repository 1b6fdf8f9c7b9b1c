"""The two training loops, each readable top to bottom: MNTP (stage 1) and supervised contrastive (stage 2).

Each process takes its slice of one global batch; checkpoints, logging and resume go through
:class:`~lexray.text.train._stage.StageRun`.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

from lexray.data.study import Study
from lexray.text.config import ContrastiveConfig, MNTPConfig
from lexray.text.contrastive import InfoNCELoss, false_negative_mask, grad_cache_backward
from lexray.text.encoder import TextEncoder
from lexray.text.mntp import MNTPHead, MNTPLoss, mask_batch, mask_token_id
from lexray.text.pairs import ContrastiveExample, batches_without_duplicates, build_examples
from lexray.text.train._stage import StageRun, endless_batches
from lexray.text.train.data import VariantPool
from lexray.training import (
    gather_rows,
    gather_varlen_with_grad,
    gather_with_grad,
    optimizer_step,
    rank_slice,
)
from lexray.training.distributed import require_single_backward

# ----------------------------------------------------------------------------------------------
# stage 1: MNTP


def run_mntp(
    encoder: TextEncoder, texts: Sequence[str], config: MNTPConfig, seed: int, run: StageRun
) -> list[float]:
    """Train the encoder's adapters with masked next-token prediction; returns the loss per step.

    Each process takes its slice of one global batch of ``batch_size x world`` reports.
    """
    accelerator = run.accelerator
    rank, world = accelerator.process_index, accelerator.num_processes
    generator = torch.Generator().manual_seed(seed + rank)
    head = MNTPHead.from_encoder(encoder)
    loss_fn = MNTPLoss(head)
    mask_id = mask_token_id(encoder)
    vocab = encoder.base_model().get_input_embeddings().weight.shape[0]
    model, optimizer, scheduler, state = run.start(encoder, config, "mntp")
    if state.mask_rng:  # resumed: masking goes on where the checkpoint left it
        generator.set_state(torch.tensor(state.mask_rng, dtype=torch.uint8))
    size = config.batch_size * world

    def epoch(k: int) -> list[list[str]]:
        order = list(texts)
        random.Random(seed * 1000 + k).shuffle(order)
        return [order[i : i + size] for i in range(0, len(order) - size + 1, size)]

    batches = endless_batches(epoch, state)
    losses: list[float] = []
    model.train()
    bar = tqdm(
        total=config.steps, initial=state.step, desc="mntp", disable=not accelerator.is_local_main_process
    )
    while state.step < config.steps:
        t0 = time.perf_counter()
        mine = rank_slice(next(batches), rank, world)
        batch, labels = mask_batch(encoder.tokenize(mine), config.mask_prob, mask_id, vocab, generator)
        hidden = model(batch, pool=False)  # (B, T, D) token states
        terms = loss_fn(hidden, labels)
        accelerator.backward(sum(terms.values()))
        optimizer_step(accelerator, model, optimizer, scheduler, config.grad_clip)
        state.step += 1
        loss = float(accelerator.reduce(sum(terms.values()).detach(), "mean"))
        losses.append(loss)
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.3f}")
        run.log_step(
            state,
            config.steps,
            global_batch=size,
            loss=loss,
            lr=scheduler.get_last_lr()[0],
            sec=round(time.perf_counter() - t0, 3),
        )
        if run.after_step(state, scheduler, generator):
            break
    bar.close()
    accelerator.free_memory()  # the next stage prepares its own model wrapper and optimizer
    return losses


# ----------------------------------------------------------------------------------------------
# stage 2: contrastive


# stage 2: contrastive


def contrastive_step(
    model: Any,
    encoder: TextEncoder,
    batch: Sequence[ContrastiveExample],
    loss_fn: InfoNCELoss,
    config: ContrastiveConfig,
    accelerator: Any,
) -> dict[str, torch.Tensor]:
    """Forward and backward of this process's share of a contrastive batch (the step is the caller's).

    Positives, hard negatives and (for the symmetric term) anchors are gathered from every process with
    their gradients flowing back to the process that embedded them; false-negative keys are gathered
    too, so masking covers the global batch. The loss is this process's mean over its anchors; with DDP's
    gradient averaging the update is that of the mean loss over the global batch.
    """
    anchors = [ex.anchor for ex in batch]
    positives = [ex.positive for ex in batch]
    negatives = [t for ex in batch for t in ex.negatives]
    keys = torch.tensor([ex.keys for ex in batch], dtype=torch.long)  # (B, 3)
    if not config.mask_same_labels:
        keys[:, 2] = -1
    keys = keys.to(accelerator.device)
    all_keys = gather_rows(keys)  # (world * B, 3)

    def embed(texts: Sequence[str]) -> torch.Tensor:
        return model(encoder.tokenize(list(texts)))

    def loss_from(reps: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        a, p = reps[0], reps[1]
        p_all, offset = gather_with_grad(p)  # (world * B, D)
        n_all = gather_varlen_with_grad(reps[2])[0] if len(reps) > 2 else None  # (sum of M, D)
        a_all = gather_with_grad(a)[0] if config.symmetric else None
        fn_mask = false_negative_mask(keys, all_keys, offset)
        return loss_fn(a, p_all, n_all, fn_mask=fn_mask, offset=offset, all_anchors=a_all)

    # Every process must gather the same groups: with several, one without negatives sends an empty block.
    with_negatives = bool(negatives) if accelerator.num_processes == 1 else config.hard_negatives > 0
    groups = [anchors, positives] + ([negatives] if with_negatives else [])
    if config.chunk_size:
        return grad_cache_backward(
            embed,
            groups,
            loss_from,
            config.chunk_size,
            backward=accelerator.backward,
            no_sync=lambda: accelerator.no_sync(model),
        )
    flat = [t for g in groups for t in g]
    reps = list(
        torch.split(_embed_bucketed(model, encoder, flat, config.length_buckets), [len(g) for g in groups])
    )
    terms = loss_from(reps)
    accelerator.backward(sum(terms.values()))
    return {k: v.detach() for k, v in terms.items()}


def _embed_bucketed(model: Any, encoder: TextEncoder, texts: Sequence[str], buckets: int) -> torch.Tensor:
    """Features (n, D) with grad, computed in ``buckets`` forwards of similar-length texts (less padding)."""
    lengths = [len(ids) for ids, _ in encoder._encode_ids(texts)]
    order = sorted(range(len(texts)), key=lengths.__getitem__)
    size = math.ceil(len(texts) / max(1, buckets))
    parts = [order[i : i + size] for i in range(0, len(order), size)]
    feats = torch.cat([model(encoder.tokenize([texts[i] for i in part])) for part in parts])  # (n, D) sorted
    inverse = torch.empty(len(order), dtype=torch.long)
    inverse[torch.tensor(order)] = torch.arange(len(order))
    return feats[inverse.to(feats.device)]


def contrastive_epoch(
    studies: Sequence[Study],
    pool: VariantPool,
    config: ContrastiveConfig,
    seed: int,
    k: int,
    world: int = 1,
) -> list[list[ContrastiveExample]]:
    """The global batches (``batch_size x world`` examples, duplicate-free) of epoch ``k``."""
    rng = random.Random(seed * 1000 + k)
    examples = build_examples(
        studies,
        pool.equivalents,
        pool.errors,
        pool.label_keys,
        config.pairs_per_study,
        config.hard_negatives,
        config.findings_impression,
        rng,
        relayout_reports=config.relayout,
        reword_negatives=config.reword_negatives,
    )
    return list(batches_without_duplicates(examples, config.batch_size * world, rng))


def run_contrastive(
    encoder: TextEncoder,
    studies: Sequence[Study],
    pool: VariantPool,
    config: ContrastiveConfig,
    seed: int,
    run: StageRun,
    monitor: Callable[[int], None] | None = None,
) -> list[float]:
    """Supervised contrastive training on variant pairs; returns the loss per step.

    Each process takes its slice of one duplicate-free global batch. ``monitor(step)`` is called after
    every step with the number of steps done (see :func:`lexray.text.train.monitor.bench_monitor`).
    """
    accelerator = run.accelerator
    loss_fn = InfoNCELoss(scale=config.scale, symmetric=config.symmetric)
    if config.chunk_size:
        require_single_backward(accelerator, "contrastive.chunk_size > 0 (GradCache)")
    model, optimizer, scheduler, state = run.start(encoder, config, "contrastive")
    rank, world = accelerator.process_index, accelerator.num_processes
    batches = endless_batches(lambda k: contrastive_epoch(studies, pool, config, seed, k, world), state)
    losses: list[float] = []
    model.train()
    bar = tqdm(
        total=config.steps,
        initial=state.step,
        desc="contrastive",
        disable=not accelerator.is_local_main_process,
    )
    while state.step < config.steps:
        t0 = time.perf_counter()
        batch = rank_slice(next(batches), rank, world)
        terms = contrastive_step(model, encoder, batch, loss_fn, config, accelerator)
        optimizer_step(accelerator, model, optimizer, scheduler, config.grad_clip)
        state.step += 1
        terms = {k: accelerator.reduce(v, "mean") for k, v in terms.items()}  # global-batch means
        losses.append(float(sum(terms.values())))
        terms = {k: float(v) for k, v in terms.items()}
        bar.update(1)
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
        run.log_step(
            state,
            config.steps,
            global_batch=config.batch_size * world,
            loss=losses[-1],
            lr=scheduler.get_last_lr()[0],
            **terms,
            sec=round(time.perf_counter() - t0, 3),
        )
        if monitor is not None:
            monitor(state.step)
        if run.after_step(state, scheduler):
            break
    bar.close()
    return losses
