"""Training data of the dual encoder: image-report pairs from mixed sources, duplicate-free batches, text augmentation.

Every choice that shapes a batch is a pure function of ``(seed, epoch, position)``, so a run resumed
from a checkpoint that records ``(epoch, batch index)`` sees exactly the batches it would have seen.

* **Sources** are manifests with a weight: the expected number of times each of the source's studies
  is drawn per epoch (1 = every study once; 0.5 = a random half; 2 = twice).
* **One image per study per step**: a draw picks one of the study's images, rotating with the epoch, so
  every view is used across epochs.
* **Duplicate-free batches**: two identical reports (after case and whitespace folding) never share a
  batch; CXR corpora hold thousands of "No acute cardiopulmonary process." reports and a contrastive
  loss would push identical texts apart. Colliding draws wait for the next batch.
* **Text augmentation**: the report is written plain (findings + impression) or tagged
  (``[FINDINGS]{...} [IMPRESSION]{...}``, the published format), its sentences shuffled within each
  section with probability ``shuffle_prob``, and, with probability ``variant_prob``, replaced by a random
  clinically equivalent variant from a variant store.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from lexray.data.study import Study

log = logging.getLogger(__name__)

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class SourceConfig:
    """One manifest of training or validation pairs."""

    manifest: str = ""  # path of a lexray manifest.parquet
    split: str = "train"  # split whose studies are used
    weight: float = 1.0  # expected draws of each study per epoch (relative mixing weight)
    image_root: str = ""  # folder that relative image paths are under ("" = the manifest's folder)
    max_studies: int = 0  # keep only the first N studies (0 = all), for smoke runs
    name: str = ""  # label in logs and metrics ("" = the manifest file's parent folder name)


@dataclass(frozen=True)
class TextAugmentConfig:
    """How a study's report becomes the training text."""

    format: Literal["plain", "tagged"] = (
        "plain"  # plain: findings + impression; tagged: [FINDINGS]{..} [IMPRESSION]{..}
    )
    shuffle_prob: float = (
        0.0  # probability of shuffling the sentence order within each section (published 0.3)
    )
    variant_store: str = ""  # optional lexray VariantStore folder of equivalent report variants
    variant_prob: float = 0.0  # probability of training on a random equivalent variant instead of the report


@dataclass(frozen=True)
class ImageAugmentConfig:
    """Random image perturbations at training time (never a horizontal flip: sides carry meaning)."""

    enabled: bool = False  # apply the perturbations below
    translate: float = 0.04  # max shift as a fraction of the side, each axis
    scale: float = 0.06  # max zoom in or out (fraction)
    rotate: float = 4.0  # max rotation in degrees (patient positioning)
    contrast: float = 0.15  # max relative change of contrast (exposure)
    noise: float = 0.03  # standard deviation of added noise, in normalised units


@dataclass(frozen=True)
class ClipDataConfig:
    """Training and validation data."""

    sources: tuple[SourceConfig, ...] = ()  # training sources, mixed by weight
    val: SourceConfig | None = None  # validation pairs (retrieval every eval_every steps)
    max_val: int = 0  # cap on validation studies (0 = all)
    augment: TextAugmentConfig = field(default_factory=TextAugmentConfig)  # text augmentation
    image_augment: ImageAugmentConfig = field(default_factory=ImageAugmentConfig)  # image augmentation
    cache_images: bool = True  # keep decoded, preprocessed images in memory after the first read


@dataclass(frozen=True)
class Pair:
    """A study usable for training: its report sections and image files."""

    study_id: str  # the study id (unique within its source)
    source: str  # source label
    findings: str  # findings section ("" when absent)
    impression: str  # impression section ("" when absent)
    images: tuple[str, ...]  # absolute image paths
    group: str = ""  # optional ground-truth group (e.g. the phantom findings key) for evaluation

    def text(self, fmt: str = "plain") -> str:
        """The report as the text tower sees it, without augmentation."""
        return format_report(self.findings, self.impression, fmt)


def format_report(findings: str, impression: str, fmt: str = "plain") -> str:
    """Join the sections: plain ("findings impression") or tagged ("[FINDINGS]{...} [IMPRESSION]{...}")."""
    findings, impression = findings.strip(), impression.strip()
    if fmt == "plain":
        return " ".join(s for s in (findings, impression) if s)
    if fmt == "tagged":
        parts = []
        if findings:
            parts.append(f"[FINDINGS]{{{findings}}}")
        if impression:
            parts.append(f"[IMPRESSION]{{{impression}}}")
        return " ".join(parts)
    raise ValueError(f"report format {fmt!r} is unknown; use plain or tagged")


