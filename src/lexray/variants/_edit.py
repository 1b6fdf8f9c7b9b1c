"""A report as editable sentences, and the small sentence edits that single-error rewrites are made of."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from lexray.variants._text import layout

Edit = dict[int, list[str]]  # sentence index (in Doc.spans order) -> replacement sentences ([] deletes)


@dataclass
class Doc:
    """A source report as sentences with offsets, and its labels."""

    findings: list[str]
    impression: list[str]
    text: str
    spans: list[tuple[str, int, int, int]]  # (section, index in section, start, end) per sentence
    labels: Any

    @property
    def sentences(self) -> list[str]:
        """The findings then the impression sentences, in :attr:`spans` order."""
        return [*self.findings, *self.impression]

    def sentence_index(self, offset: int) -> int | None:
        """Index of the sentence holding character ``offset`` of :attr:`text` (None: between sentences)."""
        for k, (_, _, start, end) in enumerate(self.spans):
            if start <= offset < end:
                return k
        return None

    def mentions_by_sentence(self) -> dict[int, list]:
        """The labeler's mentions grouped by the sentence they start in (sentences without one are absent)."""
        out: dict[int, list] = {}
        for m in self.labels.mentions:
            k = self.sentence_index(m.start)
            if k is not None:
                out.setdefault(k, []).append(m)
        return out

    def apply(self, edit: Edit) -> tuple[list[str], list[str]]:
        """New (findings, impression) sentence lists after an edit."""
        new_f: list[str] = []
        new_i: list[str] = []
        for k, (section, _, _, _) in enumerate(self.spans):
            sents = edit.get(k, [self.sentences[k]])
            (new_f if section == "findings" else new_i).extend(s for s in sents if s.strip())
        return new_f, new_i

    def render(self, edit: Edit) -> str:
        """The report text after ``edit``, laid out as the source reports are."""
        return layout(*self.apply(edit))[0]


def cap(s: str) -> str:
    """``s`` with its first character upper-cased, the rest unchanged."""
    return s[:1].upper() + s[1:] if s else s


def match_case(new: str, old: str) -> str:
    """``new`` in the case of the word it replaces: all capitals, capitalised or as it is."""
    if len(old) > 1 and old.isupper():
        return new.upper()
    if old[:1].isupper():
        return cap(new)
    return new


def tidy_edited(sentence: str) -> str:
    """An edited sentence cleaned up: spaces, stray commas and conjunctions, article agreement, capital."""
    sentence = re.sub(r"\s+", " ", sentence).strip()
    sentence = re.sub(r"\s+([.,;:])", r"\1", sentence)
    sentence = re.sub(r",\s*,", ",", sentence)
    sentence = re.sub(r"^(?:,|and|or)\s+", "", sentence, flags=re.I)
    sentence = re.sub(r"\b(?:,\s*)?(?:and|or)\s*\.$", ".", sentence, flags=re.I)
    # Article agreement after a swapped word ("a new" -> "an unchanged" and back).
    sentence = re.sub(r"\b([Aa]) (?=[aeiouAEIOU][a-z])", r"\1n ", sentence)
    sentence = re.sub(r"\b([Aa])n (?=[b-df-hj-np-tv-z])", r"\1 ", sentence)
    return cap(sentence)


def swap_nearest(
    sentence: str, rel: int, table: dict[str, tuple[str, ...]], choice: dict[str, str]
) -> str | None:
    """Swap the table word nearest to character ``rel`` of the sentence; None when there is none.

    ``choice`` maps a word to its replacement where the table offers several ("bilateral" -> "left"):
    one mapping per candidate, so every sentence of an edit swaps the same way.
    """
    pattern = re.compile(
        r"\b(" + "|".join(sorted(map(re.escape, table), key=len, reverse=True)) + r")\b", re.I
    )
    matches = list(pattern.finditer(sentence))
    if not matches:
        return None
    m = min(matches, key=lambda x: min(abs(x.start() - rel), abs(x.end() - rel)))
    word = m.group(1).lower()
    new = match_case(choice.get(word, table[word][0]), m.group(1))
    return sentence[: m.start()] + new + sentence[m.end() :]


def remove_span(sentence: str, start: int, end: int) -> str:
    """Remove a list item (with its comma / "and" / "or" connector) from a sentence."""
    before, after = sentence[:start], sentence[end:]
    m = re.search(r"(?:,\s*(?:and|or)?|\s+(?:and|or))\s*$", before, re.I)
    if m:
        before = before[: m.start()]
    else:
        m = re.match(r"^\s*(?:,\s*(?:and|or)?|(?:and|or)\b)\s*", after, re.I)
        if m:
            after = after[m.end() :]
    return tidy_edited(before + " " + after)
