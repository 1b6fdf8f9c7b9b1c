"""Split a free-text radiology report into findings / impression / indication / comparison / technique.

Handles the header styles seen in MIMIC-CXR, CheXpert Plus, Open-i and hospital exports:

* colon headers at the start of a line, any case: ``FINDINGS:``, ``Impression:``, ``CLINICAL HISTORY:``;
* all-caps headers alone on their line: ``FINDINGS`` followed by the text on the next lines;
* all-caps colon headers inside a line: ``... no effusion. IMPRESSION: Normal chest.``, and capitalised
  ones for the main sections after a sentence end: ``Clinical history: cough. Findings: clear.``;
* looser spellings of the main sections at a line start: ``FINDINGS Lungs are clear.`` (all caps, no
  colon; findings and impression only) and ``Impression - normal`` (a dash);
* a ``FINAL REPORT`` title line, ``WET READ:`` / ``NOTIFICATION:`` / ``ADDENDUM:`` blocks (kept apart
  in ``other``), and unknown all-caps colon headers (also ``other``);
* reports without any header, common in impression-only hospital cohorts: the whole text becomes the
  section named by ``headerless`` (``"impression"`` by default).

Header synonyms live in one table (:data:`HEADER_SYNONYMS`). Whitespace is collapsed to single spaces;
de-identification marks are left as they are ("XXXX" in Open-i, "___" in MIMIC-CXR) so later stages can
recognise them (:data:`DEID_PATTERN`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

SectionName = Literal["findings", "impression", "indication", "comparison", "technique", "other"]

# Canonical section -> header spellings (matched case-insensitively at line start, as written in caps
# inside a line). "title" headers are dropped with no text of their own.
HEADER_SYNONYMS: dict[str, tuple[str, ...]] = {
    "findings": (
        "FINDINGS",
        "FINDING",
        "FINDINGS AND IMPRESSION",
        "FINDINGS/IMPRESSION",
        "REPORT",
        "REPORT TEXT",
        "DESCRIPTION",
        "OBSERVATIONS",
        "PA AND LATERAL VIEWS OF THE CHEST",
        "PA AND LATERAL CHEST RADIOGRAPHS",
    ),
    "impression": (
        "IMPRESSION",
        "IMPRESSIONS",
        "IMP",
        "CONCLUSION",
        "CONCLUSIONS",
        "SUMMARY",
        "OPINION",
        "DIAGNOSIS",
        "ASSESSMENT",
        "INTERPRETATION",
    ),
    "indication": (
        "INDICATION",
        "INDICATIONS",
        "CLINICAL INDICATION",
        "CLINICAL INDICATIONS",
        "HISTORY",
        "CLINICAL HISTORY",
        "MEDICAL HISTORY",
        "CLINICAL INFORMATION",
        "CLINICAL INFO",
        "CLINICAL DETAILS",
        "CLINICAL NOTES",
        "CLINICAL DATA",
        "REASON FOR EXAM",
        "REASON FOR EXAMINATION",
        "REASON FOR STUDY",
        "REASON FOR REFERRAL",
        "REASON",
        "HX",
    ),
    "comparison": (
        "COMPARISON",
        "COMPARISONS",
        "COMPARISON STUDY",
        "COMPARISON STUDIES",
        "COMPARISON EXAM",
        "PRIOR",
        "PRIORS",
        "PRIOR STUDY",
        "PRIOR STUDIES",
    ),
    "technique": (
        "TECHNIQUE",
        "TECHNIQUES",
        "EXAMINATION",
        "EXAM",
        "PROCEDURE",
        "STUDY",
        "VIEWS",
        "VIEW",
    ),
    "other": (
        "WET READ",
        "NOTIFICATION",
        "ADDENDUM",
        "RECOMMENDATION",
        "RECOMMENDATIONS",
        "NOTE",
        "ATTENDING",
        "REFERRING PHYSICIAN",
    ),
    "title": ("FINAL REPORT", "PRELIMINARY REPORT", "RADIOLOGY REPORT"),
}

DEID_PATTERN = re.compile(r"X{2,}|_{3,}|\[\*\*[^\]]*\*\*\]")  # Open-i XXXX, MIMIC ___, MIMIC-II [** **]

_CANONICAL = {syn: name for name, syns in HEADER_SYNONYMS.items() for syn in syns}
# Both patterns find header *candidates* cheaply; a dictionary lookup then decides (one big alternation
# of all synonyms tried at every offset was 5x slower on MIMIC-size runs).
# A candidate at the start of a line, any case, ending in ":" or the end of the line.
_LINE_HEADER = re.compile(r"^[ \t]*(?P<h>[A-Za-z][A-Za-z /&()\-]{0,40}?)[ \t]*(?P<c>:|\r?$)", re.MULTILINE)
# A capitalised candidate after a sentence end or a colon, followed by ":".
_INLINE_HEADER = re.compile(r"(?<=[.;:!?])[ \t]*(?P<h>[A-Z][A-Z /&()\-]{1,40}?)[ \t]*:")
# A capitalised (not all-caps) main-section header after a sentence end: "... cough. Findings: clear."
_INLINE_TITLE = re.compile(r"(?<=[.;!?])[ \t]+(?P<h>[A-Z][a-z]+(?:[ \t]+[A-Za-z][a-z]+){0,3})[ \t]*:")
# An all-caps header without a colon, its text on the same line ("FINDINGS Lungs are clear.").
_BARE_HEADER = re.compile(
    r"^[ \t]*(?P<h>[A-Z][A-Z/&()]*(?:[ \t]+[A-Z][A-Z/&()]*)*)[ \t]+(?=\S)", re.MULTILINE
)
# A header of any case followed by a dash at the start of a line ("Impression - normal").
_DASH_HEADER = re.compile(r"^[ \t]*(?P<h>[A-Za-z][A-Za-z /&()]{0,40}?)[ \t]+[-\u2013][ \t]+", re.MULTILINE)
# Sections whose headers are also recognised in these looser spellings: the text that matters most,
# and names unlikely to open a sentence of a headerless report (unlike "PRIOR" or "STUDY").
_LOOSE = frozenset({"findings", "impression", "indication", "comparison"})
_BARE = frozenset({"findings", "impression"})
_WS = re.compile(r"\s+")


@dataclass(frozen=True)
class Sections:
    """A report split into sections; absent sections are ""."""

    findings: str = ""
    impression: str = ""
    indication: str = ""
    comparison: str = ""
    technique: str = ""
    other: str = ""  # text under unrecognised headers, wet reads, addenda, or before the first header
    headerless: bool = False  # True when no header was found and the text went to one section


def normalize_whitespace(text: str) -> str:
    """Collapse all whitespace runs (newlines, tabs, non-breaking spaces) to one space and strip."""
    return _WS.sub(" ", text.replace("\u00a0", " ")).strip()


def _canonical(header: str) -> str | None:
    return _CANONICAL.get(_WS.sub(" ", header.strip().upper()))


def find_headers(text: str) -> list[tuple[int, int, str]]:
    """Section headers in ``text`` as ``(start, end, canonical_name)``, sorted, non-overlapping.

    ``end`` is the offset just after the header (and its colon), where the section's text starts.
    """
    found: list[tuple[int, int, str]] = []
    for m in _LINE_HEADER.finditer(text):
        h = m.group("h")
        name = _canonical(h)
        if name is None and m.group("c") == ":" and h.isupper() and len(h.strip()) >= 3:
            name = "other"  # an unknown all-caps "WORDS:" header still ends the previous section
        if name is not None:
            found.append((m.start("h"), m.end(), name))
    for m in _INLINE_HEADER.finditer(text):
        name = _canonical(m.group("h"))
        if name is not None:
            found.append((m.start("h"), m.end(), name))
    for m in _INLINE_TITLE.finditer(text):
        name = _canonical(m.group("h"))
        if name in _LOOSE:
            found.append((m.start("h"), m.end(), name))
    for m in _DASH_HEADER.finditer(text):
        name = _canonical(m.group("h"))
        if name in _LOOSE:
            found.append((m.start("h"), m.end(), name))
    for m in _BARE_HEADER.finditer(text):
        # The longest run of leading words that is a header ("FINDINGS AND IMPRESSION", not "FINDINGS").
        words = list(re.finditer(r"\S+", m.group("h")))
        for k in range(len(words), 0, -1):
            name = _canonical(m.group("h")[: words[k - 1].end()])
            if name in _BARE:
                found.append((m.start("h"), m.start("h") + words[k - 1].end(), name))
                break
    found.sort(key=lambda t: (t[0], -t[1]))
    merged: list[tuple[int, int, str]] = []
    for start, end, name in found:
        if merged and start < merged[-1][1]:
            continue  # overlaps a header already taken (the longer match at the same place wins)
        merged.append((start, end, name))
    return merged


def parse_report(text: str, headerless: SectionName = "impression") -> Sections:
    """Parse a free-text report into sections.

    Args:
        text: the report as written (any newline style).
        headerless: where the text of a report without any recognised header goes.

    Returns:
        :class:`Sections` with whitespace-normalised text; repeated sections (e.g. two IMPRESSION blocks)
        are joined with a space in order.
    """
    headers = find_headers(text)
    parts: dict[str, list[str]] = {k: [] for k in ("findings", "impression", "indication", "comparison")}
    parts["technique"], parts["other"] = [], []
    if not any(name != "title" for _, _, name in headers):
        body = text
        for start, end, _ in reversed(headers):  # drop title lines such as FINAL REPORT
            body = body[:start] + " " + body[end:]
        body = normalize_whitespace(body)
        return Sections(**{headerless: body}, headerless=bool(body))
    preamble = normalize_whitespace(text[: headers[0][0]])
    if preamble:
        parts["other"].append(preamble)
    for i, (_, end, name) in enumerate(headers):
        stop = headers[i + 1][0] if i + 1 < len(headers) else len(text)
        chunk = normalize_whitespace(text[end:stop])
        if name == "title":
            if chunk:
                parts["other"].append(chunk)
            continue
        if chunk:
            parts[name].append(chunk)
    return Sections(**{k: " ".join(v) for k, v in parts.items()})