def batch_text_key(text: str) -> str:
    """Texts with equal keys never share a CLIP batch: the text as the tower reads it, case and spaces folded.

    Not the project's "identical report" rule (:func:`lexray.data.study.normalize_report`, which also
    drops punctuation and decides duplicate-aware evaluation and the text stage's false negatives): this
    key is applied to each draw's augmented, formatted text (tags of the ``tagged`` format and all), and
    a batch plan is a pure function of it. Swapping in ``normalize_report`` would merge 13 groups of the
    demo's 2,069 Open-i training texts that differ only in punctuation ("no active disease." and "no
    active disease..") and change its batch plan from step 2 on: other batches, other benchmark figures,
    and runs that no longer resume onto their recorded plan. So the two stay apart, by name.
    """
    return _SPACES.sub(" ", text.lower()).strip()


def shuffle_sentences(text: str, rng: np.random.Generator) -> str:
    """The sentences of ``text`` in a random order."""
    sentences = [s for s in _SENTENCE_END.split(text.strip()) if s]
    if len(sentences) < 2:
        return text
    order = rng.permutation(len(sentences))
    return " ".join(sentences[i] for i in order)


def load_pairs(source: SourceConfig) -> tuple[list[Pair], list[tuple[str, str]]]:
    """The usable pairs of one source and the skipped study ids with their reason.

    A study is skipped when it has no report text or none of its image files exists.
    """
    from lexray.data.manifest import read_manifest, select

    path = Path(source.manifest)
    root = Path(source.image_root) if source.image_root else path.parent
    name = source.name or path.parent.name
    studies: list[Study] = select(read_manifest(path), split=source.split or None)
    if source.max_studies:
        studies = studies[: source.max_studies]
    pairs, skipped = [], []
    for s in studies:
        if not (s.findings.strip() or s.impression.strip()):
            skipped.append((s.study_id, "no findings or impression"))
            continue
        images = tuple(str(p) for p in (im.resolve(root) for im in s.images) if p.is_file())
        if not images:
            skipped.append((s.study_id, f"none of its {len(s.images)} image files exists under {root}"))
            continue
        pairs.append(
            Pair(s.study_id, name, s.findings, s.impression, images, s.extra.get("phantom_findings", ""))
        )
    if skipped:
        log.warning(
            "%s: skipped %d of %d studies (first: %s)", name, len(skipped), len(studies), skipped[0][1]
        )
    return pairs, skipped


def load_variants(store: str, study_ids: set[str]) -> dict[str, list[str]]:
    """Equivalent (non-error) variant texts per study from a lexray VariantStore folder."""
    from lexray.variants.store import VariantStore

    out: dict[str, list[str]] = {}
    for rec in VariantStore(store).iter_records():
        if rec.study_id in study_ids and rec.kind == "equivalent" and rec.accepted and rec.text.strip():
            out.setdefault(rec.study_id, []).append(rec.text)
    log.info("variants: %d texts for %d studies", sum(map(len, out.values())), len(out))
    return out


@dataclass(frozen=True)
class Draw:
    """One element of a batch: which pair, which of its images, which text."""

    pair: int  # index into the pair list
    image: int  # index into the pair's images
    text: str  # the (augmented) report text


