"""The dual-encoder training loop, on Accelerate, readable top to bottom.

Run directory layout::

    config.yaml          the resolved ClipTrainConfig
    metrics.jsonl        one JSON object per logged step and per validation (lexray.training.metrics)
    tb/                  TensorBoard scalars
    skipped.jsonl        studies left out (no text, no image file), with the reason
    checkpoints/step-N/  Accelerate state (trainable weights, optimizer, scheduler, scaler, RNG)
                         + trainer_state.json (step, epoch, batch position, best score)
    best/                the model with the best validation score (a DualEncoder directory)
    final/               the model after the last step

Resume is exact: batches are a pure function of (seed, epoch, position) and the checkpoint holds the
RNG states, so an interrupted and resumed run ends with the same weights as an uninterrupted one.

With several processes (``accelerate launch --num_processes N``) each process takes its slice of one
duplicate-free global batch of ``batch_size x N`` pairs, and the loss gathers every slice's embeddings.

With a frozen text tower the report features come from the on-disk cache (LLM2CLIP): the LLM runs
once per distinct text, ever, instead of once per step.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from lexray.clip.config import DualEncoderConfig
from lexray.clip.data import (
    BatchPlanner,
    ClipDataConfig,
    Draw,
    Pair,
    SourceConfig,
    augment_images,
    load_pairs,
    load_variants,
    write_skipped,
)
from lexray.clip.losses import LOSSES
from lexray.clip.model import DualEncoder
from lexray.clip.validate import embed_pairs, retrieval_metrics
from lexray.config import save_config
from lexray.training import (
    MetricsLog,
    OptimConfig,
    build_adamw,
    latest_checkpoint,
    load_checkpoint,
    lr_schedule,
    make_accelerator,
    optimizer_step,
    param_groups,
    rank_slice,
    save_checkpoint,
)
from lexray.training.distributed import require_single_backward
from lexray.training.memory import configure_cpu_memory
from lexray.training.optim import layer_decay_lr

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClipTrainConfig:
    """A dual-encoder training run."""

    output_dir: str = "runs/clip"  # run directory (see the module docstring)
    seed: int = 0  # seed of initialisation, batches and augmentation
    threads: int = 0  # torch CPU threads (0 = torch default)
    model: DualEncoderConfig = field(default_factory=DualEncoderConfig)  # the dual encoder
    data: ClipDataConfig = field(default_factory=ClipDataConfig)  # training and validation pairs
    optim: OptimConfig = field(default_factory=OptimConfig)  # optimizer and schedule
    loss: Literal["clip", "siglip"] = "clip"  # symmetric InfoNCE or pairwise sigmoid
    batch_size: int = 32  # pairs per micro-batch per process (the global batch is this x processes)
    grad_accum: int = 1  # micro-batches per optimizer step (negatives stay within a micro-batch)
    max_steps: int = 1000  # optimizer steps
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"  # autocast precision (fp16 adds a loss scaler)
    log_every: int = 10  # steps between metrics.jsonl / TensorBoard lines
    eval_every: int = 200  # steps between validation retrievals (0 = only at the end)
    save_every: int = 500  # steps between resumable checkpoints (0 = only at the end)
    keep_checkpoints: int = 2  # most recent checkpoints kept
    eval_ks: tuple[int, ...] = (1, 5, 10)  # Recall@K cut-offs; the best model maximises their sum
    select_on: Literal["exact", "group"] = "exact"  # which validation ground truth picks the best model
    eval_batch_size: int = 64  # images / texts per validation forward
    resume: bool = True  # continue from the latest checkpoint in output_dir when there is one


def build_optimizer(model: DualEncoder, optim: OptimConfig) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters, grouped by learning-rate scale and weight decay.

    Image-tower parameters get ``lr * layer_decay ** (depth + 1 - layer_id)`` (BEiT/EVA layer decay:
    lower blocks move less); projections and the temperature get ``lr``; text-tower weights ``text_lr``.
    """
    tower = model.image_tower
    depth = tower.num_layers + 1

    def lr_of(name: str) -> float:
        if name.startswith("image_tower."):
            layer = tower.layer_id(name.removeprefix("image_tower."))
            return layer_decay_lr(optim.lr, optim.layer_decay, layer, depth)
        if name.startswith("text_tower."):
            return optim.text_lr or optim.lr
        return optim.lr

    groups = param_groups(model, optim.lr, optim.weight_decay, lr_of)
    return build_adamw(groups, optim.lr, betas=optim.betas, eps=optim.eps)


