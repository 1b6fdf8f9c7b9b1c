"""Rule-based report styles: clinically equivalent rewrites that are deterministic under a seed.

Each style is a function ``(findings, impression, rng) -> (text, reason)`` registered in
:data:`STYLE_FUNCTIONS`; ``reason`` is non-empty when the style cannot apply to the report (e.g.
``impression_only`` on a report without findings). :func:`make_rule_variants` renders the styles and
checks every one with the finding labeler (same label vector as the source, see
:mod:`lexray.variants.checks`).
"""

from __future__ import annotations

import functools
import random
import re
from collections.abc import Callable, Sequence
from pathlib import Path

from lexray.data.study import Study
from lexray.variants import _rewrites as rw
from lexray.variants._reword import NO_CHANGE, NO_VERB, reword_sections
from lexray.variants._text import (
    FINDINGS_HEADER,
    IMPRESSION_HEADER,
    join,
    match_start_case,
    render_sections,
    shuffled,
    source_text,
    split_sentences,
    study_sections,
    tidy_sentence,
)
from lexray.variants._version import code_version
from lexray.variants.checks import (
    ATTRIBUTES,
    CachedLabeler,
    LabelerLike,
    check_equivalent,
    get_default_labeler,
)
from lexray.variants.record import NOT_APPLICABLE, RULE_STYLES, VariantRecord

RULES_GENERATOR = "rules"

# The modules a rule variant (and whether it is accepted) is made by: the rule styles and errors, and every
# lexray module they import, the finding labeler that checks them included. Found by reading their imports.
_VERSIONED_ENTRIES = ("lexray.variants.rules", "lexray.variants.errors")


@functools.cache
def rules_version() -> str:
    """The ``prompt_version`` of rule variants: ``rules-<sha8>`` of the code that makes and checks them.

    A variant store or cache made by other rules then no longer counts as done, so a run that reuses
    it remakes the variants instead of training on ones the current rules would not produce; an edit to a
    docstring or comment changes nothing and keeps the cache (see :func:`code_version`).
    """
    return code_version(_VERSIONED_ENTRIES, Path(__file__).resolve().parents[2], "rules")


StyleFn = Callable[[list[str], list[str], random.Random], tuple[str, str]]


def _rng(seed: int, study_id: str, style: str) -> random.Random:
    # random.Random(str) hashes the string with SHA-512: stable across processes and Python runs,
    # unlike hash(), so a seed gives the same variants everywhere.
    return random.Random(f"{seed}|{study_id}|{style}")


def _compile(
    pairs: Sequence[tuple[str, str]], case_sensitive_short: bool
) -> list[tuple[re.Pattern[str], str]]:
    out = []
    for src, dst in pairs:
        # Word boundaries that also work for "w/" and "s/p" (which end in a non-word character).
        pattern = rf"(?<![\w/]){re.escape(src)}(?![\w/])"
        flags = 0 if (case_sensitive_short and src.isupper()) else re.IGNORECASE
        out.append((re.compile(pattern, flags), dst))
    return out


_ABBREV = _compile(rw.ABBREVIATIONS, case_sensitive_short=False)
_EXPAND = _compile(rw.EXPANSIONS, case_sensitive_short=True)
_TELEGRAPHIC = [(re.compile(p, re.IGNORECASE), r) for p, r in rw.TELEGRAPHIC]


def _sub_table(
    text: str, table: list[tuple[re.Pattern[str], str]], rng: random.Random | None, p: float
) -> str:
    """Apply a phrase table; with an rng each match is replaced with probability ``p``."""
    for pattern, dst in table:

        def repl(m: re.Match[str], dst: str = dst) -> str:
            if rng is not None and rng.random() > p:
                return m.group(0)
            return match_start_case(dst, m.group(0), m.start() == 0)

        text = pattern.sub(repl, text)
    return text


