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