class ImageStore:
    """Reads, preprocesses and (optionally) keeps in memory the image of each draw."""

    def __init__(self, model: DualEncoder, cache: bool) -> None:
        self.preprocess = model.image_tower.preprocess
        self.cache: dict[str, torch.Tensor] | None = {} if cache else None
        self.failures = 0

    def load(self, path: str) -> torch.Tensor:
        """Preprocessed (C, S, S) tensor of one image file.

        Raises:
            lexray.data.images.ImageError: the file cannot be read.
        """
        if self.cache is not None and path in self.cache:
            return self.cache[path].float()
        from lexray.data.images import load_radiograph

        x = self.preprocess(load_radiograph(path).pixels)
        if self.cache is not None:
            self.cache[path] = x.half()  # half the memory; preprocessing output needs no more precision
        return x.float() if self.cache is not None else x


@dataclass
class TrainerState:
    """Where a run is: saved with each checkpoint."""

    step: int = 0  # optimizer steps done
    epoch: int = 0  # current epoch of the batch plan
    batch: int = 0  # next batch index within the epoch
    best_score: float = -1.0  # best validation selection score so far
    best_step: int = 0  # step of the best model


def _batches(planner: BatchPlanner, state: TrainerState) -> Iterator[list[Draw]]:
    """Endless batches from the planner, advancing ``state.epoch`` / ``state.batch`` as it goes."""
    while True:
        plan = planner.batches(state.epoch)
        if state.batch >= len(plan):
            state.epoch, state.batch = state.epoch + 1, 0
            continue
        draws = plan[state.batch]
        state.batch += 1
        yield draws


