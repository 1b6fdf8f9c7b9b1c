"""Clinical checks of variants with the finding labeler.

An *equivalent* variant must keep its source's label vector (the 14 CheXpert observations) and the
attributes (laterality, location, severity, chronicity) of its positive and uncertain findings; a
summary style (:data:`SUMMARY_STYLES`) may drop negative statements and attribute
values but never a positive or uncertain finding. An *error* variant must differ from its source in
exactly one observation or attribute, of the intended kind.

:func:`diff_labels` names every difference as a :class:`Change` whose ``kind`` is an error type
(``negation``, ``certainty``, ``fabricated``, ``omission``, ``laterality``, ``location``, ``severity``,
``chronicity``), so one function serves both checks. "No Finding" is derived from the other
observations and only counts when nothing else changed.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

NO_FINDING = "No Finding"
PRESENT = ("positive", "uncertain")  # statuses of a finding that is (possibly) there
ATTRIBUTES: tuple[str, ...] = ("laterality", "location", "severity", "chronicity")
SUMMARY_STYLES: frozenset[str] = frozenset({"impression_only", "findings_only", "summary", "brief"})


class LabelsLike(Protocol):
    """What the checks read from :class:`lexray.findings.ReportLabels`.

    Each mention has ``category`` (its CheXpert observation or None), ``status``, ``start``, ``end``,
    ``text``, the attributes in :data:`ATTRIBUTES` and ``cues`` (attribute -> character span).
    """

    observations: Mapping[str, str]
    mentions: Sequence[Any]


class LabelerLike(Protocol):
    """Anything that labels like :class:`lexray.findings.Labeler`: ``pipe(texts)`` gives one :class:`LabelsLike` per text."""

    def pipe(self, texts: Sequence[str]) -> list[Any]: ...


def get_default_labeler() -> LabelerLike:
    """The project's finding labeler (:func:`lexray.findings.get_labeler`), cached."""
    from lexray.findings import get_labeler

    return CachedLabeler(get_labeler())


class CachedLabeler:
    """Memoises a labeler by text: variants repeat their source and Open-i repeats whole reports.

    Args:
        labeler: the wrapped labeler.
        maxsize: texts kept (least recently used dropped first).
    """

    def __init__(self, labeler: LabelerLike, maxsize: int = 200_000) -> None:
        self.labeler = labeler.labeler if isinstance(labeler, CachedLabeler) else labeler
        self.maxsize = maxsize
        self._cache: OrderedDict[str, Any] = OrderedDict()

    def pipe(self, texts: Sequence[str]) -> list[Any]:
        """Labels of ``texts``; only texts not seen before reach the wrapped labeler (one ``pipe``)."""
        todo = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if todo:
            for text, labels in zip(todo, self.labeler.pipe(todo), strict=True):
                self._cache[text] = labels
        out = []
        for t in texts:
            self._cache.move_to_end(t)
            out.append(self._cache[t])
        while len(self._cache) > self.maxsize:
            self._cache.popitem(last=False)
        return out

    def __call__(self, text: str) -> Any:
        """Labels of one text."""
        return self.pipe([text])[0]


@dataclass(frozen=True)
class Change:
    """One clinical difference between a source report and a variant."""

    observation: str  # CheXpert observation name
    kind: str  # an error type: negation | certainty | fabricated | omission | laterality | location | severity | chronicity
    before: str  # status (or "|"-joined attribute values) in the source
    after: str  # the same in the variant

    def __str__(self) -> str:
        return f"{self.observation} {self.kind}: {self.before or '-'} -> {self.after or '-'}"


def _status_kind(before: str, after: str) -> str:
    if before == "absent":
        return "fabricated"
    if after == "absent":
        return "omission"
    if "uncertain" in (before, after):
        return "certainty"
    return "negation"


