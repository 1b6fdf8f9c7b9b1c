"""Text-encoder training: MNTP (stage 1) then supervised contrastive learning (stage 2).

One explicit loop per stage, readable top to bottom. Data: the train split of a manifest or of the
Open-i archive only; variants (rule styles and single errors, plus LLM variants from a store) are made
once and cached in the run directory. Multi-process runs go through Accelerate.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from lexray.config import save_config
from lexray.data.study import Study
from lexray.text.config import ContrastiveConfig, MNTPConfig, TextDataConfig, TextTrainConfig
from lexray.text.contrastive import InfoNCELoss, false_negative_mask, grad_cache_backward
from lexray.text.encoder import TextEncoder
from lexray.text.mntp import MNTPHead, MNTPLoss, mask_batch, mask_token_id
from lexray.text.pairs import (
    ContrastiveExample,
    batches_without_duplicates,
    build_examples,
    distinct_equivalents,
)
from lexray.training import (
    MetricsLog,
    build_adamw,
    gather_rows,
    gather_varlen_with_grad,
    gather_with_grad,
    latest_checkpoint,
    load_checkpoint,
    lr_schedule,
    make_accelerator,
    optimizer_step,
    param_groups,
    rank_slice,
    save_checkpoint,
)
from lexray.training.checkpoint import TRAINER_STATE
from lexray.training.distributed import require_single_backward
from lexray.training.memory import configure_cpu_memory, release_free_memory

log = logging.getLogger(__name__)

FORBIDDEN_SPLITS = ("val", "validate", "validation", "test")
VARIANTS_SUBDIR = "variants"


# ----------------------------------------------------------------------------------------------
# data


def load_train_studies(config: TextDataConfig) -> list[Study]:
    """The studies of ``config.split`` (never val or test) from a manifest or the Open-i archive.

    Raises:
        ValueError: no source is configured, the split is a val/test split, or nothing is left.
    """
    if config.split.lower() in FORBIDDEN_SPLITS:
        raise ValueError(f"data.split={config.split!r}: the text encoder never trains on val or test studies")
    from lexray.data.manifest import read_studies

    studies = read_studies(config.manifest, config.openi, config.split_file)
    source = config.manifest or config.openi
    studies = [s for s in studies if s.split == config.split and s.report_text]
    if config.max_studies:
        studies = studies[: config.max_studies]
    if not studies:
        raise ValueError(f"{source}: no {config.split!r} studies with report text")
    log.info("training on %d %s studies from %s", len(studies), config.split, source)
    return studies


@dataclasses.dataclass
class VariantPool:
    """Accepted variant texts per study, and each study's finding-label key."""

    equivalents: dict[str, list[str]]  # study id -> clinically equivalent texts
    errors: dict[str, list[str]]  # study id -> single-error texts
    label_keys: dict[str, str]  # study id -> labels as a string ("" = unknown)


def prepare_variants(
    studies: Sequence[Study], config: TextDataConfig, seed: int, cache_dir: Path
) -> VariantPool:
    """Rule + error variants for ``studies`` (made once, cached in ``cache_dir``) plus store variants.

    Only accepted records of the given (train) studies are used, so a store that also holds val/test
    studies cannot leak them into training.
    """
    from lexray.variants import (
        ERROR_STYLE,
        ERROR_TYPES,
        RULE_STYLES,
        VariantStore,
        make_error_variants_batch,
        make_rule_variants_batch,
        source_text,
    )
    from lexray.variants.checks import CachedLabeler, get_default_labeler
    from lexray.variants.rules import rules_version

    labeler = CachedLabeler(get_default_labeler())
    styles = list(config.styles or RULE_STYLES)
    types = list(config.error_types or ERROR_TYPES)
    cache = VariantStore(cache_dir)
    # Records made by other rules (an older lexicon or labeler) are neither reused nor trained on.
    version = rules_version()
    existing = list(cache.iter_records())
    cached = [r for r in existing if r.prompt_version == version]
    stale = len(existing) - len(cached)
    if stale:
        log.info("remaking variants: %d cached records were made by other rules than %s", stale, version)
    done = {(r.study_id, r.style, r.error_type or "") for r in cached}
    # Only what the cache lacks is made, per style and error type, so a run that adds a style reuses the rest.
    jobs = [(style, "") for style in styles] + [(ERROR_STYLE, t) for t in types]
    todo = {job: [s for s in studies if (s.study_id, *job) not in done] for job in jobs}
    chunk = 64
    total = sum(math.ceil(len(part) / chunk) for part in todo.values())
    made: list[Any] = []
    with tqdm(total=total, desc="variants", unit="chunk", disable=not total) as bar:
        for (style, error_type), missing in todo.items():
            for start in range(0, len(missing), chunk):
                part = missing[start : start + chunk]
                if error_type:
                    batch = make_error_variants_batch(part, [error_type], seed, labeler)
                else:
                    batch = make_rule_variants_batch(part, [style], seed, labeler)
                cache.add(batch)
                made += batch
                bar.update()
    # The cache's current records plus the new ones, in the store's order (new ones are appended); the
    # cache may hold styles and error types this run does not use.
    records = [
        r for r in cached + made if (r.error_type in types if r.kind == "error" else r.style in styles)
    ]
    if config.variant_store:
        records += list(VariantStore(config.variant_store).iter_records())
    ids = {s.study_id for s in studies}
    pool = VariantPool({}, {}, {})
    skipped = 0
    for r in records:
        if r.study_id not in ids or not r.accepted or not r.text.strip():
            skipped += r.study_id not in ids
            continue
        target = pool.equivalents if r.kind == "equivalent" else pool.errors
        target.setdefault(r.study_id, []).append(r.text)
    if skipped:
        log.info("ignored %d store records of studies outside the training split", skipped)
    if config.use_labeler:
        labels = labeler.pipe([source_text(s) for s in studies])
        pool.label_keys = {s.study_id: "|".join(lab.vector()) for s, lab in zip(studies, labels, strict=True)}
    n_eq = sum(map(len, pool.equivalents.values()))
    n_err = sum(map(len, pool.errors.values()))
    log.info("variants: %d equivalent and %d error texts for %d studies", n_eq, n_err, len(studies))
    return pool


