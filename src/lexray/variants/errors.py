"""Single-error report variants (hard negatives), driven by the labeler's mention spans.

For each error type a generator (:mod:`lexray.variants._candidates`) proposes candidate edits of the source report at sentence level, aimed
at one observation found by the labeler (swap the laterality word nearest to a mention, negate the
sentences that state a finding, insert a fabricated finding, ...). Candidates are verified in rounds
with one labeler ``pipe`` per round over all pending studies: the first candidate that changes exactly
the intended observation or attribute (:func:`lexray.variants.checks.check_error`) is kept. When none
passes, the first candidate is stored as rejected so the rejection rate stays visible.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence

from lexray.data.study import Study
from lexray.variants._candidates import Candidates
from lexray.variants._edit import Doc, Edit
from lexray.variants._text import layout, study_sections
from lexray.variants.checks import ATTRIBUTES, CachedLabeler, LabelerLike, check_error, get_default_labeler
from lexray.variants.record import ERROR_STYLE, ERROR_TYPES, NOT_APPLICABLE, VariantRecord
from lexray.variants.rules import rule_record, rules_version

_GENERATORS: dict[str, Callable[[Candidates], Iterator[tuple[str, Edit]]]] = {
    t: getattr(Candidates, t) for t in ERROR_TYPES
}


def make_error_variants(
    study: Study,
    types: Sequence[str],
    seed: int,
    labeler: LabelerLike | None = None,
    max_candidates: int = 4,
) -> list[VariantRecord]:
    """Single-error variants of one study: one record per error type.

    Args:
        study: the source study.
        types: names from :data:`lexray.variants.record.ERROR_TYPES`.
        seed: the same seed gives the same edits.
        labeler: a finding labeler; default :func:`lexray.findings.get_labeler`.
        max_candidates: candidate edits tried per error type before giving up.

    Returns:
        Records with ``kind="error"``, ``error_type`` set, ``target`` the observation aimed at, and
        ``accepted`` when the labeler sees exactly that one change.
    """
    return make_error_variants_batch([study], types, seed, labeler, max_candidates)


def make_error_variants_batch(
    studies: Sequence[Study],
    types: Sequence[str],
    seed: int,
    labeler: LabelerLike | None = None,
    max_candidates: int = 4,
    attributes: Sequence[str] = ATTRIBUTES,
) -> list[VariantRecord]:
    """:func:`make_error_variants` over many studies, one labeler ``pipe`` per verification round."""
    unknown = [t for t in types if t not in _GENERATORS]
    if unknown:
        raise ValueError(f"unknown error type {unknown[0]!r}; error types are: {', '.join(ERROR_TYPES)}")
    labeler = (
        labeler if isinstance(labeler, CachedLabeler) else CachedLabeler(labeler or get_default_labeler())
    )
    docs: dict[str, Doc | None] = {}
    texts = {}
    for study in studies:
        findings, impression = study_sections(study)
        if findings or impression:
            texts[study.study_id] = (findings, impression, *layout(findings, impression))
    source_labels = dict(zip(texts, labeler.pipe([t[2] for t in texts.values()]), strict=True))
    for study in studies:
        if study.study_id in texts:
            f, i, text, spans = texts[study.study_id]
            docs[study.study_id] = Doc(f, i, text, spans, source_labels[study.study_id])
        else:
            docs[study.study_id] = None

    version = rules_version()
    results: dict[tuple[str, str], VariantRecord] = {}
    # (study id, type) -> candidate stream, first candidate and its failure, for the rejection record.
    pending: dict[tuple[str, str], Iterator[tuple[str, str]]] = {}
    first: dict[tuple[str, str], tuple[str, str, str]] = {}
    for study in studies:
        doc = docs[study.study_id]
        for etype in types:
            key = (study.study_id, etype)
            if doc is None:
                results[key] = _record(key, "", "", False, f"{NOT_APPLICABLE}: empty report", version)
                continue
            gen = Candidates(doc, random.Random(f"{seed}|{study.study_id}|error:{etype}"))
            pending[key] = _texts(doc, _GENERATORS[etype](gen), max_candidates)

    while pending:
        batch: list[tuple[tuple[str, str], str, str]] = []
        for key, stream in list(pending.items()):
            nxt = next(stream, None)
            if nxt is None:
                del pending[key]
                if key in first:
                    target, text, why = first[key]
                    why = f"no candidate passed; first: {why}"
                    results[key] = _record(key, target, text, False, why, version)
                else:
                    reason = f"{NOT_APPLICABLE}: no finding in the report suits a {key[1]} error"
                    results[key] = _record(key, "", "", False, reason, version)
                continue
            batch.append((key, *nxt))
        if not batch:
            break
        labels = labeler.pipe([text for _, _, text in batch])
        for (key, target, text), lab in zip(batch, labels, strict=True):
            doc = docs[key[0]]
            ok, why = check_error(doc.labels, lab, key[1], target, attributes)
            if ok:
                results[key] = _record(key, target, text, True, "", version)
                del pending[key]
            else:
                first.setdefault(key, (target, text, why))
    return [results[(s.study_id, t)] for s in studies for t in types]


def _texts(doc: Doc, candidates: Iterator[tuple[str, Edit]], limit: int) -> Iterator[tuple[str, str]]:
    """Distinct candidate texts (different from the source), at most ``limit``."""
    seen = {doc.text}
    n = 0
    for target, edit in candidates:
        text = doc.render(edit)
        if text in seen or not text.strip():
            continue
        seen.add(text)
        yield target, text
        n += 1
        if n >= limit:
            return


def _record(
    key: tuple[str, str], target: str, text: str, accepted: bool, reason: str, version: str
) -> VariantRecord:
    """The record of (study id, error type) ``key``."""
    study_id, etype = key
    return rule_record(study_id, ERROR_STYLE, text, accepted, reason, version, etype, target)