def _attribute_values(labels: LabelsLike, observation: str, attribute: str) -> frozenset[str]:
    values = set()
    for m in labels.mentions:
        if m.category == observation and m.status in PRESENT:
            v = getattr(m, attribute, None)
            if v:
                values.add(str(v).lower())
    return frozenset(values)


def diff_labels(
    source: LabelsLike, variant: LabelsLike, attributes: Sequence[str] = ATTRIBUTES
) -> list[Change]:
    """Every clinical difference between two labelled reports.

    Args:
        source: labels of the source report.
        variant: labels of the variant.
        attributes: mention attributes compared for observations present (positive or uncertain) in both.

    Returns:
        Status changes per observation, then attribute changes; "No Finding" only when nothing else differs.
    """
    changes: list[Change] = []
    observations = list(dict.fromkeys([*source.observations, *variant.observations]))
    for obs in observations:
        if obs == NO_FINDING:
            continue
        a = source.observations.get(obs, "absent")
        b = variant.observations.get(obs, "absent")
        if a != b:
            changes.append(Change(obs, _status_kind(a, b), a, b))
        elif a in PRESENT:
            for attr in attributes:
                va, vb = _attribute_values(source, obs, attr), _attribute_values(variant, obs, attr)
                if va != vb:
                    changes.append(Change(obs, attr, "|".join(sorted(va)), "|".join(sorted(vb))))
    if not changes:
        a = source.observations.get(NO_FINDING, "absent")
        b = variant.observations.get(NO_FINDING, "absent")
        if a != b:
            changes.append(Change(NO_FINDING, _status_kind(a, b), a, b))
    return changes


def _summary_allows(change: Change) -> bool:
    """A summary may leave out negatives and some attribute values, never a (possible) finding."""
    if change.kind == "omission" and change.before == "negative":
        return True
    if change.kind in ATTRIBUTES:
        before = set(change.before.split("|")) - {""}
        after = set(change.after.split("|")) - {""}
        return after <= before
    # "No Finding" becomes absent when an impression-only text just says "no acute disease" differently.
    return change.observation == NO_FINDING and change.after == "absent"


def _describe(changes: Sequence[Change], limit: int = 3) -> str:
    text = "; ".join(str(c) for c in changes[:limit])
    return text + (f"; +{len(changes) - limit} more" if len(changes) > limit else "")


def check_equivalent(
    source: LabelsLike, variant: LabelsLike, style: str, attributes: Sequence[str] = ATTRIBUTES
) -> tuple[bool, str]:
    """Is ``variant`` clinically equivalent to ``source``? Returns (accepted, reject reason).

    Summary styles (:data:`SUMMARY_STYLES`) may drop negatives and attribute values; every other style
    must keep the label vector and the attributes of present findings exactly.
    """
    changes = diff_labels(source, variant, attributes)
    if style in SUMMARY_STYLES:
        changes = [c for c in changes if not _summary_allows(c)]
    if not changes:
        return True, ""
    return False, f"labels changed: {_describe(changes)}"


def check_error(
    source: LabelsLike,
    variant: LabelsLike,
    error_type: str,
    target: str | None = None,
    attributes: Sequence[str] = ATTRIBUTES,
) -> tuple[bool, str]:
    """Does ``variant`` differ from ``source`` in exactly one fact, of kind ``error_type``?

    Args:
        source: labels of the source report.
        variant: labels of the error variant.
        error_type: the intended kind (see :class:`Change`).
        target: the observation the error was aimed at; ``None`` accepts any observation (LLM errors).
        attributes: mention attributes compared.

    Returns:
        (accepted, reject reason).
    """
    changes = diff_labels(source, variant, attributes)
    if not changes:
        return False, "no clinical change detected"
    if len(changes) > 1:
        return False, f"more than one change: {_describe(changes)}"
    change = changes[0]
    if change.kind != error_type:
        return False, f"wrong kind of change: {change}"
    if target is not None and change.observation != target:
        return False, f"changed {change.observation}, not {target}"
    return True, ""