def _shorthand_sentence(sentence: str, rng: random.Random) -> str:
    s = sentence
    for pattern, repl in _TELEGRAPHIC:
        s = pattern.sub(repl, s)
    # Most, not all, abbreviations apply, so different seeds give different shorthand.
    s = _sub_table(s, _ABBREV, rng, p=0.85)
    return tidy_sentence(s)


def style_shorthand(findings: list[str], impression: list[str], rng: random.Random) -> tuple[str, str]:
    """Abbreviation-heavy, telegraphic: articles and copulas dropped, common terms abbreviated."""
    f = [_shorthand_sentence(s, rng) for s in findings]
    i = [_shorthand_sentence(s, rng) for s in impression]
    sep = rng.choice(("\n", " "))
    text = sep.join(x for x in (join(f), join(i)) if x)
    return text, ""


def _expand_sentence(sentence: str) -> str:
    s = _sub_table(sentence, _EXPAND, None, 1.0)
    # "No pneumothorax." -> "There is no pneumothorax." (only when the sentence has no verb of its own).
    if re.match(r"^No\b", s) and not NO_VERB.search(s) and not NO_CHANGE.search(s):
        s = "There is no" + s[2:]
    return tidy_sentence(s)


def style_expanded(findings: list[str], impression: list[str], rng: random.Random) -> tuple[str, str]:
    """Abbreviations spelled out and verbless negations made whole sentences."""
    f = [_expand_sentence(s) for s in findings]
    i = [_expand_sentence(s) for s in impression]
    if f == findings and i == impression:
        return "", f"{NOT_APPLICABLE}: nothing to expand"
    return render_sections(f, i), ""


def style_impression_only(findings: list[str], impression: list[str], rng: random.Random) -> tuple[str, str]:
    """The impression section alone (a summary: may drop negatives, must keep every positive finding)."""
    return _section_alone(impression, findings, "an", "impression")


def _section_alone(kept: list[str], other: list[str], article: str, name: str) -> tuple[str, str]:
    """One section's text, or why it cannot stand alone (missing, or already the whole report).

    ``article`` ("a" / "an") goes before ``name`` in the reason the section is the whole report.
    """
    if not kept:
        return "", f"{NOT_APPLICABLE}: the report has no {name} section"
    if not other:
        return "", f"{NOT_APPLICABLE}: the report has only {article} {name} section"
    return join(kept), ""


# A findings sentence that only rules things out or calls them normal; a summary leaves it out.
_NEGATIVE_OR_NORMAL = re.compile(
    r"^(?:no|there (?:is|are) no|without|negative)\b"
    r"|\b(?:normal|clear|unremarkable|within normal limits|intact|no acute|not enlarged)\b",
    re.I,
)


def _positives(findings: list[str], impression: list[str]) -> list[str]:
    """The findings sentences that state something present and that the impression does not repeat."""
    said = {_key(s) for s in impression}
    return [s for s in findings if not _NEGATIVE_OR_NORMAL.search(s) and _key(s) not in said]


def _run_on(parts: list[str]) -> str:
    """Sentences as one run-on line: "A; b; c."."""
    parts = [p.rstrip(".") for p in parts]
    parts[1:] = [p if p[:2].isupper() else p[:1].lower() + p[1:] for p in parts[1:]]
    return "; ".join(parts) + "."


def style_summary(findings: list[str], impression: list[str], rng: random.Random) -> tuple[str, str]:
    """A one- or two-line summary: the findings sentences stating something present, then the impression.

    What a reader writes when asked for the report's clinically significant content: negatives and
    normal statements are dropped (a summary style), every positive finding is kept.
    """
    if not findings or not impression:
        return "", f"{NOT_APPLICABLE}: the report needs both findings and impression"
    positives = _positives(findings, impression)
    if not positives:
        return "", f"{NOT_APPLICABLE}: no findings sentence states something present"
    # One run-on line ("A; b.") half of the time, separate sentences otherwise.
    head = _run_on(positives) if rng.random() < 0.5 else join(positives)
    return f"{head} {join(impression)}", ""