class BatchPlanner:
    """Deterministic, duplicate-free batches per epoch from weighted sources.

    Args:
        pairs: all training pairs (of every source).
        weights: per-pair expected draws per epoch (the source weight).
        batch_size: pairs per batch; the last incomplete batch of an epoch is dropped.
        augment: text augmentation settings.
        variants: study id -> equivalent variant texts.
        seed: run seed.
    """

    def __init__(
        self,
        pairs: Sequence[Pair],
        weights: Sequence[float],
        batch_size: int,
        augment: TextAugmentConfig,
        variants: dict[str, list[str]] | None = None,
        seed: int = 0,
    ) -> None:
        if len(pairs) != len(weights):
            raise ValueError("one weight per pair is needed")
        if batch_size < 2:
            raise ValueError("contrastive batches need at least 2 pairs")
        self.pairs = list(pairs)
        self.weights = np.asarray(weights, dtype=np.float64)
        self.batch_size = batch_size
        self.augment = augment
        self.variants = variants or {}
        self.seed = seed
        self._plans: dict[int, list[list[Draw]]] = {}
        if self.batches(0) == []:
            raise ValueError(
                f"{len(self.pairs)} pairs give no full batch of {batch_size} distinct reports; "
                "lower batch_size or add data"
            )

    def _draw_order(self, epoch: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, epoch, 0])
        whole = np.floor(self.weights).astype(np.int64)
        extra = rng.random(len(self.weights)) < (self.weights - whole)  # the fractional part, at random
        counts = whole + extra
        order = np.repeat(np.arange(len(self.pairs)), counts)
        return order[rng.permutation(len(order))]

    def text_for(self, pair_index: int, epoch: int, draw: int) -> str:
        """The augmented text of a draw (a pure function of its position)."""
        pair = self.pairs[pair_index]
        aug = self.augment
        rng = np.random.default_rng([self.seed, epoch, 1, draw])
        findings, impression = pair.findings, pair.impression
        variants = self.variants.get(pair.study_id)
        if variants and rng.random() < aug.variant_prob:
            return variants[int(rng.integers(len(variants)))]
        if aug.shuffle_prob > 0:
            if rng.random() < aug.shuffle_prob:
                findings = shuffle_sentences(findings, rng)
            if rng.random() < aug.shuffle_prob:
                impression = shuffle_sentences(impression, rng)
        return format_report(findings, impression, aug.format)

    def batches(self, epoch: int) -> list[list[Draw]]:
        """All full batches of ``epoch`` (computed once, then cached for the current epoch only)."""
        if epoch in self._plans:
            return self._plans[epoch]
        order = self._draw_order(epoch)
        batches: list[list[Draw]] = []
        current: list[Draw] = []
        keys: set[str] = set()
        waiting: list[Draw] = []
        for n, idx in enumerate(order):
            pair = self.pairs[int(idx)]
            draw = Draw(int(idx), (epoch + n) % len(pair.images), self.text_for(int(idx), epoch, n))
            # Draws that collided with an earlier batch get the first chance at the next one.
            for candidate in [*waiting, draw]:
                key = batch_text_key(candidate.text)
                if key in keys:
                    if candidate is draw:
                        waiting.append(draw)
                    continue
                if candidate is not draw:
                    waiting.remove(candidate)
                current.append(candidate)
                keys.add(key)
                if len(current) == self.batch_size:
                    batches.append(current)
                    current, keys = [], set()
        self._plans = {epoch: batches}
        return batches


def augment_images(pixels: torch.Tensor, rng: np.random.Generator, cfg: ImageAugmentConfig) -> torch.Tensor:
    """Randomly shift, zoom, rotate and re-expose a batch (B, C, H, W); ``rng`` makes it reproducible."""
    b = pixels.shape[0]
    angle = np.deg2rad(rng.uniform(-cfg.rotate, cfg.rotate, b))
    zoom = 1.0 + rng.uniform(-cfg.scale, cfg.scale, b)
    shift = rng.uniform(-cfg.translate, cfg.translate, (b, 2)) * 2  # affine_grid works in [-1, 1]
    cos, sin = np.cos(angle) / zoom, np.sin(angle) / zoom
    theta = np.stack(
        [np.stack([cos, -sin, shift[:, 0]], 1), np.stack([sin, cos, shift[:, 1]], 1)], 1
    )  # (B, 2, 3)
    theta_t = torch.as_tensor(theta, dtype=pixels.dtype, device=pixels.device)
    grid = F.affine_grid(theta_t, list(pixels.shape), align_corners=False)
    # Border padding: the film edge is repeated rather than a black frame the model could key on.
    out = F.grid_sample(pixels, grid, padding_mode="border", align_corners=False)
    gain = torch.as_tensor(1.0 + rng.uniform(-cfg.contrast, cfg.contrast, (b, 1, 1, 1)), dtype=pixels.dtype)
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    out = (out - mean) * gain.to(out.device) + mean
    noise = torch.as_tensor(rng.standard_normal(out.shape) * cfg.noise, dtype=pixels.dtype, device=out.device)
    return out + noise


def write_skipped(skipped: Sequence[tuple[str, str, str]], path: Path) -> None:
    """Write (source, study id, reason) rows as JSON lines."""
    with open(path, "w", encoding="utf-8") as f:
        for source, study_id, reason in skipped:
            f.write(json.dumps({"source": source, "record": study_id, "reason": reason}) + "\n")
