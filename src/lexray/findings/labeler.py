"""The chest X-ray finding labeler: a medspaCy pipeline (sentences, sections, targets, ConText).

Pipeline, built once per process::

    tokenizer -> sentencizer -> medspacy_sectionizer (headers are their own sentences)
              -> medspacy_target_matcher (the lexicon in ``_lexicon``) -> medspacy_context (negation,
              uncertainty, hypothetical, pseudo cues, terminators)

then, in Python, each target becomes a :class:`Mention`: its status from the nearest ConText cue,
its side, zone, severity and chronicity from the attribute words of its clause, and the 14 CheXpert
observations are aggregated from the mentions (:func:`lexray.findings.labels.aggregate`).
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from itertools import islice

import spacy
from medspacy.context import ConText, ConTextRule
from medspacy.section_detection import Sectionizer, SectionRule
from medspacy.target_matcher import TargetMatcher, TargetRule
from spacy.language import Language
from spacy.matcher import PhraseMatcher
from spacy.tokens import Doc, Span

from lexray.findings import _lexicon as lex
from lexray.findings.labels import Mention, ReportLabels, Status, aggregate

logger = logging.getLogger(__name__)

_STATUS_OF_CATEGORY: dict[str, Status] = {
    lex.NEG: "negative",
    lex.POSS: "uncertain",
    lex.HYPO: "uncertain",
}


@dataclass(frozen=True)
class LabelerConfig:
    """Settings of the finding labeler."""

    batch_size: int = 128  # reports per nlp.pipe batch
    n_process: int = 1  # worker processes for pipe(); 1 labels in this process
    skip_sections: tuple[str, ...] = ("indication", "history", "comparison", "technique")  # sections not read
    max_attribute_gap: int = 4  # most tokens between a finding and an attribute word that describes it


def _attribute_key(values: dict[str, str]) -> str:
    return "|".join(f"{k}={v}" for k, v in sorted(values.items()))


def _parse_attribute_key(key: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in key.split("|"))


class Labeler:
    """Reads the 14 CheXpert observations and finding mentions out of chest X-ray reports.

    Build it once (loading takes about a second) and reuse it; :func:`get_labeler` caches one.

    Example:
        >>> labels = get_labeler()("Small left pleural effusion. No pneumothorax.")
        >>> labels.observations["Pleural Effusion"], labels.observations["Pneumothorax"]
        ('positive', 'negative')
    """

    def __init__(self, config: LabelerConfig | None = None) -> None:
        """Build the medspaCy pipeline and the attribute matcher.

        Args:
            config: labeler settings; defaults when None.
        """
        self.config = config or LabelerConfig()
        self.nlp = self._build_pipeline()
        self._attributes = self._build_attribute_matcher(self.nlp)
        self._skip = frozenset(self.config.skip_sections)

    # ----------------------------------------------------------------- construction
    def _build_pipeline(self) -> Language:
        nlp = spacy.blank("en")
        nlp.add_pipe("sentencizer")
        sectionizer: Sectionizer = nlp.add_pipe(
            "medspacy_sectionizer", config={"rules": None, "apply_sentence_boundary": True}
        )
        # One-word headers as a token pattern per section, longer ones as phrases. (Every medspaCy
        # matcher below gets at least one token pattern: with none, spaCy warns W036 on every doc.)
        section_rules = []
        for category, headers in lex.SECTION_HEADERS.items():
            words = [h for h in headers if " " not in h]
            pattern = [{"LOWER": {"IN": words}}, {"TEXT": ":"}]
            section_rules.append(SectionRule(f"{category}:", category=category, pattern=pattern))
            section_rules += [SectionRule(f"{h}:", category=category) for h in headers if " " in h]
        sectionizer.add(section_rules)
        matcher: TargetMatcher = nlp.add_pipe("medspacy_target_matcher")
        rules = []
        for term in lex.TERMS:
            meta = {
                "observation": term.observation,
                "category": term.category,
                "status": term.status,
                "implied": dict(term.implied),
            }
            label = "NORMAL" if term.status else "FINDING"
            rules += [TargetRule(p, label, metadata=meta) for p in dict.fromkeys(term.phrases)]
            rules += [TargetRule(term.observation, label, pattern=p, metadata=meta) for p in term.patterns]
            if term.regexes:
                # one alternation per term: medspaCy's regex matcher rebuilds the doc text for every pattern
                pattern = "|".join(f"(?:{r})" for r in term.regexes)
                rules.append(TargetRule(term.observation, label, pattern=pattern, metadata=meta))
        matcher.add(rules)
        context: ConText = nlp.add_pipe("medspacy_context", config={"rules": None, "span_attrs": None})
        context.add(
            [
                ConTextRule(
                    r.literal,
                    r.category,
                    pattern=r.pattern,
                    direction=r.direction,
                    max_scope=r.max_scope,
                    # An uncertainty stops at a negation ("possible effusion, no pneumothorax"); a negation
                    # runs on ("no consolidation concerning for pneumonia") and the nearest cue decides.
                    terminated_by={lex.NEG} if r.category != lex.NEG else set(),
                    allowed_types={"FINDING"},
                )
                for r in lex.CONTEXT_RULES
            ]
        )
        return nlp

    @staticmethod
    def _build_attribute_matcher(nlp: Language) -> PhraseMatcher:
        matcher = PhraseMatcher(nlp.vocab, attr="LOWER")
        tables: list[tuple[str, dict[str, str]]] = [
            ("laterality", lex.LATERALITY),
            ("location", lex.LOCATION),
            ("severity", lex.SEVERITY),
            ("chronicity", lex.CHRONICITY),
        ]
        entries: dict[str, list[str]] = {}
        for attr, table in tables:
            for phrase, value in table.items():
                entries.setdefault(_attribute_key({attr: value}), []).append(phrase)
        for phrase, (side, zone) in lex.SITE.items():
            entries.setdefault(_attribute_key({"laterality": side, "location": zone}), []).append(phrase)
        for key, phrases in entries.items():
            matcher.add(key, [nlp.make_doc(p) for p in dict.fromkeys(phrases)])
        return matcher

    # ----------------------------------------------------------------- labelling
    def __call__(self, text: str) -> ReportLabels:
        """Label one report.

        Args:
            text: the report (any sections; headers such as "FINDINGS:" are recognised).

        Returns:
            The 14 observation statuses and the mentions with spans and attributes.
        """
        if not isinstance(text, str):
            raise TypeError(f"Labeler expects report text as str, got {type(text).__name__}")
        return self._labels(self.nlp(text))

    def pipe(
        self, texts: Iterable[str], batch_size: int | None = None, n_process: int | None = None
    ) -> Iterator[ReportLabels]:
        """Label many reports, in input order, with spaCy batching and optional worker processes.

        Args:
            texts: report texts.
            batch_size: reports per spaCy batch (config default when None).
            n_process: worker processes (config default when None); each builds its own labeler, so
                use it for tens of thousands of reports, not for a handful.

        Yields:
            One :class:`ReportLabels` per text.
        """
        batch_size = batch_size or self.config.batch_size
        n_process = n_process or self.config.n_process
        if n_process == -1:
            n_process = os.cpu_count() or 1
        if n_process <= 1:
            for doc in self.nlp.pipe(texts, batch_size=batch_size):
                yield self._labels(doc)
            return
        # Workers return ReportLabels (plain dataclasses) rather than Docs: ConText's span extensions
        # do not survive spaCy's Doc serialisation between processes.
        chunk = batch_size * 4
        iterator = iter(texts)
        with ProcessPoolExecutor(
            max_workers=n_process, initializer=_init_worker, initargs=(self.config,)
        ) as pool:
            pending = []
            while True:
                block = list(islice(iterator, chunk))
                if block:
                    pending.append(pool.submit(_label_block, block, batch_size))
                # keep at most 2 blocks per worker in flight so memory stays flat on long streams
                if pending and (not block or len(pending) >= 2 * n_process):
                    yield from pending.pop(0).result()
                if not block and not pending:
                    break

    def _labels(self, doc: Doc) -> ReportLabels:
        if not doc.text.strip():
            return ReportLabels(observations=aggregate((), empty=True), mentions=())
        sections = self._section_of_tokens(doc)
        targets = [t for t in doc.ents if sections[t.start] not in self._skip]
        cues = self._attribute_cues(doc)
        attached = self._attach_attributes(doc, targets, cues)
        mentions = []
        for target in targets:
            meta = target._.target_rule.metadata
            status, status_cue = self._status(target, meta)
            attrs: dict[str, str] = dict(meta["implied"])
            cue_spans: dict[str, tuple[int, int]] = {}
            if status_cue is not None:
                cue_spans["status"] = status_cue
            for attr, (value, start, end) in attached.get(target.start, {}).items():
                if attr in attrs:  # the finding phrase itself names it ("rib fracture")
                    continue
                attrs[attr] = value
                cue_spans[attr] = (doc[start].idx, doc[end - 1].idx + len(doc[end - 1]))
            mentions.append(
                Mention(
                    observation=meta["observation"],
                    category=meta["category"],
                    status=status,
                    start=target.start_char,
                    end=target.end_char,
                    text=target.text,
                    laterality=attrs.get("laterality"),
                    location=attrs.get("location"),
                    severity=attrs.get("severity"),
                    chronicity=attrs.get("chronicity"),
                    section=sections[target.start],
                    cues=cue_spans,
                )
            )
        return ReportLabels(observations=aggregate(mentions), mentions=tuple(mentions))

    @staticmethod
    def _section_of_tokens(doc: Doc) -> list[str | None]:
        out: list[str | None] = [None] * len(doc)
        for section in doc._.sections:
            category = section.category
            start = section.title_start if section.title_start is not None else section.body_start
            for i in range(start, section.body_end):
                out[i] = category
        return out

    @staticmethod
    def _status(target: Span, meta: dict) -> tuple[Status, tuple[int, int] | None]:
        if meta["status"]:
            return meta["status"], None
        cues = []  # (distance, tie-break, status, token span, cue text)
        for modifier in target._.modifiers:
            status = _STATUS_OF_CATEGORY.get(modifier.category)
            if status is None:
                continue
            m_start, m_end = modifier.modifier_span
            distance = m_start - target.end if m_start >= target.end else target.start - m_end
            cues.append((distance, 0 if status == "negative" else 1, status, (m_start, m_end)))
        if not cues:
            return "positive", None
        # the nearest cue decides; on a tie a negation beats an uncertainty
        cues.sort()
        _, _, status, (m_start, m_end) = cues[0]
        doc = target.doc
        if status == "uncertain" and doc[m_start:m_end].text.lower() in lex.EVIDENTIAL_CUES:
            # "no consolidation concerning for pneumonia": a negation before the evidential cue governs
            negations = [c for c in cues if c[2] == "negative" and c[3][1] <= m_start]
            if negations:
                _, _, status, (m_start, m_end) = negations[0]
        return status, (doc[m_start].idx, doc[m_end - 1].idx + len(doc[m_end - 1]))

    def _attribute_cues(self, doc: Doc) -> list[tuple[int, int, dict[str, str]]]:
        matches = sorted(self._attributes(doc), key=lambda m: (m[1], -(m[2] - m[1])))
        cues: list[tuple[int, int, dict[str, str]]] = []
        last_end = -1
        for match_id, start, end in matches:  # longest match first at each start, no overlaps
            if start < last_end:
                continue
            cues.append((start, end, _parse_attribute_key(doc.vocab.strings[match_id])))
            last_end = end
        return cues

    def _attach_attributes(
        self, doc: Doc, targets: list[Span], cues: list[tuple[int, int, dict[str, str]]]
    ) -> dict[int, dict[str, tuple[str, int, int]]]:
        """Give each attribute cue to one finding of its sentence: the one it sits in, else the next
        finding it premodifies ("small left effusion"), else the previous one it follows ("effusion
        on the left"), never across a barrier word or another finding."""
        if not targets:
            return {}
        gap = self.config.max_attribute_gap
        cue_tokens = {i for s, e, _ in cues for i in range(s, e)}
        # for each attribute of each target: (distance, value, start, end); smaller distance wins
        best: dict[int, dict[str, tuple[float, str, int, int]]] = {}

        def clear(a: int, b: int, comma_ok: bool = False, premodifier: bool = False) -> int | None:
            """Words between token a and b (exclusive) that are not attribute words, or None if a barrier.

            With ``comma_ok`` a comma right after the finding is allowed ("effusion, stable"). A
            premodifier reaches its finding only across adjectives and nouns ("left basilar airspace
            opacity"), not across verbs or prepositions ("left base may represent atelectasis").
            """
            n = 0
            for tok in doc[a:b]:
                if comma_ok and tok.i == a and tok.text == "," and b == a + 1:
                    continue
                if premodifier and tok.lower_ in ("and", "or", ",") and tok.i + 1 in cue_tokens:
                    continue  # coordinated modifiers: "left apical and right basilar opacities"
                if tok.lower_ in lex.ATTRIBUTE_BARRIERS or tok.is_sent_start:
                    return None
                if premodifier and tok.lower_ in lex.PREMODIFIER_BARRIERS:
                    return None
                if tok.i not in cue_tokens:
                    n += 1
            return n

        # clear() refuses to cross a sentence start, so the nearest findings on either side suffice
        for start, end, values in cues:
            inside = [t for t in targets if t.start < end and start < t.end]  # overlapping counts as inside
            choice: tuple[Span, float] | None = None
            if inside:
                choice = (inside[0], -1)
            else:
                nxt = next((t for t in targets if t.start >= end), None)
                prv = next((t for t in reversed(targets) if t.end <= start), None)
                if nxt is not None and nxt.start - end <= 2 * gap + 4:
                    words = clear(end, nxt.start, premodifier=True)
                    if words is not None and words <= gap:
                        # ties between coordinated modifiers go to the one nearer in tokens
                        choice = (nxt, words + (nxt.start - end) / 1000)
                if choice is None and prv is not None and start - prv.end <= 2 * gap + 6:
                    words = clear(prv.end, start, comma_ok=True)
                    if words is not None and words <= gap + 2:
                        # a premodifier beats a postmodifier at equal distance
                        choice = (prv, words + 1 + (start - prv.end) / 1000)
            if choice is None:
                continue
            target, distance = choice
            slot = best.setdefault(target.start, {})
            for attr, value in values.items():
                if attr == "laterality" and attr in slot and value != slot[attr][1]:
                    # both sides of one finding ("left apical and right basilar opacities")
                    near = slot[attr] if slot[attr][0] <= distance else (distance, value, start, end)
                    slot[attr] = (near[0], "bilateral", near[2], near[3])
                elif attr not in slot or distance < slot[attr][0]:
                    slot[attr] = (distance, value, start, end)
        return {k: {a: v[1:] for a, v in d.items()} for k, d in best.items()}


def _init_worker(config: LabelerConfig) -> None:
    global _WORKER_LABELER
    _WORKER_LABELER = Labeler(config)


_WORKER_LABELER: Labeler | None = None


def _label_block(texts: list[str], batch_size: int) -> list[ReportLabels]:
    assert _WORKER_LABELER is not None, "worker labeler not initialised"
    return list(_WORKER_LABELER.pipe(texts, batch_size=batch_size, n_process=1))


@functools.lru_cache(maxsize=1)
def get_labeler() -> Labeler:
    """The process-wide default :class:`Labeler` (built on first use)."""
    return Labeler()