def train(config: ClipTrainConfig, stop_at_step: int | None = None) -> Path:
    """Train a dual encoder as ``config`` says; return the run directory.

    Args:
        config: the run.
        stop_at_step: stop after this step with a checkpoint, as an interruption would (the run can
            then be resumed); None runs to ``max_steps``.
    """
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm

    # Before the first multiplication: varying batch shapes otherwise grow oneDNN's kernel caches and
    # fragment the heap over a CPU run (lexray.training.memory).
    configure_cpu_memory()
    if config.threads:
        torch.set_num_threads(config.threads)
    run_dir = Path(config.output_dir)
    accelerator = make_accelerator(config.mixed_precision, project_dir=str(run_dir))
    main = accelerator.is_main_process
    rank, world = accelerator.process_index, accelerator.num_processes
    if main:
        save_config(config, run_dir)
    set_seed(config.seed)

    # ---- model -------------------------------------------------------------------------------
    model = DualEncoder.from_config(config.model)
    cached_text = model.text_frozen
    if cached_text:
        model.attach_text_cache()
    model.to(accelerator.device)

    # ---- data ---------------------------------------------------------------------------------
    if not config.data.sources:
        raise ValueError("data.sources is empty: give at least one training manifest")
    pairs: list[Pair] = []
    weights: list[float] = []
    skipped: list[tuple[str, str, str]] = []
    for source in config.data.sources:
        got, bad = load_pairs(source)
        pairs += got
        weights += [source.weight] * len(got)
        skipped += [(source.name or source.manifest, sid, why) for sid, why in bad]
    val_pairs: list[Pair] = []
    if config.data.val is not None:
        val_pairs, bad = load_pairs(config.data.val)
        skipped += [(config.data.val.name or config.data.val.manifest, sid, why) for sid, why in bad]
        if config.data.max_val:
            val_pairs = val_pairs[: config.data.max_val]
    if main:
        write_skipped(skipped, run_dir / "skipped.jsonl")
    augment = config.data.augment
    variants = (
        load_variants(augment.variant_store, {p.study_id for p in pairs}) if augment.variant_store else {}
    )
    # One duplicate-free global batch per step; each process takes its slice of it.
    planner = BatchPlanner(pairs, weights, config.batch_size * world, augment, variants, seed=config.seed)
    images = ImageStore(model, config.data.cache_images)
    val_texts = [p.text(augment.format) for p in val_pairs]
    if cached_text:
        # Fill the cache once up front; later lookups of these texts never touch the LLM.
        base = sorted(
            {p.text(augment.format) for p in pairs}
            | set(val_texts)
            | {t for v in variants.values() for t in v}
        )
        chunk = 256
        # The main process computes each feature once; the others then re-read its shards (all hits).
        with accelerator.main_process_first():
            if not main:
                model.attach_text_cache()
            for start in tqdm(
                range(0, len(base), chunk), desc="text features", disable=not main, unit="chunk"
            ):
                model.text_features(base[start : start + chunk], batch_size=config.eval_batch_size)
    log.info("training on %d pairs (%d skipped), validating on %d", len(pairs), len(skipped), len(val_pairs))

    # ---- optimisation -------------------------------------------------------------------------
    optimizer = build_optimizer(model, config.optim)
    scheduler = lr_schedule(
        optimizer,
        config.optim.warmup_steps,
        config.max_steps,
        config.optim.schedule,
        config.optim.min_lr_ratio,
    )
    if config.grad_accum > 1:
        require_single_backward(accelerator, f"grad_accum={config.grad_accum}")
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.register_for_checkpointing(scheduler)
    raw: DualEncoder = accelerator.unwrap_model(model)
    trainable = {n for n, p in raw.named_parameters() if p.requires_grad}
    frozen_text = {n for n, _ in raw.named_parameters() if n.startswith("text_tower.") and n not in trainable}

    def drop_frozen_text(models: list[nn.Module], weights_: list[dict[str, Any]], output_dir: str) -> None:
        # The frozen LLM is rebuilt from its reference: checkpoints hold only what training changes.
        for w in weights_:
            for key in [k for k in w if k.removeprefix("module.") in frozen_text]:
                del w[key]

    accelerator.register_save_state_pre_hook(drop_frozen_text)
    loss_fn = LOSSES[config.loss]()

    state = TrainerState()
    ckpt = latest_checkpoint(run_dir) if config.resume else None
    if ckpt is not None:
        state = TrainerState(**load_checkpoint(accelerator, ckpt))
        log.info(
            "resumed from %s at step %d (epoch %d, batch %d)", ckpt, state.step, state.epoch, state.batch
        )

    metrics_log = MetricsLog(run_dir, main, world, config.mixed_precision, tensorboard=True)
    global_batch = config.batch_size * world * config.grad_accum

    def load_pixels(pair: Pair, image: int = 0) -> torch.Tensor:
        return images.load(pair.images[image])

    def validate() -> dict[str, float]:
        # Each process embeds its share; all of them score the whole set, so the best step agrees.
        imgs, txts = embed_pairs(raw, val_pairs, load_pixels, val_texts, config.eval_batch_size, rank, world)
        groups = [p.group for p in val_pairs] if all(p.group for p in val_pairs) else None
        return {f"val/{k}": v for k, v in retrieval_metrics(imgs, txts, groups, config.eval_ks).items()}

    # ---- the loop -----------------------------------------------------------------------------
    batches = _batches(planner, state)
    end = min(config.max_steps, stop_at_step) if stop_at_step is not None else config.max_steps
    bar = tqdm(total=config.max_steps, initial=state.step, desc="clip", disable=not main, unit="step")
    window_start, window_steps = time.perf_counter(), 0
    while state.step < end:
        model.train()
        if cached_text:
            raw.text_tower.eval()  # frozen: no dropout in it, whatever model.train() set
        terms_sum: dict[str, float] = {}
        for micro in range(config.grad_accum):
            draws = rank_slice(next(batches), rank, world)
            pixels, texts = [], []
            for d in draws:
                try:
                    pixels.append(load_pixels(planner.pairs[d.pair], d.image))
                    texts.append(d.text)
                except ValueError as exc:  # ImageError: an unreadable file costs one pair, not the run
                    images.failures += 1
                    log.warning("skipping an unreadable image (%d so far): %s", images.failures, exc)
            if len(pixels) < 2:
                continue
            batch_pixels = torch.stack(pixels)  # (B, C, S, S)
            if config.data.image_augment.enabled:
                # Seeded by the batch's position, so a resumed run perturbs identically.
                rng = np.random.default_rng([config.seed, state.epoch, 2, state.batch] + [rank] * (world > 1))
                batch_pixels = augment_images(batch_pixels, rng, config.data.image_augment)
            batch_pixels = batch_pixels.to(accelerator.device)
            text_in = raw.text_features(texts) if cached_text else raw.text_tower.tokenize(texts)
            sync = micro == config.grad_accum - 1
            with accelerator.no_sync(model) if not sync else nullcontext(), accelerator.autocast():
                out = model(batch_pixels, text_in)
                terms = loss_fn(out["image"], out["text"], out["logit_scale"], out["logit_bias"])
                loss = sum(terms.values()) / config.grad_accum
                accelerator.backward(loss)
            for k, v in terms.items():
                terms_sum[k] = terms_sum.get(k, 0.0) + float(v.detach()) / config.grad_accum
        grad_norm = optimizer_step(accelerator, model, optimizer, scheduler, config.optim.grad_clip)
        state.step += 1
        window_steps += 1
        bar.update(1)

        if state.step % config.log_every == 0 or state.step == end:
            elapsed = time.perf_counter() - window_start
            row = {
                "epoch": state.epoch,
                "lr": scheduler.get_last_lr()[0],
                "loss": sum(terms_sum.values()),
                **{f"loss/{k}": v for k, v in terms_sum.items()},
                "temperature": 1.0 / float(raw.scale().detach()),
                "grad_norm": grad_norm,
                "steps_per_s": window_steps / max(elapsed, 1e-9),
            }
            metrics_log.write("clip", state.step, global_batch=global_batch, **row)
            bar.set_postfix(loss=f"{row['loss']:.3f}", T=f"{row['temperature']:.3f}")
            window_start, window_steps = time.perf_counter(), 0

        at_end = state.step == config.max_steps
        if val_pairs and ((config.eval_every and state.step % config.eval_every == 0) or at_end):
            metrics = validate()
            metrics_log.write("val", state.step, **metrics)
            score = metrics.get(f"val/{config.select_on}/rsum", metrics["val/exact/rsum"])
            if main:
                log.info("step %d: validation %s rsum %.1f", state.step, config.select_on, score)
            if score > state.best_score:
                state.best_score, state.best_step = score, state.step
                if main:
                    raw.save_pretrained(run_dir / "best")
        if (config.save_every and state.step % config.save_every == 0) or state.step == end:
            save_checkpoint(accelerator, run_dir, state.step, state.__dict__, config.keep_checkpoints)
    bar.close()

    if state.step >= config.max_steps and main:
        raw.save_pretrained(run_dir / "final")
        if not val_pairs:  # nothing to select on: the last model is the best we know
            raw.save_pretrained(run_dir / "best")
        metrics_log.write("done", state.step, best_step=state.best_step, best_score=state.best_score)
    if cached_text and raw.text_cache is not None:
        log.info("text feature cache: %d hits, %d misses", raw.text_cache.hits, raw.text_cache.misses)
    metrics_log.close()
    accelerator.wait_for_everyone()
    return run_dir