def fabricated_studies(
    studies: Sequence[Study], cache_dir: Path, share: float, seed: int
) -> tuple[list[Study], dict[str, str]]:
    """Synthetic abnormal studies: train reports with one inserted finding, from the variant cache.

    Most Open-i train reports are normal, so fewer than a quarter offer a side, a lobe or a degree that
    a laterality, location or severity error could change. A report with one fabricated finding ("A
    small left pleural effusion is present.") does, and training on it with its own variants and
    errors teaches the encoder that one changed side or degree word changes the report.

    Args:
        studies: the train studies whose accepted ``fabricated`` error variants are in ``cache_dir``.
        cache_dir: the run's variant cache.
        share: fraction of the studies with a sided fabricated finding turned into a synthetic study
            (drawn with ``seed``).
        seed: seed of the draw.

    Returns:
        (synthetic studies, synthetic study id -> its source report in the standard layout). The source
        report differs from the synthetic one by exactly the inserted finding: a hard negative.
    """
    from lexray.variants import SIDED_FABRICATIONS, VariantStore, parse_sections, source_text
    from lexray.variants.rules import rules_version

    # Only findings inserted with a side: the others ("The heart is enlarged.") add no side, lobe or
    # degree, and some contradict a normal sentence left in the report.
    by_id = {s.study_id: s for s in studies}
    records = [
        r
        for r in VariantStore(cache_dir).iter_records()
        if r.accepted
        and r.prompt_version == rules_version()
        and r.error_type == "fabricated"
        and r.target in SIDED_FABRICATIONS
        and r.study_id in by_id
    ]
    chosen = random.Random(f"{seed}|fabricated-studies").sample(records, round(share * len(records)))
    out: list[Study] = []
    sources: dict[str, str] = {}
    for r in chosen:
        parent = by_id[r.study_id]
        findings, impression = parse_sections(r.text)
        study = dataclasses.replace(
            parent,
            study_id=f"{parent.study_id}+{r.target}",
            findings=findings,
            impression=impression,
            report="",
            images=(),
            extra={**parent.extra, "synthetic": "fabricated"},
        )
        out.append(study)
        sources[study.study_id] = source_text(parent)
    return out, sources


def merge_pools(first: VariantPool, second: VariantPool) -> VariantPool:
    """One pool holding the variants and label keys of both (study ids must not overlap)."""
    return VariantPool(
        {**first.equivalents, **second.equivalents},
        {**first.errors, **second.errors},
        {**first.label_keys, **second.label_keys},
    )


# ----------------------------------------------------------------------------------------------
# shared loop pieces


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
class _Run:
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


def _plan(make_epoch: Callable[[int], list[list[Any]]], state: StageState) -> Iterator[list[Any]]:
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


