"""A variant-generation run over a manifest: chunked, resumable, durable, with a progress bar.

:func:`generate_variants` skips store keys already present (so a crashed or interrupted run resumes
where it stopped), makes variants chunk by chunk (one labeler pass per chunk) and appends each chunk to
the store with ``fsync`` before moving on. :func:`variant_stats` summarises a store per generator,
style and error type.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tqdm import tqdm

from lexray.data.study import Study
from lexray.errors import LexrayError
from lexray.variants.backends import BackendError, ChatBackend, make_backend, parse_generator
from lexray.variants.checks import CachedLabeler, LabelerLike, get_default_labeler
from lexray.variants.config import VariantsConfig
from lexray.variants.errors import make_error_variants_batch
from lexray.variants.llm import make_llm_variants
from lexray.variants.prompts import PROMPT_FOR_STYLE, prompt_for_style
from lexray.variants.record import ERROR_STYLE, ERROR_TYPES, RULE_STYLES, VariantRecord, record_key
from lexray.variants.rules import RULES_GENERATOR, make_rule_variants_batch, rules_version
from lexray.variants.store import VariantStore

log = logging.getLogger(__name__)


class VariantsError(LexrayError, ValueError):
    """A run is misconfigured (unknown style for the generator, unknown error type)."""


@dataclass
class RunSummary:
    """What one run did."""

    studies: int = 0  # studies considered (after split filter and limit)
    skipped: int = 0  # variants already in the store (resume)
    written: int = 0  # records appended
    accepted: int = 0  # of those, accepted by the checks
    not_applicable: int = 0  # of those, styles/errors that could not apply
    failures: int = 0  # LLM replies that failed (not stored; retried on the next run)
    failure_reasons: Counter = field(default_factory=Counter)  # failure reason -> count


def validate(config: VariantsConfig) -> None:
    """Check styles and error types against the generator.

    Raises:
        VariantsError: a style the generator cannot make, or an unknown error type.
    """
    kind, _ = parse_generator(config.generator)
    allowed = (*RULE_STYLES, ERROR_STYLE) if kind == "rules" else tuple(PROMPT_FOR_STYLE)
    bad = [s for s in config.styles if s not in allowed]
    if bad:
        raise VariantsError(
            f"style {bad[0]!r} is not made by the {kind} generator; choose from: {', '.join(allowed)}"
        )
    bad = [t for t in config.error_types if t not in ERROR_TYPES]
    if bad:
        raise VariantsError(f"unknown error type {bad[0]!r}; error types: {', '.join(ERROR_TYPES)}")


def select_studies(studies: Sequence[Study], config: VariantsConfig) -> list[Study]:
    """Studies of ``config.splits`` (all when empty), at most ``config.limit`` (0 = all)."""
    chosen = [s for s in studies if not config.splits or s.split in config.splits]
    return chosen[: config.limit] if config.limit else chosen


def _wanted_keys(
    study: Study, config: VariantsConfig, generator: str, versions: dict[str, str]
) -> list[tuple]:
    keys = []
    for style in config.styles:
        for etype in config.error_types if style == ERROR_STYLE else (None,):
            keys.append(record_key(study.study_id, style, generator, versions.get(style, ""), etype))
    return keys


def generate_variants(
    studies: Sequence[Study],
    config: VariantsConfig,
    store: VariantStore,
    labeler: LabelerLike | None = None,
    backend: ChatBackend | None = None,
    progress: bool = True,
) -> RunSummary:
    """Make the configured variants of ``studies`` into ``store``, resuming from what it holds.

    Args:
        studies: source studies (filter them first with :func:`select_studies`).
        config: generator, styles, error types, seed, chunking and LLM settings.
        store: where records go (appended durably per chunk).
        labeler: finding labeler; default :func:`lexray.findings.get_labeler`.
        backend: an LLM backend to use instead of building one from ``config.generator``.
        progress: show a progress bar.

    Returns:
        A :class:`RunSummary`.
    """
    validate(config)
    kind, _ = parse_generator(config.generator)
    labeler = (
        labeler if isinstance(labeler, CachedLabeler) else CachedLabeler(labeler or get_default_labeler())
    )
    if kind != "rules" and backend is None:
        backend = make_backend(config.generator, config.llm)
    generator = RULES_GENERATOR if kind == "rules" else backend.name
    prompts_dir = config.prompts_dir or None
    versions = {
        s: rules_version() if kind == "rules" else prompt_for_style(s, prompts_dir).version_id
        for s in config.styles
    }

    done = store.done_keys()
    summary = RunSummary(studies=len(studies))
    todo: list[Study] = []
    for study in studies:
        keys = _wanted_keys(study, config, generator, versions)
        missing = [k for k in keys if k not in done]
        summary.skipped += len(keys) - len(missing)
        if missing:
            todo.append(study)
    if summary.skipped:
        log.info("resuming: %d variants already in %s", summary.skipped, store.path)

    bar = tqdm(total=len(todo), desc=f"variants ({generator})", unit="study", disable=not progress)

    def make(chunk: list[Study]) -> tuple[list[VariantRecord], list[dict[str, str]]]:
        if kind != "rules":
            outcome = make_llm_variants(
                chunk,
                config.styles,
                backend,
                labeler,
                error_types=config.error_types,
                prompts_dir=prompts_dir,
                attributes=config.attributes,
                max_length_ratio=config.llm.max_length_ratio,
                skip=done,
            )
            return outcome.records, outcome.failures
        records: list[VariantRecord] = []
        styles = [s for s in config.styles if s != ERROR_STYLE]
        if styles:
            records += make_rule_variants_batch(chunk, styles, config.seed, labeler, config.attributes)
        if ERROR_STYLE in config.styles and config.error_types:
            records += make_error_variants_batch(
                chunk, config.error_types, config.seed, labeler, config.max_candidates, config.attributes
            )
        return records, []

    for i in range(0, len(todo), config.chunk_size):
        chunk = todo[i : i + config.chunk_size]
        records, failures = _guarded(make, chunk, generator)
        # A study whose other styles were done earlier comes back whole: keep only the missing keys.
        records = [r for r in records if r.key not in done]
        summary.written += store.add(records)
        store.add_failures(failures)
        done.update(r.key for r in records)
        summary.accepted += sum(r.accepted for r in records)
        summary.not_applicable += sum(r.not_applicable for r in records)
        summary.failures += len(failures)
        summary.failure_reasons.update(_reason_class(f["reason"]) for f in failures)
        bar.update(len(chunk))
    bar.close()
    return summary


_Made = tuple[list[VariantRecord], list[dict[str, str]]]


def _guarded(make: Callable[[list[Study]], _Made], chunk: list[Study], generator: str) -> _Made:
    """Run ``make`` on a chunk; when it raises, study by study, so one bad record cannot end a long run.

    Backend errors (server unreachable, bad configuration) still stop the run: every study would fail.
    """
    try:
        return make(chunk)
    except BackendError:
        raise
    except Exception as exc:  # isolate the study that breaks, record it, go on
        if len(chunk) == 1:
            study = chunk[0]
            log.warning("study %s skipped: %s: %s", study.study_id, type(exc).__name__, exc)
            reason = f"internal error: {type(exc).__name__}: {exc}"
            return [], [
                {
                    "study_id": study.study_id,
                    "style": "*",
                    "error_type": "",
                    "generator": generator,
                    "prompt_version": "",
                    "reason": reason,
                }
            ]
    records: list[VariantRecord] = []
    failures: list[dict[str, str]] = []
    for study in chunk:
        r, f = _guarded(make, [study], generator)
        records += r
        failures += f
    return records, failures


def _reason_class(reason: str) -> str:
    """A failure reason without its variable detail, for counting."""
    return reason.split(":")[0].split("(")[0].strip()


@dataclass(frozen=True)
class StatsRow:
    """Counts for one (generator, style, error type) group of a store."""

    generator: str
    style: str
    error_type: str
    prompt_version: str
    total: int  # records
    accepted: int
    rejected: int  # failed the labeler check
    not_applicable: int  # style/error could not apply to the report
    failures: int  # variants whose LLM reply never arrived or was unusable, still missing (failures.jsonl)
    top_reason: str  # most common rejection reason (observation-level, no report text)

    @property
    def rejection_rate(self) -> float:
        """Rejected / (accepted + rejected + failures): share of attempts that gave no usable variant."""
        attempts = self.accepted + self.rejected + self.failures
        return (self.rejected + self.failures) / attempts if attempts else 0.0


def variant_stats(store: VariantStore) -> list[StatsRow]:
    """Counts and rejection rates per generator, style, error type and prompt version."""
    groups: dict[tuple[str, str, str, str], Counter] = {}
    reasons: dict[tuple[str, str, str, str], Counter] = {}
    for r in store.iter_records():
        key = (r.generator, r.style, r.error_type or "", r.prompt_version)
        c = groups.setdefault(key, Counter())
        c["total"] += 1
        if r.accepted:
            c["accepted"] += 1
        elif r.not_applicable:
            c["not_applicable"] += 1
        else:
            c["rejected"] += 1
            reasons.setdefault(key, Counter())[_reject_class(r.reject_reason)] += 1
    done = store.done_keys()
    failed: set[tuple[str, ...]] = set()
    for f in store.read_failures():
        g = f.get
        key = (g("generator", ""), g("style", ""), g("error_type", ""), g("prompt_version", ""))
        full = (g("study_id", ""), key[1], key[0], key[3], key[2])
        # Count each variant still missing once; one that a later run made is no longer a failure.
        if full in done or full in failed:
            continue
        failed.add(full)
        groups.setdefault(key, Counter())["failures"] += 1
    rows = []
    for key in sorted(groups):
        c = groups[key]
        top = reasons.get(key, Counter()).most_common(1)
        rows.append(
            StatsRow(
                generator=key[0],
                style=key[1],
                error_type=key[2],
                prompt_version=key[3],
                total=c["total"],
                accepted=c["accepted"],
                rejected=c["rejected"],
                not_applicable=c["not_applicable"],
                failures=c["failures"],
                top_reason=f"{top[0][0]} ({top[0][1]})" if top else "",
            )
        )
    return rows


def _reject_class(reason: str) -> str:
    """A rejection reason without values, for counting.

    "labels changed: Lung Opacity omission: positive -> absent; ..." -> "labels changed: Lung Opacity omission".
    """
    if reason.startswith("no candidate passed; first: "):
        return "no candidate passed: " + _reject_class(reason[len("no candidate passed; first: ") :])
    head, _, rest = reason.partition(": ")
    if head in ("labels changed", "wrong kind of change") and rest:
        return f"{head}: {rest.split(';')[0].rsplit(':', 1)[0]}"
    if reason.startswith("changed "):
        return "changed another observation"
    return head