def fill_text_cache(
    config: ClipTrainConfig,
    extra: Sequence[SourceConfig] = (),
    shard: int = 0,
    num_shards: int = 1,
) -> int:
    """Compute the frozen text tower's features of a run's texts ahead of training (LLM2CLIP's pre-pass).

    Several processes (``shard`` of ``num_shards``) can fill one cache side by side; each writes its
    own shards. ``extra`` adds e.g. the test split, so evaluation finds its texts cached too.

    Returns:
        The number of texts this shard handled.
    """
    from tqdm.auto import tqdm

    if config.threads:
        torch.set_num_threads(config.threads)
    if config.model.text.mode != "frozen":
        raise ValueError("only a frozen text tower (model.text.mode=frozen) has cached features")
    model = DualEncoder.from_config(config.model)
    model.attach_text_cache()
    sources = [*config.data.sources, *([config.data.val] if config.data.val else []), *extra]
    texts: set[str] = set()
    for source in sources:
        pairs, _ = load_pairs(source)
        texts.update(p.text(config.data.augment.format) for p in pairs)
    # Similar lengths per chunk: batches are padded to their longest text.
    mine = sorted(sorted(texts)[shard::num_shards], key=len)
    chunk = 64
    for start in tqdm(
        range(0, len(mine), chunk), desc=f"text features {shard + 1}/{num_shards}", unit="chunk"
    ):
        model.text_features(mine[start : start + chunk], batch_size=config.eval_batch_size)
    return len(mine)


def load_train_config(
    path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()
) -> ClipTrainConfig:
    """The run configuration from a YAML recipe plus ``a.b=c`` overrides."""
    from lexray.config import load_config

    return load_config(ClipTrainConfig, path, overrides)
