"""Training examples for the contrastive stage, built from studies and their variants.

Each :class:`ContrastiveExample` is (anchor, positive, hard negatives, keys). The keys (study id,
normalised-text hash, finding-label hash) drive false-negative masking; :func:`batches_without_duplicates`
keeps identical reports out of one batch in the first place (IU X-ray has hundreds of "no acute
cardiopulmonary abnormality" reports).
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from lexray.data.study import Study, normalize_report
from lexray.variants.rules import reword_report

_FINDINGS_HEADER = re.compile(r"^\s*FINDINGS:\s*")
_IMPRESSION_HEADER = re.compile(r"\s*\bIMPRESSION:\s*")


def relayout(findings: str, impression: str, rng: random.Random) -> str:
    """Join a report's sections in a layout drawn at random: bare, ``IMPRESSION:`` only, or both headers.

    The rule and error variants carry section headers while the originals (findings + " " +
    impression) do not; drawing the layout of every text at random stops the encoder from using the
    headers to tell an error variant from an equivalent one.
    """
    findings, impression = findings.strip(), impression.strip()
    if not (findings and impression):
        return findings or impression
    layout = rng.randrange(3)
    if layout == 0:
        return f"{findings} {impression}"
    if layout == 1:
        return f"{findings} IMPRESSION: {impression}"
    return f"FINDINGS: {findings}\nIMPRESSION: {impression}"


def relayout_text(text: str, rng: random.Random) -> str:
    """:func:`relayout` for a text with ``FINDINGS:`` / ``IMPRESSION:`` headers; other texts are unchanged."""
    parts = _IMPRESSION_HEADER.split(text, maxsplit=1)
    if len(parts) != 2 or not _FINDINGS_HEADER.match(parts[0]):
        return text
    return relayout(_FINDINGS_HEADER.sub("", parts[0], count=1), parts[1], rng)


def stable_hash(value: str) -> int:
    """A non-negative 62-bit hash, stable across processes (Python's ``hash`` is salted)."""
    return int.from_bytes(hashlib.blake2b(value.encode(), digest_size=8).digest(), "big") >> 2


@dataclass(frozen=True)
class ContrastiveExample:
    """One anchor with its positive, its hard negatives and its false-negative keys."""

    anchor: str  # the query text (a report, a variant, or a findings section)
    positive: str  # a clinically equivalent text (or the impression for a findings anchor)
    negatives: tuple[str, ...]  # single-error variants of the anchor's study (hard negatives)
    keys: tuple[int, ...]  # (study, normalised anchor text, finding labels) hashes; -1 = unknown
    task: str  # "variant" or "findings_impression"


def distinct_equivalents(
    studies: Sequence[Study], equivalents: Mapping[str, Sequence[str]]
) -> dict[str, list[str]]:
    """The equivalent variants that belong to one report only.

    A variant text shared by studies whose reports differ (the impression "No acute disease." of
    hundreds of reports, a normal findings section) is a positive for all of them, and training on it
    pulls different reports together. Studies with identical reports may share a variant.

    Args:
        studies: the train studies.
        equivalents: study id -> accepted equivalent variant texts.

    Returns:
        study id -> the variants whose normalised text no study with another normalised report has.
    """
    reports = {s.study_id: normalize_report(s.report_text) for s in studies}
    owners: dict[str, set[str]] = {}
    for sid, texts in equivalents.items():
        for text in texts:
            owners.setdefault(normalize_report(text), set()).add(reports.get(sid, sid))
    for report in reports.values():
        owners.setdefault(report, set()).add(report)
    return {
        sid: kept
        for sid, texts in equivalents.items()
        if (kept := [t for t in texts if len(owners[normalize_report(t)]) == 1])
    }


def build_examples(
    studies: Sequence[Study],
    equivalents: Mapping[str, Sequence[str]],
    errors: Mapping[str, Sequence[str]],
    label_keys: Mapping[str, str],
    pairs_per_study: int,
    hard_negatives: int,
    findings_impression: bool,
    rng: random.Random,
    relayout_reports: bool = False,
    reword_negatives: float = 0.0,
) -> list[ContrastiveExample]:
    """Sample one epoch of contrastive examples.

    For every study, ``pairs_per_study`` pairs are drawn from {original report, equivalent variants}
    (two different texts; the original is the anchor of the first pair so original -> variant is
    always trained), each with up to ``hard_negatives`` error variants of that study. With
    ``findings_impression`` a findings -> impression pair is added when both sections exist.

    Args:
        studies: train-split studies.
        equivalents: study id -> accepted equivalent variant texts.
        errors: study id -> accepted single-error variant texts.
        label_keys: study id -> a string form of the report's finding labels ("" = unknown).
        pairs_per_study: variant pairs per study.
        hard_negatives: error variants per example.
        findings_impression: add findings -> impression pairs.
        rng: the epoch's random generator.
        relayout_reports: draw the section-header layout of every whole-report text at random
            (:func:`relayout`), so headers carry no signal.
        reword_negatives: chance that each hard negative is reworded
            (:func:`lexray.variants.rules.reword_report`). Error variants otherwise copy the source's
            wording, so the encoder could learn "same words, one change = negative" instead of reading
            the clinical content.
    """
    out: list[ContrastiveExample] = []
    for study in studies:
        original = study.report_text
        if not original:
            continue
        sid = study.study_id
        label = label_keys.get(sid, "")
        label_key = stable_hash("labels:" + label) if label else -1
        texts = list(dict.fromkeys([original, *equivalents.get(sid, ())]))
        errs = list(errors.get(sid, ()))
        if len(texts) >= 2:
            for k in range(pairs_per_study):
                if k == 0:
                    anchor, positive = original, rng.choice(texts[1:])
                else:
                    anchor, positive = rng.sample(texts, 2)
                negs = tuple(
                    reword_report(t, rng) if reword_negatives and rng.random() < reword_negatives else t
                    for t in rng.sample(errs, min(hard_negatives, len(errs)))
                )
                # Keyed before relayout: headers must not make two identical reports look different.
                keys = (
                    stable_hash("study:" + sid),
                    stable_hash("text:" + normalize_report(anchor)),
                    label_key,
                )
                if relayout_reports:
                    anchor, positive = (
                        relayout(study.findings, study.impression, rng)
                        if t == original
                        else relayout_text(t, rng)
                        for t in (anchor, positive)
                    )
                    negs = tuple(relayout_text(t, rng) for t in negs)
                out.append(ContrastiveExample(anchor, positive, negs, keys, "variant"))
        if findings_impression and study.findings and study.impression:
            if normalize_report(study.findings) != normalize_report(study.impression):
                keys = (
                    stable_hash("study:" + sid),
                    stable_hash("text:" + normalize_report(study.findings)),
                    label_key,
                )
                out.append(
                    ContrastiveExample(study.findings, study.impression, (), keys, "findings_impression")
                )
    return out


def batches_without_duplicates(
    examples: Sequence[ContrastiveExample], batch_size: int, rng: random.Random, drop_last: bool = True
) -> Iterator[list[ContrastiveExample]]:
    """Shuffle and group examples so no batch holds two anchors of one study or one normalised text.

    An example that cannot join the current batch waits for the next one (sentence-transformers'
    NoDuplicatesBatchSampler); with ``drop_last`` every batch has exactly ``batch_size`` examples
    (needed when gathering across processes).
    """
    pending = list(examples)
    rng.shuffle(pending)
    while pending:
        batch: list[ContrastiveExample] = []
        seen: set[int] = set()
        rest: list[ContrastiveExample] = []
        for ex in pending:
            ident = {ex.keys[0], ex.keys[1], stable_hash("text:" + normalize_report(ex.positive))}
            if len(batch) < batch_size and not (ident & seen):
                batch.append(ex)
                seen |= ident
            else:
                rest.append(ex)
        pending = rest
        if len(batch) == batch_size or (batch and not drop_last):
            yield batch
        elif len(batch) < batch_size:
            return