def style_brief(findings: list[str], impression: list[str], rng: random.Random) -> tuple[str, str]:
    """A hospital impression: the summary's content in shorthand, sometimes with the impression first.

    The abbreviation-rich, impression-only reports of the published study's hospital cohort ("Calc
    granuloma RUL; degen changes of spine; NAD."): the positive findings sentences and the impression,
    most sentences telegraphic and abbreviated, as one run-on line or as short sentences.
    """
    if not findings or not impression:
        return "", f"{NOT_APPLICABLE}: the report needs both findings and impression"
    positives = _positives(findings, impression)
    # Radiologists write the impression's own summary line first or last.
    parts = impression + positives if rng.random() < 0.3 else positives + impression
    parts = [_shorthand_sentence(s, rng) if rng.random() < 0.7 else s for s in parts]
    return (_run_on(parts) if rng.random() < 0.5 else join(parts)), ""


def _key(sentence: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", sentence.lower()).strip()


def style_findings_only(findings: list[str], impression: list[str], rng: random.Random) -> tuple[str, str]:
    """The findings section alone."""
    return _section_alone(findings, impression, "a", "findings")


def style_reordered(findings: list[str], impression: list[str], rng: random.Random) -> tuple[str, str]:
    """Sentence order changed within each section (headers kept)."""
    if len(findings) < 2 and len(impression) < 2:
        return "", f"{NOT_APPLICABLE}: no section has two sentences"
    return render_sections(shuffled(findings, rng), shuffled(impression, rng)), ""


def style_headerless(findings: list[str], impression: list[str], rng: random.Random) -> tuple[str, str]:
    """Section headers and list numbers removed: one running paragraph."""
    return render_sections(findings, impression, headers=False), ""


def style_hospital_template(
    findings: list[str], impression: list[str], rng: random.Random
) -> tuple[str, str]:
    """One of the hospital layouts in :data:`lexray.variants._rewrites.HOSPITAL_TEMPLATES`."""
    tpl = rng.choice(rw.HOSPITAL_TEMPLATES)
    parts = []
    if findings:
        parts.append(
            tpl["findings"].format(
                # Items keep their periods: a line break alone does not end a sentence for the labeler.
                items=tpl["item_sep"].join(findings),
                text=join(findings),
                lines="\n".join(findings),
            )
        )
    if impression:
        parts.append(
            tpl["impression"].format(
                text=join(impression),
                numbered="\n".join(f"{k}. {s}" for k, s in enumerate(impression, 1)),
                numbered_inline=" ".join(f"{k}. {s}" for k, s in enumerate(impression, 1)),
            )
        )
    return tpl["section_sep"].join(parts), ""


def style_restyled(findings: list[str], impression: list[str], rng: random.Random) -> tuple[str, str]:
    """A formal rewrite: synonyms, other sentence frames ("No X." -> "No X is seen."), findings reordered.

    The rule counterpart of the LLM ``paraphrase`` style; it keeps every statement and its attributes.
    """
    f, i = reword_sections(findings, impression, rng)
    if f == findings and i == impression:
        return "", f"{NOT_APPLICABLE}: nothing to reword"
    return render_sections(f, i), ""


def reword_report(text: str, rng: random.Random) -> str:
    """:func:`style_restyled` for a report text (``FINDINGS:`` / ``IMPRESSION:`` headers optional).

    Used on single-error variants so that a hard negative does not share the source's wording; the
    rewording keeps the injected error, because every rewrite keeps the statement it rewrites.
    """
    head, sep, tail = text.partition(IMPRESSION_HEADER)
    findings = split_sentences(head.replace(FINDINGS_HEADER, " ", 1))
    impression = split_sentences(tail) if sep else []
    f, i = reword_sections(findings, impression, rng)
    return render_sections(f, i)


STYLE_FUNCTIONS: dict[str, StyleFn] = {
    "shorthand": style_shorthand,
    "expanded": style_expanded,
    "impression_only": style_impression_only,
    "summary": style_summary,
    "brief": style_brief,
    "findings_only": style_findings_only,
    "reordered": style_reordered,
    "headerless": style_headerless,
    "hospital_template": style_hospital_template,
    "restyled": style_restyled,
}
assert tuple(STYLE_FUNCTIONS) == RULE_STYLES


def render_rule_style(study: Study, style: str, seed: int) -> tuple[str, str]:
    """The text of one rule style for one study, and a non-empty reason when it cannot apply.

    Raises:
        ValueError: ``style`` is not a rule style.
    """
    if style not in STYLE_FUNCTIONS:
        raise ValueError(f"unknown rule style {style!r}; rule styles are: {', '.join(STYLE_FUNCTIONS)}")
    findings, impression = study_sections(study)
    if not findings and not impression:
        return "", f"{NOT_APPLICABLE}: study {study.study_id} has an empty report"
    return STYLE_FUNCTIONS[style](findings, impression, _rng(seed, study.study_id, style))


def make_rule_variants(
    study: Study, styles: Sequence[str], seed: int, labeler: LabelerLike | None = None
) -> list[VariantRecord]:
    """Rule-style variants of one study, each checked for clinical equivalence with the labeler.

    Args:
        study: the source study (its findings and impression sections are used).
        styles: names from :data:`lexray.variants.record.RULE_STYLES`.
        seed: the same seed gives the same texts.
        labeler: a finding labeler (``pipe(texts)``); default: :func:`lexray.findings.get_labeler`.

    Returns:
        One record per style, ``accepted`` when the labeler finds the same label vector as the source.
    """
    return make_rule_variants_batch([study], styles, seed, labeler)


def make_rule_variants_batch(
    studies: Sequence[Study],
    styles: Sequence[str],
    seed: int,
    labeler: LabelerLike | None = None,
    attributes: Sequence[str] = ATTRIBUTES,
) -> list[VariantRecord]:
    """:func:`make_rule_variants` for many studies with one labeler pass (``pipe``) over all texts."""
    labeler = (
        labeler if isinstance(labeler, CachedLabeler) else CachedLabeler(labeler or get_default_labeler())
    )
    rendered: list[tuple[Study, str, str, str]] = []
    for study in studies:
        for style in styles:
            text, reason = render_rule_style(study, style, seed)
            rendered.append((study, style, text, reason))
    sources = {s.study_id: source_text(s) for s in studies}
    to_label = list(dict.fromkeys([*sources.values(), *(t for _, _, t, r in rendered if not r)]))
    labels = dict(zip(to_label, labeler.pipe(to_label), strict=True))
    version = rules_version()
    out = []
    for study, style, text, reason in rendered:
        if reason:
            out.append(rule_record(study.study_id, style, "", False, reason, version))
            continue
        src = sources[study.study_id]
        if text == src:
            why = f"{NOT_APPLICABLE}: identical to the source"
            out.append(rule_record(study.study_id, style, text, False, why, version))
            continue
        ok, why = check_equivalent(labels[src], labels[text], style, attributes)
        out.append(rule_record(study.study_id, style, text, ok, why, version))
    return out


def rule_record(
    study_id: str,
    style: str,
    text: str,
    accepted: bool,
    reason: str,
    version: str,
    error_type: str | None = None,
    target: str = "",
) -> VariantRecord:
    """A rule-made record: an equivalent style, or with ``error_type`` a single-error variant.

    ``version`` is :func:`rules_version`, read once per batch by the caller.
    """
    return VariantRecord(
        study_id=study_id,
        style=style,
        kind="equivalent" if error_type is None else "error",
        error_type=error_type,
        generator=RULES_GENERATOR,
        prompt_version=version,
        text=text,
        accepted=accepted,
        reject_reason="" if accepted else reason,
        target=target,
    )
