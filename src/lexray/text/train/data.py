"""The data phase of text training: train studies, their variants, synthetic fabricated-finding studies.

Everything made here is cached in the run's ``variants/`` folder and keyed by the code that makes it, so a
rerun reads what an earlier run made: the variants (:class:`lexray.variants.VariantStore`, keyed by the
rules version) and the source reports' finding labels (``labels.jsonl``, keyed by the labeler's code).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import math
import random
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

import lexray
from lexray.data.study import Study
from lexray.text.config import TextDataConfig
from lexray.text.pairs import distinct_equivalents

log = logging.getLogger(__name__)

FORBIDDEN_SPLITS = ("val", "validate", "validation", "test")
VARIANTS_SUBDIR = "variants"
FABRICATED_SUBDIR = "fabricated"  # under VARIANTS_SUBDIR: the synthetic studies' own variant cache
LABELS_FILE = "labels.jsonl"  # under a variant cache: label keys of source reports, by text hash


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


def _lazy_labeler() -> Callable[[], Any]:
    """The project's labeler, built on first use: a rerun whose caches hold everything never loads it."""
    made: list[Any] = []

    def get() -> Any:
        if not made:
            from lexray.variants.checks import CachedLabeler, get_default_labeler

            made.append(CachedLabeler(get_default_labeler()))
        return made[0]

    return get


@functools.cache
def labels_version() -> str:
    """``labels-<sha8>`` of the labeler's code (``lexray.variants._version.code_version``): the cache key."""
    from lexray.variants._version import code_version

    return code_version(("lexray.findings.labeler",), Path(lexray.__file__).resolve().parents[1], "labels")


def _text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def cached_label_keys(texts: Sequence[str], labeler: Callable[[], Any], cache_dir: Path) -> list[str]:
    """The label key (``"|".join(labels.vector())``) of each text, labelling only what the cache lacks.

    Keys are stored by the text's SHA-256 and the labeler's code version in ``cache_dir/labels.jsonl``, so
    report text is not copied and labels made by other labeler code are never reused.
    """
    version = labels_version()
    path = cache_dir / LABELS_FILE
    known: dict[str, str] = {}
    cached = path.read_text(encoding="utf-8") if path.is_file() else ""
    for line in cached.splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # a torn last line after a crash: that text is labelled again
            continue
        if row.get("version") == version and "sha256" in row:
            known.setdefault(row["sha256"], row["key"])
    hashes = [_text_key(t) for t in texts]
    todo = {h: t for h, t in zip(hashes, texts, strict=True) if h not in known}
    if todo:
        labels = labeler().pipe(list(todo.values()))
        new = {h: "|".join(lab.vector()) for h, lab in zip(todo, labels, strict=True)}
        path.parent.mkdir(parents=True, exist_ok=True)
        # After a torn last line the first new row starts on a line of its own, so it stays readable.
        torn = "\n" if cached and not cached.endswith("\n") else ""
        rows = "".join(json.dumps({"version": version, "sha256": h, "key": k}) + "\n" for h, k in new.items())
        with open(path, "a", encoding="utf-8") as f:
            f.write(torn + rows)
        known.update(new)
    return [known[h] for h in hashes]


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
    from lexray.variants.rules import rules_version

    labeler = _lazy_labeler()
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
                    batch = make_error_variants_batch(part, [error_type], seed, labeler())
                else:
                    batch = make_rule_variants_batch(part, [style], seed, labeler())
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
        keys = cached_label_keys([source_text(s) for s in studies], labeler, cache_dir)
        pool.label_keys = {s.study_id: key for s, key in zip(studies, keys, strict=True)}
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


def contrastive_data(
    studies: Sequence[Study],
    config: TextDataConfig,
    seed: int,
    cache_dir: Path,
    main_first: Callable[[], AbstractContextManager[Any]] = nullcontext,
) -> tuple[list[Study], VariantPool]:
    """The contrastive stage's studies and variant pool: train studies, fabricated ones, positives filtered.

    Args:
        studies: the train studies.
        config: the data settings (styles, error types, fabricated share, positive filter).
        seed: seed of the variants and of the fabricated draw.
        cache_dir: the run's variant cache (``<run>/variants``).
        main_first: a context in which the main process works first (``accelerator.main_process_first``):
            it makes the caches, the other processes then find them complete and read them.
    """
    with main_first():
        pool = prepare_variants(studies, config, seed, cache_dir)
    train_studies = list(studies)
    if config.fabricated_studies:
        extra, sources = fabricated_studies(studies, cache_dir, config.fabricated_studies, seed)
        with main_first():
            extra_pool = prepare_variants(extra, config, seed, cache_dir / FABRICATED_SUBDIR)
        for sid, text in sources.items():
            extra_pool.errors.setdefault(sid, []).append(text)
        pool = merge_pools(pool, extra_pool)
        train_studies += extra
        log.info("added %d synthetic studies with one fabricated finding each", len(extra))
    if config.distinct_positives:
        kept = distinct_equivalents(train_studies, pool.equivalents)
        dropped = sum(map(len, pool.equivalents.values())) - sum(map(len, kept.values()))
        pool.equivalents = kept
        log.info("dropped %d equivalent variants shared by reports with other content", dropped)
    return train_studies, pool
