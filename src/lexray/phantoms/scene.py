"""The scene of a phantom radiograph: what it shows, derived from a report's labelled findings.

:class:`PhantomFindings` is the rendering's ground truth; :func:`findings_from_labels` maps the finding
labeler's positive mentions (:class:`lexray.findings.ReportLabels`) to it. Sides are the *patient's*
("right" is drawn on the image left, see :mod:`lexray.phantoms.render`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lexray.findings.labels import ReportLabels

SIDES = ("right", "left")  # patient sides
ZONES = ("upper", "middle", "lower")
PARENCHYMAL_KINDS = ("consolidation", "opacity", "atelectasis")
LESION_KINDS = ("nodule", "mass", "granuloma")
DEVICES = (
    "pacemaker",
    "sternotomy wires",
    "central venous catheter",
    "endotracheal tube",
    "enteric tube",
    "chest tube",
    "surgical clips",
    "stent",
    "prosthetic valve",
    "hardware",
)


@dataclass(frozen=True)
class PhantomFindings:
    """What a phantom shows: the rendering's ground truth (two reports with equal records look alike).

    Sides are the patient's ("right" is drawn on the image left).
    """

    cardiomegaly: bool = False  # enlarged heart (cardiothoracic ratio ~0.6 instead of ~0.45)
    wide_mediastinum: bool = False  # widened upper mediastinum
    effusion: tuple[tuple[str, int], ...] = ()  # (side, size) pairs, size 1 small / 2 large
    pneumothorax: tuple[str, ...] = ()  # sides with a pneumothorax
    parenchymal: frozenset[tuple[str, str, str]] = (
        frozenset()
    )  # (kind, side, zone): consolidation/opacity/atelectasis
    lesions: frozenset[tuple[str, str, str]] = frozenset()  # (kind, side, zone): nodule/mass/granuloma
    edema: bool = False  # bilateral perihilar haze with septal lines
    hyperinflation: bool = False  # large dark lungs, low flat diaphragm (emphysema / hyperinflation)
    pleural_thickening: tuple[str, ...] = ()  # sides with apical pleural thickening
    fracture: tuple[str, ...] = ()  # sides with a rib fracture
    devices: frozenset[str] = frozenset()  # support devices from DEVICES

    def key(self) -> str:
        """A canonical string: equal for equal records (the phantom retrieval ground truth)."""
        parts = []
        if self.cardiomegaly:
            parts.append("cardiomegaly")
        if self.wide_mediastinum:
            parts.append("wide mediastinum")
        parts += [f"effusion {s} {'large' if n == 2 else 'small'}" for s, n in sorted(self.effusion)]
        parts += [f"pneumothorax {s}" for s in sorted(self.pneumothorax)]
        parts += [" ".join(t) for t in sorted(self.parenchymal)]
        parts += [" ".join(t) for t in sorted(self.lesions)]
        if self.edema:
            parts.append("edema")
        if self.hyperinflation:
            parts.append("hyperinflation")
        parts += [f"pleural thickening {s}" for s in sorted(self.pleural_thickening)]
        parts += [f"fracture {s}" for s in sorted(self.fracture)]
        parts += sorted(self.devices)
        return "; ".join(parts) if parts else "normal"

    @property
    def normal(self) -> bool:
        """True when nothing is drawn beyond the anatomy."""
        return self == PhantomFindings()


# Labeler location (zone without side) -> phantom zone; unlisted locations fall back to "lower".
_ZONE_OF_LOCATION = {
    "upper lobe": "upper",
    "apex": "upper",
    "upper zone": "upper",
    "middle lobe": "middle",
    "lingula": "middle",
    "mid zone": "middle",
    "perihilar": "middle",
    "hilum": "middle",
    "lower lobe": "lower",
    "base": "lower",
    "lower zone": "lower",
    "retrocardiac": "lower",
    "costophrenic angle": "lower",
}
_LARGE = {"moderate", "large", "severe", "extensive", "moderate to large", "small to moderate"}
# Observation (labeler name) -> parenchymal kind.
_PARENCHYMAL_OF = {
    "Consolidation": "consolidation",
    "Pneumonia": "consolidation",
    "Lung Opacity": "opacity",
    "opacity": "opacity",
    "infiltrate": "opacity",
    "ground-glass opacity": "opacity",
    "Atelectasis": "atelectasis",
}
_LESION_OF = {
    "nodule": "nodule",
    "mass": "mass",
    "lesion": "nodule",
    "Lung Lesion": "nodule",
    "granuloma": "granuloma",
}
_HYPERINFLATION = {"hyperinflation", "emphysema"}


def _sides(laterality: str | None, default: tuple[str, ...]) -> tuple[str, ...]:
    """Patient sides named by a mention; ``default`` when the report gives none."""
    if laterality == "bilateral":
        return SIDES
    if laterality in SIDES:
        return (laterality,)
    return default


def findings_from_labels(labels: ReportLabels) -> PhantomFindings:
    """The phantom record of a report: its positive mentions mapped to drawable findings.

    Only positive mentions are drawn (uncertain and negated ones are not). Defaults where a report
    leaves a detail open: an effusion without a side is bilateral, other unsided findings are on the
    patient's right, a zone-less parenchymal finding or lesion is in the lower zone, an effusion without
    severity is small.
    """
    obs = labels.observations
    effusion: dict[str, int] = {}
    pneumothorax: set[str] = set()
    parenchymal: set[tuple[str, str, str]] = set()
    lesions: set[tuple[str, str, str]] = set()
    devices: set[str] = set()
    thickening: set[str] = set()
    fracture: set[str] = set()
    hyper = False
    for m in labels.mentions:
        if m.status != "positive":
            continue
        name = m.observation
        zone = _ZONE_OF_LOCATION.get(m.location or "", "lower")
        if name == "Pleural Effusion" or m.category == "Pleural Effusion":
            size = 2 if m.severity in _LARGE else 1
            for s in _sides(m.laterality, SIDES):
                effusion[s] = max(effusion.get(s, 0), size)
        elif name == "Pneumothorax":
            pneumothorax.update(_sides(m.laterality, ("right",)))
        elif name in _PARENCHYMAL_OF:
            parenchymal.update((_PARENCHYMAL_OF[name], s, zone) for s in _sides(m.laterality, ("right",)))
        elif name in _LESION_OF:
            lesions.update((_LESION_OF[name], s, zone) for s in _sides(m.laterality, ("right",)))
        elif name in DEVICES:
            devices.add(name)
        elif name == "Pleural Other" or m.category == "Pleural Other":
            thickening.update(_sides(m.laterality, ("right",)))
        elif name == "Fracture" or m.category == "Fracture":
            fracture.update(_sides(m.laterality, ("right",)))
        elif name in _HYPERINFLATION:
            hyper = True
    return PhantomFindings(
        cardiomegaly=obs.get("Cardiomegaly") == "positive",
        wide_mediastinum=obs.get("Enlarged Cardiomediastinum") == "positive"
        and obs.get("Cardiomegaly") != "positive",
        effusion=tuple(sorted(effusion.items())),
        pneumothorax=tuple(sorted(pneumothorax)),
        parenchymal=frozenset(parenchymal),
        lesions=frozenset(lesions),
        edema=obs.get("Edema") == "positive",
        hyperinflation=hyper,
        pleural_thickening=tuple(sorted(thickening)),
        fracture=tuple(sorted(fracture)),
        devices=frozenset(devices),
    )
