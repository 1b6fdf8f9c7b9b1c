"""Sentence splitting, small sentence edits, and the standard rendering of a study's report that every variant starts from."""

from __future__ import annotations

import random
import re

from lexray.data.study import Study

FINDINGS_HEADER = "FINDINGS:"
IMPRESSION_HEADER = "IMPRESSION:"

_WS = re.compile(r"\s+")
# "1. No acute disease. 2. Cardiomegaly." - list numbers at the start or after a space.
_ENUM = re.compile(r"(?:^|(?<=\s))\d{1,2}[.)]\s+(?=[A-Za-z(])")
# A sentence ends at . ! ? followed by space and an upper-case letter, digit or bracket. Short tokens that
# end with a period but do not end a sentence are guarded below.
_BOUNDARY = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\"'])")
_EMPTY_SENT = re.compile(r"\.(?:\s*\.)+")  # "findings. ." -> "findings."
_NO_BREAK = ("vs.", "e.g.", "i.e.", "dr.", "approx.", "no.", "st.", "mr.", "ms.")


def clean(text: str) -> str:
    """Collapse whitespace."""
    return _WS.sub(" ", text or "").strip()


def split_sentences(text: str) -> list[str]:
    """Split report text into sentences, dropping list numbers and empty fragments (" ." in Open-i).

    Every returned sentence ends with ".", "!" or "?".
    """
    text = clean(text)
    if not text:
        return []
    text = _ENUM.sub("\n", text)
    text = _EMPTY_SENT.sub(".", text)
    out: list[str] = []
    for block in text.split("\n"):
        pieces = _BOUNDARY.split(block.strip())
        merged: list[str] = []
        for piece in pieces:
            if merged and merged[-1].rsplit(" ", 1)[-1].lower() in _NO_BREAK:
                merged[-1] = f"{merged[-1]} {piece}"
            else:
                merged.append(piece)
        for sent in merged:
            sent = sent.strip()
            if not sent.strip(" .;,"):
                continue
            sent = sent.rstrip(" ;,")
            if sent[-1] not in ".!?":
                sent += "."
            out.append(sent)
    return out


def tidy_sentence(sentence: str) -> str:
    """Whitespace collapsed, no space before punctuation, first letter upper-case."""
    sentence = re.sub(r"\s+", " ", sentence).strip()
    sentence = re.sub(r"\s+([.,;:])", r"\1", sentence)
    if sentence and sentence[0].islower():
        sentence = sentence[0].upper() + sentence[1:]
    return sentence


def match_start_case(replacement: str, original: str, at_start: bool) -> str:
    """Capitalise a replacement that starts a sentence; elsewhere the table's own case is kept."""
    if at_start and original[:1].isupper():
        return replacement[:1].upper() + replacement[1:]
    return replacement


def shuffled(items: list[str], rng: random.Random) -> list[str]:
    """The items in another order (a shuffle that changed nothing becomes a rotation)."""
    if len(items) < 2:
        return list(items)
    order = list(range(len(items)))
    rng.shuffle(order)
    if order == sorted(order):
        order = order[1:] + order[:1]
    return [items[k] for k in order]


def join(sentences: list[str]) -> str:
    """Sentences joined by single spaces."""
    return " ".join(s.strip() for s in sentences if s.strip())


def render_sections(findings: list[str], impression: list[str], headers: bool = True) -> str:
    """The standard layout: ``FINDINGS: ...`` then ``IMPRESSION: ...`` on its own line."""
    parts = []
    if findings:
        parts.append(f"{FINDINGS_HEADER} {join(findings)}" if headers else join(findings))
    if impression:
        parts.append(f"{IMPRESSION_HEADER} {join(impression)}" if headers else join(impression))
    return ("\n" if headers else " ").join(parts)


def parse_sections(text: str) -> tuple[str, str]:
    """Inverse of :func:`render_sections` with headers: (findings, impression) of a rendered text.

    A text without a ``FINDINGS:`` header is all findings; one without ``IMPRESSION:`` has no impression.
    """
    findings, sep, impression = text.partition(IMPRESSION_HEADER)
    findings = findings.strip()
    if findings.startswith(FINDINGS_HEADER):
        findings = findings[len(FINDINGS_HEADER) :].strip()
    return clean(findings), clean(impression) if sep else ""


def study_sections(study: Study) -> tuple[list[str], list[str]]:
    """Findings and impression sentences of a study (from its ``report`` when both sections are empty)."""
    findings = split_sentences(study.findings)
    impression = split_sentences(study.impression)
    if not findings and not impression and study.report.strip():
        findings = split_sentences(study.report)
    return findings, impression


def source_text(study: Study) -> str:
    """The study's report in the standard layout: the text every variant is compared with.

    Use it as the anchor paired with the study's variants so that anchor and variants differ only by
    the variant's style or error.
    """
    findings, impression = study_sections(study)
    return render_sections(findings, impression)


def layout(findings: list[str], impression: list[str]) -> tuple[str, list[tuple[str, int, int, int]]]:
    """:func:`render_sections` plus each sentence's (section, index, start, end) in the rendered text."""
    spans: list[tuple[str, int, int, int]] = []
    parts: list[str] = []
    pos = 0
    for section, header, sents in (
        ("findings", FINDINGS_HEADER, findings),
        ("impression", IMPRESSION_HEADER, impression),
    ):
        if not sents:
            continue
        if parts:
            parts.append("\n")
            pos += 1
        parts.append(header + " ")
        pos += len(header) + 1
        for k, sent in enumerate(sents):
            if k:
                parts.append(" ")
                pos += 1
            spans.append((section, k, pos, pos + len(sent)))
            parts.append(sent)
            pos += len(sent)
    text = "".join(parts)
    return text, spans
