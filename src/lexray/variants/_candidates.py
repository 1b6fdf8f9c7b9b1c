"""Candidate single-error edits per error type, aimed at the observations the labeler found.

Each generator of :class:`Candidates` yields ``(target observation, edit)`` pairs, most plausible first;
:mod:`lexray.variants.errors` renders them and keeps the first that the labeler verifies.
"""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Iterator, Sequence
from typing import Any

from lexray.variants import _rewrites as rw
from lexray.variants._edit import Doc, Edit, cap, match_case, remove_span, swap_nearest, tidy_edited
from lexray.variants.checks import NO_FINDING, PRESENT

# What may stand just before a degree word put on a finding: the sentence start, a verb, an article, a
# preposition or a list connector ("There is a | large left effusion", "with | extensive atelectasis").
_DEGREE_SLOT = re.compile(r"(?:^|\b(?:is|are|an?|the|of|with|and|by)\s+|,\s+)$", re.I)


class Candidates:
    """Candidate generators per error type: each yields (target observation, edit)."""

    def __init__(self, doc: Doc, rng: random.Random) -> None:
        self.doc = doc
        self.rng = rng
        self.by_sent = doc.mentions_by_sentence()
        obs = doc.labels.observations
        self.present = [o for o, s in obs.items() if s in PRESENT and o != NO_FINDING]
        self.by_status = {
            status: [o for o, s in obs.items() if s == status and o != NO_FINDING]
            for status in ("positive", "uncertain", "negative", "absent")
        }

    def _random_order(self, items: list[str]) -> list[str]:
        """A copy of ``items`` in a random order, which may be the same order (unlike
        :func:`lexray.variants._text.shuffled`, which guarantees a new one): only which item is tried
        first matters here."""
        items = list(items)
        self.rng.shuffle(items)
        return items

    def _sentences_with(self, obs: str, statuses: Sequence[str]) -> list[tuple[int, object]]:
        """(sentence index, first mention) for sentences holding a mention of ``obs`` with a status."""
        out = []
        for k in sorted(self.by_sent):
            ms = [m for m in self.by_sent[k] if m.category == obs and m.status in statuses]
            if ms:
                out.append((k, ms[0]))
        return out

    def _status_targets(
        self, statuses: Sequence[str], in_order: bool = False
    ) -> Iterator[tuple[str, str, list[tuple[int, Any]], str]]:
        """(observation, status, its sentences, plain noun) per finding stated with one of ``statuses``.

        Findings come in random order, or with ``in_order`` grouped by status in the order given.
        """
        targets = [(o, status) for status in statuses for o in self.by_status[status]]
        self.rng.shuffle(targets)
        if in_order:
            targets.sort(key=lambda t: statuses.index(t[1]))  # stable: the shuffle stays within a status
        for obs, status in targets:
            hits = self._sentences_with(obs, (status,))
            if hits:
                yield obs, status, hits, rw.CANONICAL.get(obs, obs.lower())

    def _only(self, k: int, obs: str) -> bool:
        return all(m.category == obs for m in self.by_sent.get(k, []))

    def _rel(self, k: int, m: Any) -> int:
        return m.start - self.doc.spans[k][2]

    def _phrase_span(self, k: int, m: Any, with_status: bool) -> tuple[int, int]:
        """A mention's phrase with its attribute words (and its hedge/negation word) in sentence ``k``."""
        start, end = self._phrase_start(k, m), self._rel(k, m) + (m.end - m.start)
        cue = self._cue(k, m, "status") if with_status else None
        if cue is not None and cue[0] < start and start - cue[1] <= 2:
            start = cue[0]
        article = re.search(r"\b(?:an?|the)\s+$", self.doc.sentences[k][:start], re.I)
        if article:  # "atelectasis and a small effusion": the article goes with its phrase
            start = article.start()
        return start, end

    def _phrase_start(self, k: int, m: Any) -> int:
        """Start of a mention's noun phrase: its attribute words just before it ("small left effusion")."""
        start = self._rel(k, m)
        for name in ("severity", "laterality", "location", "chronicity"):
            cue = self._cue(k, m, name)
            if cue is not None and cue[0] < start and start - cue[1] <= 12:
                start = cue[0]
        return start

    def _cue(self, k: int, m: Any, name: str) -> tuple[int, int] | None:
        """The span of a mention's cue word (e.g. its laterality) relative to sentence ``k``."""
        span = (getattr(m, "cues", None) or {}).get(name)
        if span is None:
            return None
        offset = self.doc.spans[k][2]
        start, end = span[0] - offset, span[1] - offset
        return (start, end) if 0 <= start < end <= len(self.doc.sentences[k]) else None

    def word_swap(self, attribute: str, table: dict[str, tuple[str, ...]]) -> Iterator[tuple[str, Edit]]:
        """Per present finding with ``attribute``, its attribute words swapped by ``table`` in every sentence."""
        for obs in self._random_order(self.present):
            # Only mentions the labeler gave this attribute: a swap elsewhere could not change it.
            hits = [
                (
                    k,
                    next(
                        m
                        for m in self.by_sent[k]
                        if m.category == obs and m.status in PRESENT and getattr(m, attribute)
                    ),
                )
                for k in sorted(self.by_sent)
                if any(
                    m.category == obs and m.status in PRESENT and getattr(m, attribute)
                    for m in self.by_sent[k]
                )
            ]
            choice = {word: self.rng.choice(alts) for word, alts in table.items()}
            edit: Edit = {}
            for k, m in hits:
                sent = self.doc.sentences[k]
                cue = self._cue(k, m, attribute)
                new = None
                if cue is not None:
                    # The labeler says which words set the attribute: swap exactly those when listed.
                    new = swap_nearest(sent[cue[0] : cue[1]], 0, table, choice)
                    new = None if new is None else sent[: cue[0]] + new + sent[cue[1] :]
                if new is None:
                    new = swap_nearest(sent, self._rel(k, m), table, choice)
                if new is not None:
                    edit[k] = [tidy_edited(new)]
            if not edit:
                continue
            yield obs, edit  # every sentence that states the finding, so the report stays consistent
            if len(edit) > 1:
                first = min(edit)
                yield obs, {first: edit[first]}

    def laterality(self) -> Iterator[tuple[str, Edit]]:
        """A finding moved to the other side (left <-> right, bilateral <-> one side)."""
        return self.word_swap("laterality", rw.LATERALITY_SWAPS)

    def location(self) -> Iterator[tuple[str, Edit]]:
        """A finding moved to another lung region (upper <-> lower, apex <-> base, ...)."""
        return self.word_swap("location", rw.LOCATION_SWAPS)

    def severity(self) -> Iterator[tuple[str, Edit]]:
        """A finding's degree swapped for another, or a far-end degree put on one stated without any."""
        yield from self.word_swap("severity", rw.SEVERITY_SWAPS)
        yield from self._severity_added()

    def _severity_added(self) -> Iterator[tuple[str, Edit]]:
        """A far-end degree on a finding stated without one, in every sentence that states it."""
        for obs in self._random_order([o for o in self.present if o in rw.SEVERITY_INSERTS]):
            hits = self._sentences_with(obs, ("positive",))
            mentions = [m for ms in self.by_sent.values() for m in ms if m.category == obs]
            if not hits or any(m.severity for m in mentions):
                continue
            degree = self.rng.choice(rw.SEVERITY_INSERTS[obs])
            edit: Edit = {}
            for k, m in hits:
                sent, rel = self.doc.sentences[k], self._rel(k, m)
                predicate = re.search(r"\b(?:is|are|appears?)\s+((?:enlarged|widened)\b)", m.text, re.I)
                if predicate:
                    adverb = rw.DEGREE_ADVERBS.get(degree)
                    if adverb is None:
                        break
                    at = rel + predicate.start(1)  # "heart is enlarged" -> "heart is markedly enlarged"
                    edit[k] = [tidy_edited(f"{sent[:at]}{adverb} {sent[at:]}")]
                else:
                    at = self._phrase_start(k, m)
                    if at and not _DEGREE_SLOT.search(sent[:at]):
                        break  # "pulmonary edema": no slot for a degree before the noun's own modifiers
                    rest = sent[at:]
                    if at == 0 and not rest.split(" ", 1)[0].isupper():
                        rest = rest[:1].lower() + rest[1:]
                    edit[k] = [tidy_edited(f"{sent[:at]}{degree} {rest}")]
            else:
                yield obs, edit

    def chronicity(self) -> Iterator[tuple[str, Edit]]:
        """A finding's change over time reversed (stable <-> new, increased <-> decreased, ...)."""
        return self.word_swap("chronicity", rw.CHRONICITY_SWAPS)

    def negation(self) -> Iterator[tuple[str, Edit]]:
        """A present finding ruled out, or a ruled-out one stated as present."""
        # A report with findings is made normal before a normal report is made abnormal: both are
        # clinically important, the first is rarer in Open-i.
        for obs, status, hits, canonical in self._status_targets(("positive", "negative"), in_order=True):
            if status == "positive":
                if all(self._only(k, obs) for k, _ in hits):
                    yield obs, {k: [f"No {canonical}."] for k, _ in hits}
                    yield obs, {k: [cap(f"no {m.text.strip()}.")] for k, m in hits}
            else:
                if all(self._only(k, obs) and self._cue(k, m, "status") for k, m in hits):
                    # "There is no pneumothorax." -> "There is pneumothorax.": drop the negation cue.
                    cut: Edit = {}
                    for k, m in hits:
                        sent, (a, b) = self.doc.sentences[k], self._cue(k, m, "status")
                        cut[k] = [tidy_edited(sent[:a] + sent[b:])]
                    yield obs, cut
                edit: Edit = {}
                for k, m in hits:
                    sent = self.doc.sentences[k]
                    if self._only(k, obs):
                        edit[k] = [f"{cap(canonical)} is present."]
                    else:
                        rest = remove_span(sent, *self._phrase_span(k, m, with_status=False))
                        edit[k] = [rest, f"{cap(canonical)} is present."]
                yield obs, edit

    def certainty(self) -> Iterator[tuple[str, Edit]]:
        """A stated finding hedged, a hedged one made definite, or a ruled-out one made possible."""
        # Stated findings first (hedged, or a hedge made definite), then the far more common ruled-out
        # ones ("No evidence of pneumonia." -> "Possible pneumonia.").
        stated = self._status_targets(("positive", "uncertain"))
        for obs, status, hits, canonical in itertools.chain(stated, self._status_targets(("negative",))):
            if status == "positive":
                yield from self._hedged(obs, hits, canonical)
            elif status == "uncertain":
                yield from self._made_definite(obs, hits, canonical)
            else:
                yield from self._negation_hedged(obs, hits, canonical)

    def _hedged(self, obs: str, hits: list[tuple[int, Any]], canonical: str) -> Iterator[tuple[str, Edit]]:
        """A stated finding made uncertain: a hedge before it, or its evidential words hedged."""
        evidential: Edit = {}
        for k, m in hits:
            # "Opacity consistent with pneumonia": the words just before the finding state it.
            sent, rel = self.doc.sentences[k], self._phrase_start(k, m)
            for pattern, alternatives in rw.EVIDENTIAL_HEDGES:
                found = re.search(rf"\b({pattern})(\s+(?:(?:an?|the)\s+)?)$", sent[:rel], re.I)
                if found:
                    words = match_case(self.rng.choice(alternatives), found.group(1))
                    evidential[k] = [
                        tidy_edited(sent[: found.start(1)] + words + found.group(2) + sent[rel:])
                    ]
                    break
        if evidential:
            yield obs, evidential
        hedge = self.rng.choice(rw.HEDGES)
        edit: Edit = {}
        for k, m in hits:
            sent, rel = self.doc.sentences[k], self._phrase_start(k, m)
            rest = sent[rel:]
            if rel == 0 and not rest.split(" ", 1)[0].isupper():
                rest = rest[:1].lower() + rest[1:]  # "Small effusion" -> "Possible small effusion"
            edit[k] = [tidy_edited(f"{sent[:rel]}{hedge} {rest}")]
        yield obs, edit
        if all(self._only(k, obs) for k, _ in hits):
            frame = self.rng.choice(rw.HEDGED_FRAMES)
            yield obs, {k: [cap(frame.format(canonical))] for k, _ in hits}

    def _made_definite(
        self, obs: str, hits: list[tuple[int, Any]], canonical: str
    ) -> Iterator[tuple[str, Edit]]:
        """An uncertain finding stated as certain (its hedge words dropped), or ruled out."""
        edit: Edit = {}
        for k, m in hits:
            sent = self.doc.sentences[k]
            cue = self._cue(k, m, "status")
            if cue is not None:
                # Rewrite only the words the labeler read as the hedge.
                a, b = cue
                words = sent[a:b]
                for pattern, repl in rw.CERTAINTY_REWRITES:
                    words = re.sub(rf"\b{pattern}", repl, words + " ", flags=re.I).rstrip()
                sent = sent[:a] + words + sent[b:]
            for pattern, repl in rw.CERTAINTY_REWRITES:
                sent = re.sub(rf"\b{pattern}", repl, sent, flags=re.I)
            if sent != self.doc.sentences[k]:
                edit[k] = [tidy_edited(sent)]
        if edit:
            yield obs, edit
        if all(self._only(k, obs) for k, _ in hits):
            yield obs, {k: [f"No evidence of {canonical}."] for k, _ in hits}

    def _negation_hedged(
        self, obs: str, hits: list[tuple[int, Any]], canonical: str
    ) -> Iterator[tuple[str, Edit]]:
        """A ruled-out finding made possible: its negation cue hedged, or a hedged sentence of its own."""
        frame = cap(self.rng.choice(rw.HEDGED_FRAMES).format(canonical))
        if all(self._only(k, obs) for k, _ in hits):
            cut: Edit = {}
            for k, m in hits:
                sent, cue = self.doc.sentences[k], self._cue(k, m, "status")
                if cue is None:
                    break
                words = sent[cue[0] : cue[1]]
                for pattern, hedge in rw.NEGATION_HEDGES:
                    if re.fullmatch(pattern, words, re.I):
                        cut[k] = [tidy_edited(sent[: cue[0]] + match_case(hedge, words) + sent[cue[1] :])]
                        break
                else:
                    break
            else:
                yield obs, cut
            yield obs, {k: [frame] for k, _ in hits}
            return
        # "No pneumothorax or effusion." -> "No pneumothorax. Possible pleural effusion."
        edit: Edit = {}
        for k, m in hits:
            if self._only(k, obs):
                edit[k] = [frame]
            else:
                rest = remove_span(self.doc.sentences[k], *self._phrase_span(k, m, with_status=False))
                edit[k] = [rest, frame]
        yield obs, edit

    def fabricated(self) -> Iterator[tuple[str, Edit]]:
        """A sentence stating a finding the report does not mention, inserted beside a random sentence."""
        n = len(self.doc.sentences)
        for obs in self._random_order([o for o in self.by_status["absent"] if o in rw.FABRICATIONS]):
            sentence = self.rng.choice(rw.FABRICATIONS[obs]).format(
                side=self.rng.choice(rw.SIDES),
                degree=self.rng.choice(rw.DEGREES),
                size=self.rng.choice(rw.SIZES),
            )
            # Insert within the findings when there are findings, else within the impression.
            n_findings = len(self.doc.findings) or n
            k = self.rng.randrange(n_findings)
            before = self.rng.random() < 0.5
            yield obs, {k: [sentence, self.doc.sentences[k]] if before else [self.doc.sentences[k], sentence]}

    def omission(self) -> Iterator[tuple[str, Edit]]:
        """A present finding removed: its sentences deleted, or its mentions cut from shared ones."""
        for obs in self._random_order(self.present):
            hits = self._sentences_with(obs, PRESENT)
            if not hits:
                continue
            edit: Edit = {}
            for k, _ in hits:
                if self._only(k, obs):
                    edit[k] = []
                else:
                    # Remove every mention of obs from the sentence, last first so offsets stay valid.
                    sent = self.doc.sentences[k]
                    for m in sorted(
                        (m for m in self.by_sent[k] if m.category == obs), key=lambda m: -m.start
                    ):
                        sent = remove_span(sent, *self._phrase_span(k, m, with_status=True))
                    edit[k] = [sent]
            if len(edit) == len(self.doc.sentences) and all(not v for v in edit.values()):
                continue  # nothing would be left of the report
            yield obs, edit