def _stage_optimizer(
    encoder: TextEncoder, lr: float, weight_decay: float, warmup: int, total: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW (torch defaults) over the trainable weights; linear warmup, then linear decay to zero."""
    optimizer = build_adamw(param_groups(encoder, lr, weight_decay), lr)
    return optimizer, lr_schedule(optimizer, warmup, total, shape="linear")


# ----------------------------------------------------------------------------------------------
# stage 1: MNTP


def run_mntp(
    encoder: TextEncoder, texts: Sequence[str], config: MNTPConfig, seed: int, run: _Run
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
    optimizer, scheduler = _stage_optimizer(
        encoder, config.lr, config.weight_decay, config.warmup_steps, config.steps
    )
    model, optimizer = accelerator.prepare(encoder, optimizer)
    state = StageState("mntp")
    resumed = run.resume_for("mntp")
    if resumed is not None:
        state = StageState(**resumed)
        scheduler.load_state_dict(state.scheduler)
        generator.set_state(torch.tensor(state.mask_rng, dtype=torch.uint8))
    size = config.batch_size * world

    def epoch(k: int) -> list[list[str]]:
        order = list(texts)
        random.Random(seed * 1000 + k).shuffle(order)
        return [order[i : i + size] for i in range(0, len(order) - size + 1, size)]

    batches = _plan(epoch, state)
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
        if (state.step - 1) % run.log_every == 0 or state.step == config.steps:
            run.metrics.write(
                "mntp",
                state.step,
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
    run: _Run,
    monitor: Callable[[int], None] | None = None,
) -> list[float]:
    """Supervised contrastive training on variant pairs; returns the loss per step.

    Each process takes its slice of one duplicate-free global batch. ``monitor(step)`` is called after
    every step with the number of steps done (see :func:`_bench_monitor`).
    """
    accelerator = run.accelerator
    loss_fn = InfoNCELoss(scale=config.scale, symmetric=config.symmetric)
    optimizer, scheduler = _stage_optimizer(
        encoder, config.lr, config.weight_decay, config.warmup_steps, config.steps
    )
    if config.chunk_size:
        require_single_backward(accelerator, "contrastive.chunk_size > 0 (GradCache)")
    model, optimizer = accelerator.prepare(encoder, optimizer)
    state = StageState("contrastive")
    resumed = run.resume_for("contrastive")
    if resumed is not None:
        state = StageState(**resumed)
        scheduler.load_state_dict(state.scheduler)
    rank, world = accelerator.process_index, accelerator.num_processes
    batches = _plan(lambda k: contrastive_epoch(studies, pool, config, seed, k, world), state)
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
        if (state.step - 1) % run.log_every == 0 or state.step == config.steps:
            run.metrics.write(
                "contrastive",
                state.step,
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


def _bench_monitor(
    encoder: TextEncoder, config: TextTrainConfig, metrics: MetricsLog, accelerator: Any
) -> Callable[..., None] | None:
    """Score the encoder on ``config.eval_bench`` every ``config.eval_every`` steps and after the last.

    The bench is only embedded, never trained on; its scores go to ``metrics.jsonl`` as
    ``{"stage": "bench", ...}`` records so a run's trajectory can be read afterwards. Extra keyword
    arguments force a score now and are written with it (the final weight interpolation).
    """
    if not (config.eval_bench and config.eval_every and accelerator.is_main_process):
        return None
    from lexray.text.bench import evaluate_bench, load_bench

    items = load_bench(config.eval_bench)
    last = config.contrastive.steps

    def monitor(step: int, **extra: Any) -> None:
        if step % config.eval_every and step != last and not extra:
            return
        scores = evaluate_bench(lambda texts: encoder.encode(texts, batch_size=32), items)
        metrics.write("bench", step, **extra, **{k: round(v, 4) for k, v in scores.items()})
        log.info(
            "bench at step %d: %s",
            step,
            " ".join(f"{k}={v:.2f}" for k, v in scores.items() if k.endswith("R@1") or "errdisc" in k),
        )

    return monitor


# ----------------------------------------------------------------------------------------------
# the run


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
    if accelerator.is_main_process:
        save_config(config, out)
    metrics = MetricsLog(out, accelerator.is_main_process, accelerator.num_processes, config.mixed_precision)
    ckpt = latest_checkpoint(out) if config.resume else None
    run = _Run(
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
        run.step_offset = config.mntp.steps
    if config.contrastive.enabled:
        # The main process makes the run's variant cache; the others then find it complete and read it.
        with accelerator.main_process_first():
            pool = prepare_variants(studies, config.data, config.seed, out / VARIANTS_SUBDIR)
        train_studies = list(studies)
        if config.data.fabricated_studies:
            extra, sources = fabricated_studies(
                studies, out / VARIANTS_SUBDIR, config.data.fabricated_studies, config.seed
            )
            with accelerator.main_process_first():
                extra_pool = prepare_variants(
                    extra, config.data, config.seed, out / VARIANTS_SUBDIR / "fabricated"
                )
            for sid, text in sources.items():
                extra_pool.errors.setdefault(sid, []).append(text)
            pool = merge_pools(pool, extra_pool)
            train_studies += extra
            log.info("added %d synthetic studies with one fabricated finding each", len(extra))
        if config.data.distinct_positives:
            kept = distinct_equivalents(train_studies, pool.equivalents)
            dropped = sum(map(len, pool.equivalents.values())) - sum(map(len, kept.values()))
            pool.equivalents = kept
            log.info("dropped %d equivalent variants shared by reports with other content", dropped)
        release_free_memory()  # the variants and labels are made: their scratch memory goes back
        _make_trainable(encoder, config.contrastive.lora)
        monitor = _bench_monitor(encoder, config, metrics, accelerator)
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
