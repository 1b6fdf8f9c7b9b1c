"""Agreement of the labeler with Open-i's manual MeSH indexing, per finding class.

Open-i's indexers coded each report with MeSH headings (``<major>``, e.g.
``Opacity/lung/base/left``). The classes both sides can express are mapped here: a report is
positive for a class on the MeSH side when one of its headings (the part before the first "/")
belongs to the class, and on the labeler side when the class's CheXpert observation is positive
(or uncertain, if asked). Per-class precision, recall and F1 then treat MeSH as the reference.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from lexray.findings.labels import ReportLabels

#: class -> MeSH headings (case-insensitive, the part before the first "/") that make it positive.
MESH_HEADINGS: dict[str, tuple[str, ...]] = {
    "normal": ("normal",),
    "cardiomegaly": ("cardiomegaly", "cardiac shadow/enlarged", "heart/enlarged"),
    "effusion": ("pleural effusion",),
    "pneumothorax": ("pneumothorax",),
    "atelectasis": ("pulmonary atelectasis",),
    "opacity": ("opacity", "airspace disease", "infiltrate", "density"),
    "consolidation": ("consolidation",),
    "edema": ("pulmonary edema", "pulmonary congestion", "heart failure"),
    "nodule/mass": ("nodule", "mass"),
    "fracture": ("fractures, bone",),
    "devices": (
        "catheters, indwelling",
        "surgical instruments",
        "implanted medical device",
        "tube, inserted",
        "medical device",
        "stents",
        "sutures",
    ),
}

#: class -> the CheXpert observation that expresses it on the labeler side.
LABELER_OBSERVATION: dict[str, str] = {
    "normal": "No Finding",
    "cardiomegaly": "Cardiomegaly",
    "effusion": "Pleural Effusion",
    "pneumothorax": "Pneumothorax",
    "atelectasis": "Atelectasis",
    "opacity": "Lung Opacity",
    "consolidation": "Consolidation",
    "edema": "Edema",
    "nodule/mass": "Lung Lesion",
    "fracture": "Fracture",
    "devices": "Support Devices",
}

MESH_CLASSES: tuple[str, ...] = tuple(MESH_HEADINGS)


@dataclass(frozen=True)
class ClassScore:
    """Agreement counts and scores for one class."""

    name: str  # the class
    tp: int  # both positive
    fp: int  # labeler positive, MeSH not
    fn: int  # MeSH positive, labeler not
    support: int  # MeSH positives

    @property
    def precision(self) -> float:
        """tp / (tp + fp); 0 when the labeler found none."""
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        """tp / (tp + fn); 0 when MeSH has none."""
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        """Harmonic mean of precision and recall."""
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def split_mesh(terms: str | Iterable[str]) -> list[str]:
    """MeSH terms as a list, from a list or a ";"-joined string (``Study.extra["mesh_major"]``)."""
    if isinstance(terms, str):
        return [t.strip() for t in terms.split(";") if t.strip()]
    return [t.strip() for t in terms if t and t.strip()]


#: The heading Open-i gives reports its indexers did not code: they have no reference labels.
NOT_INDEXED = "no indexing"


def is_indexed(terms: str | Iterable[str]) -> bool:
    """False for reports without MeSH coding (no terms, or "No Indexing")."""
    listed = [t.lower() for t in split_mesh(terms)]
    return bool(listed) and NOT_INDEXED not in listed


def mesh_classes(terms: str | Iterable[str]) -> frozenset[str]:
    """Classes a report's MeSH headings make positive.

    A heading matches a class entry when it equals the entry or starts with it followed by "/"
    ("Opacity/lung/base/left" matches "opacity"; "Cardiac Shadow/enlarged/mild" matches
    "cardiac shadow/enlarged").
    """
    out = set()
    for term in split_mesh(terms):
        low = term.lower()
        for cls, headings in MESH_HEADINGS.items():
            if any(low == h or low.startswith(h + "/") for h in headings):
                out.add(cls)
    return frozenset(out)


def labeler_classes(labels: ReportLabels, count_uncertain: bool = False) -> frozenset[str]:
    """Classes the labeler finds positive (optionally counting uncertain as positive).

    "normal" is "No Finding" positive with no support device either: Open-i's indexers code "normal"
    only when they have nothing at all to code, and they code devices.
    """
    wanted = {"positive", "uncertain"} if count_uncertain else {"positive"}
    out = {c for c, obs in LABELER_OBSERVATION.items() if labels.observations[obs] in wanted}
    if "normal" in out and labels.observations["Support Devices"] in wanted:
        out.discard("normal")
    return frozenset(out)


def score_classes(
    predicted: Sequence[frozenset[str]],
    reference: Sequence[frozenset[str]],
    classes: Sequence[str] = MESH_CLASSES,
) -> list[ClassScore]:
    """Per-class agreement of predicted class sets with reference class sets (same report order).

    Raises:
        ValueError: when the two sequences differ in length.
    """
    if len(predicted) != len(reference):
        raise ValueError(f"{len(predicted)} predictions for {len(reference)} references")
    scores = []
    for cls in classes:
        tp = sum(1 for p, r in zip(predicted, reference, strict=True) if cls in p and cls in r)
        fp = sum(1 for p, r in zip(predicted, reference, strict=True) if cls in p and cls not in r)
        fn = sum(1 for p, r in zip(predicted, reference, strict=True) if cls not in p and cls in r)
        scores.append(ClassScore(cls, tp, fp, fn, tp + fn))
    return scores


def macro_f1(scores: Iterable[ClassScore]) -> float:
    """Unweighted mean F1 over classes."""
    scores = list(scores)
    return sum(s.f1 for s in scores) / len(scores) if scores else 0.0


def score_table(scores: Iterable[ClassScore]) -> list[Mapping[str, object]]:
    """Rows (class, support, precision, recall, F1) for printing."""
    return [
        {"class": s.name, "support": s.support, "precision": s.precision, "recall": s.recall, "f1": s.f1}
        for s in scores
    ]


def score_reports(
    labels: Sequence[ReportLabels],
    mesh_terms: Sequence[str | Iterable[str]],
    *,
    count_uncertain: bool = False,
    indexed_only: bool = True,
) -> tuple[list[ClassScore], int]:
    """Per-class agreement of labelled reports with their MeSH terms.

    Args:
        labels: the labeler's output, one per report.
        mesh_terms: each report's MeSH major terms (list or ";"-joined string), same order.
        count_uncertain: count "uncertain" observations as positive.
        indexed_only: score only reports that were indexed ("No Indexing" ones have no reference)
            and have text.

    Returns:
        The per-class scores and the number of reports scored.
    """
    if len(labels) != len(mesh_terms):
        raise ValueError(f"{len(labels)} labelled reports for {len(mesh_terms)} MeSH term lists")
    keep = [
        i
        for i, (lab, terms) in enumerate(zip(labels, mesh_terms, strict=True))
        if not indexed_only or (is_indexed(terms) and any(v != "absent" for v in lab.vector()))
    ]
    predicted = [labeler_classes(labels[i], count_uncertain) for i in keep]
    reference = [mesh_classes(mesh_terms[i]) for i in keep]
    return score_classes(predicted, reference), len(keep)


def _side(sides: set[str]) -> str | None:
    if "bilateral" in sides or {"left", "right"} <= sides:
        return "bilateral"
    if sides:
        return next(iter(sides))
    return None


def _severity(values: set[str]) -> str | None:
    # one value to compare: the most severe one stated
    order = ("borderline", "small", "mild", "moderate", "large", "severe")
    ranked = [v for v in order if v in values]
    return ranked[-1] if ranked else None


#: How the labeler's severity words map onto the MeSH severity vocabulary.
_SEVERITY_TO_MESH = {
    "trace": "small",
    "tiny": "small",
    "small": "small",
    "minimal": "mild",
    "mild": "mild",
    "subtle": "mild",
    "moderate": "moderate",
    "large": "large",
    "severe": "severe",
    "borderline": "borderline",
    "small to moderate": "moderate",
    "mild to moderate": "moderate",
    "moderate to large": "large",
    "moderate to severe": "severe",
}

_ATTRIBUTE_TABLES = {
    # attribute -> (MeSH heading parts it reads, labeler value -> MeSH value, reduce a set to one value)
    "laterality": (
        {"left", "right", "bilateral"},
        {"left": "left", "right": "right", "bilateral": "bilateral"},
        _side,
    ),
    "severity": (set(_SEVERITY_TO_MESH.values()), _SEVERITY_TO_MESH, _severity),
}


def attribute_agreement(
    labels: Sequence[ReportLabels],
    mesh_terms: Sequence[str | Iterable[str]],
    attribute: str = "laterality",
    classes: Sequence[str] = ("cardiomegaly", "effusion", "pneumothorax", "atelectasis", "opacity", "edema"),
) -> dict[str, tuple[int, int]]:
    """How often an attribute of a finding matches the same attribute in the MeSH heading.

    MeSH headings carry side and severity as extra parts ("Pleural Effusion/left/small"). For each
    class, reports where both MeSH (in one of the class's headings) and the labeler (on its positive
    mentions of the class) state the attribute are compared. Left plus right counts as bilateral;
    for severity the most severe value on each side is compared.

    Args:
        labels: the labeler's output, one per report.
        mesh_terms: each report's MeSH major terms, same order.
        attribute: "laterality" or "severity".
        classes: the classes to compare.

    Returns:
        class -> (agreeing reports, compared reports).
    """
    vocabulary, to_mesh, reduce = _ATTRIBUTE_TABLES[attribute]
    out: dict[str, tuple[int, int]] = {}
    for cls in classes:
        agree = compared = 0
        observation = LABELER_OBSERVATION[cls]
        for lab, terms in zip(labels, mesh_terms, strict=True):
            theirs: set[str] = set()
            for term in split_mesh(terms):
                if cls in mesh_classes([term]):
                    theirs |= {p.strip().lower() for p in term.split("/")[1:]} & vocabulary
            ours = {
                to_mesh[value]
                for m in lab.mentions
                if m.category == observation and m.status == "positive"
                for value in [getattr(m, attribute)]
                if value in to_mesh
            }
            a, b = reduce(theirs), reduce(ours)
            if a and b:
                compared += 1
                agree += a == b
        out[cls] = (agree, compared)
    return out


def laterality_agreement(
    labels: Sequence[ReportLabels],
    mesh_terms: Sequence[str | Iterable[str]],
    classes: Sequence[str] = (
        "effusion",
        "pneumothorax",
        "atelectasis",
        "opacity",
        "consolidation",
        "nodule/mass",
    ),
) -> dict[str, tuple[int, int]]:
    """:func:`attribute_agreement` for laterality (class -> (agreeing, compared) reports)."""
    return attribute_agreement(labels, mesh_terms, "laterality", classes)
