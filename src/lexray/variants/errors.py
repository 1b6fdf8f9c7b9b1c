"""Single-error report variants (hard negatives), driven by the labeler's mention spans.

For each error type a generator proposes candidate edits of the source report at sentence level, aimed
at one observation found by the labeler (swap the laterality word nearest to a mention, negate the
sentences that state a finding, insert a fabricated finding, ...). Candidates are verified in rounds
with one labeler ``pipe`` per round over all pending studies: the first candidate that changes exactly
the intended observation or attribute (:func:`lexray.variants.checks.check_error`) is kept. When none
passes, the first candidate is stored as rejected so the rejection rate stays visible.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from lexray.data.study import Study
from lexray.variants import _rewrites as rw
from lexray.variants._text import layout, study_sections
from lexray.variants.checks import (
    ATTRIBUTES,
    NO_FINDING,
    PRESENT,
    CachedLabeler,
    LabelerLike,
    check_error,
    get_default_labeler,
)
from lexray.variants.record import ERROR_STYLE, ERROR_TYPES, NOT_APPLICABLE, VariantRecord
from lexray.variants.rules import RULES_GENERATOR, rules_version

Edit = dict[int, list[str]]  # sentence index (in _Doc.spans order) -> replacement sentences ([] deletes)


@dataclass
class _Doc:
    """A source report as sentences with offsets, and its labels."""

    findings: list[str]
    impression: list[str]
    text: str
    spans: list[tuple[str, int, int, int]]  # (section, index in section, start, end) per sentence
    labels: Any

    @property
    def sentences(self) -> list[str]:
        return [*self.findings, *self.impression]

    def sentence_index(self, offset: int) -> int | None:
        for k, (_, _, start, end) in enumerate(self.spans):
            if start <= offset < end:
                return k
        return None

    def mentions_by_sentence(self) -> dict[int, list]:
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
        return layout(*self.apply(edit))[0]


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:] if s else s


def _match_case(new: str, old: str) -> str:
    if len(old) > 1 and old.isupper():
        return new.upper()
    if old[:1].isupper():
        return _cap(new)
    return new


def _tidy(sentence: str) -> str:
    sentence = re.sub(r"\s+", " ", sentence).strip()
    sentence = re.sub(r"\s+([.,;:])", r"\1", sentence)
    sentence = re.sub(r",\s*,", ",", sentence)
    sentence = re.sub(r"^(?:,|and|or)\s+", "", sentence, flags=re.I)
    sentence = re.sub(r"\b(?:,\s*)?(?:and|or)\s*\.$", ".", sentence, flags=re.I)
    # Article agreement after a swapped word ("a new" -> "an unchanged" and back).
    sentence = re.sub(r"\b([Aa]) (?=[aeiouAEIOU][a-z])", r"\1n ", sentence)
    sentence = re.sub(r"\b([Aa])n (?=[b-df-hj-np-tv-z])", r"\1 ", sentence)
    return _cap(sentence)


def _swap_nearest(
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
    new = _match_case(choice.get(word, table[word][0]), m.group(1))
    return sentence[: m.start()] + new + sentence[m.end() :]


def _remove_span(sentence: str, start: int, end: int) -> str:
    """Remove a list item (with its comma / "and" / "or" connector) from a sentence."""
    before, after = sentence[:start], sentence[end:]
    m = re.search(r"(?:,\s*(?:and|or)?|\s+(?:and|or))\s*$", before, re.I)
    if m:
        before = before[: m.start()]
    else:
        m = re.match(r"^\s*(?:,\s*(?:and|or)?|(?:and|or)\b)\s*", after, re.I)
        if m:
            after = after[m.end() :]
    return _tidy(before + " " + after)


class _Gen:
    """Candidate generators per error type: each yields (target observation, edit)."""

    def __init__(self, doc: _Doc, rng: random.Random) -> None:
        self.doc = doc
        self.rng = rng
        self.by_sent = doc.mentions_by_sentence()
        obs = doc.labels.observations
        self.present = [o for o, s in obs.items() if s in PRESENT and o != NO_FINDING]
        self.positive = [o for o, s in obs.items() if s == "positive" and o != NO_FINDING]
        self.uncertain = [o for o, s in obs.items() if s == "uncertain" and o != NO_FINDING]
        self.negative = [o for o, s in obs.items() if s == "negative" and o != NO_FINDING]
        self.absent = [o for o, s in obs.items() if s == "absent" and o != NO_FINDING]

    def _shuffled(self, items: list[str]) -> list[str]:
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
        for obs in self._shuffled(self.present):
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
                    new = _swap_nearest(sent[cue[0] : cue[1]], 0, table, choice)
                    new = None if new is None else sent[: cue[0]] + new + sent[cue[1] :]
                if new is None:
                    new = _swap_nearest(sent, self._rel(k, m), table, choice)
                if new is not None:
                    edit[k] = [_tidy(new)]
            if not edit:
                continue
            yield obs, edit  # every sentence that states the finding, so the report stays consistent
            if len(edit) > 1:
                first = min(edit)
                yield obs, {first: edit[first]}

    def laterality(self) -> Iterator[tuple[str, Edit]]:
        return self.word_swap("laterality", rw.LATERALITY_SWAPS)

    def location(self) -> Iterator[tuple[str, Edit]]:
        return self.word_swap("location", rw.LOCATION_SWAPS)

    def severity(self) -> Iterator[tuple[str, Edit]]:
        return self.word_swap("severity", rw.SEVERITY_SWAPS)

    def chronicity(self) -> Iterator[tuple[str, Edit]]:
        return self.word_swap("chronicity", rw.CHRONICITY_SWAPS)

    def negation(self) -> Iterator[tuple[str, Edit]]:
        targets = [(o, "positive") for o in self.positive] + [(o, "negative") for o in self.negative]
        self.rng.shuffle(targets)
        # A report with findings is made normal before a normal report is made abnormal: both are
        # clinically important, the first is rarer in Open-i.
        targets.sort(key=lambda t: t[1] != "positive")
        for obs, status in targets:
            hits = self._sentences_with(obs, (status,))
            if not hits:
                continue
            canonical = rw.CANONICAL.get(obs, obs.lower())
            if status == "positive":
                if all(self._only(k, obs) for k, _ in hits):
                    yield obs, {k: [f"No {canonical}."] for k, _ in hits}
                    yield obs, {k: [_cap(f"no {m.text.strip()}.")] for k, m in hits}
            else:
                if all(self._only(k, obs) and self._cue(k, m, "status") for k, m in hits):
                    # "There is no pneumothorax." -> "There is pneumothorax.": drop the negation cue.
                    cut: Edit = {}
                    for k, m in hits:
                        sent, (a, b) = self.doc.sentences[k], self._cue(k, m, "status")
                        cut[k] = [_tidy(sent[:a] + sent[b:])]
                    yield obs, cut
                edit: Edit = {}
                for k, m in hits:
                    sent = self.doc.sentences[k]
                    if self._only(k, obs):
                        edit[k] = [f"{_cap(canonical)} is present."]
                    else:
                        rest = _remove_span(sent, *self._phrase_span(k, m, with_status=False))
                        edit[k] = [rest, f"{_cap(canonical)} is present."]
                yield obs, edit

    def certainty(self) -> Iterator[tuple[str, Edit]]:
        targets = [(o, "positive") for o in self.positive] + [(o, "uncertain") for o in self.uncertain]
        self.rng.shuffle(targets)
        for obs, status in targets:
            hits = self._sentences_with(obs, (status,))
            if not hits:
                continue
            canonical = rw.CANONICAL.get(obs, obs.lower())
            if status == "positive":
                hedge = self.rng.choice(rw.HEDGES)
                edit: Edit = {}
                for k, m in hits:
                    sent, rel = self.doc.sentences[k], self._phrase_start(k, m)
                    rest = sent[rel:]
                    if rel == 0 and not rest.split(" ", 1)[0].isupper():
                        rest = rest[:1].lower() + rest[1:]  # "Small effusion" -> "Possible small effusion"
                    edit[k] = [_tidy(f"{sent[:rel]}{hedge} {rest}")]
                yield obs, edit
                if all(self._only(k, obs) for k, _ in hits):
                    yield obs, {k: [f"{_cap(hedge)} {canonical}."] for k, _ in hits}
            else:
                edit = {}
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
                        edit[k] = [_tidy(sent)]
                if edit:
                    yield obs, edit

    def fabricated(self) -> Iterator[tuple[str, Edit]]:
        n = len(self.doc.sentences)
        for obs in self._shuffled([o for o in self.absent if o in rw.FABRICATIONS]):
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
        for obs in self._shuffled(self.present):
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
                        sent = _remove_span(sent, *self._phrase_span(k, m, with_status=True))
                    edit[k] = [sent]
            if len(edit) == len(self.doc.sentences) and all(not v for v in edit.values()):
                continue  # nothing would be left of the report
            yield obs, edit


_GENERATORS: dict[str, Callable[[_Gen], Iterator[tuple[str, Edit]]]] = {
    t: getattr(_Gen, t) for t in ERROR_TYPES
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
    docs: dict[str, _Doc | None] = {}
    texts = {}
    for study in studies:
        findings, impression = study_sections(study)
        if findings or impression:
            texts[study.study_id] = (findings, impression, *layout(findings, impression))
    source_labels = dict(zip(texts, labeler.pipe([t[2] for t in texts.values()]), strict=True))
    for study in studies:
        if study.study_id in texts:
            f, i, text, spans = texts[study.study_id]
            docs[study.study_id] = _Doc(f, i, text, spans, source_labels[study.study_id])
        else:
            docs[study.study_id] = None

    results: dict[tuple[str, str], VariantRecord] = {}
    # (study id, type) -> candidate stream, first candidate and its failure, for the rejection record.
    pending: dict[tuple[str, str], Iterator[tuple[str, str]]] = {}
    first: dict[tuple[str, str], tuple[str, str, str]] = {}
    for study in studies:
        doc = docs[study.study_id]
        for etype in types:
            key = (study.study_id, etype)
            if doc is None:
                results[key] = _record(
                    study.study_id, etype, "", "", False, f"{NOT_APPLICABLE}: empty report"
                )
                continue
            gen = _Gen(doc, random.Random(f"{seed}|{study.study_id}|error:{etype}"))
            pending[key] = _texts(doc, _GENERATORS[etype](gen), max_candidates)

    while pending:
        batch: list[tuple[tuple[str, str], str, str]] = []
        for key, stream in list(pending.items()):
            nxt = next(stream, None)
            if nxt is None:
                del pending[key]
                sid, etype = key
                if key in first:
                    target, text, why = first[key]
                    results[key] = _record(
                        sid, etype, target, text, False, f"no candidate passed; first: {why}"
                    )
                else:
                    reason = f"{NOT_APPLICABLE}: no finding in the report suits a {etype} error"
                    results[key] = _record(sid, etype, "", "", False, reason)
                continue
            batch.append((key, *nxt))
        if not batch:
            break
        labels = labeler.pipe([text for _, _, text in batch])
        for (key, target, text), lab in zip(batch, labels, strict=True):
            doc = docs[key[0]]
            ok, why = check_error(doc.labels, lab, key[1], target, attributes)
            if ok:
                results[key] = _record(key[0], key[1], target, text, True, "")
                del pending[key]
            else:
                first.setdefault(key, (target, text, why))
    return [results[(s.study_id, t)] for s in studies for t in types]


def _texts(doc: _Doc, candidates: Iterator[tuple[str, Edit]], limit: int) -> Iterator[tuple[str, str]]:
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


def _record(study_id: str, etype: str, target: str, text: str, accepted: bool, reason: str) -> VariantRecord:
    return VariantRecord(
        study_id=study_id,
        style=ERROR_STYLE,
        kind="error",
        error_type=etype,
        generator=RULES_GENERATOR,
        prompt_version=rules_version(),
        text=text,
        accepted=accepted,
        reject_reason="" if accepted else reason,
        target=target,
    )
