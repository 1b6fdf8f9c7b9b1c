"""Label records of the finding labeler: the 14 CheXpert observations, mentions and their aggregation."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

#: The 14 CheXpert observations, in the order of the CheXpert labeler's output columns.
CHEXPERT_OBSERVATIONS: tuple[str, ...] = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)

Status = Literal["positive", "negative", "uncertain", "absent"]
STATUSES: tuple[str, ...] = ("positive", "negative", "uncertain", "absent")

#: Attributes a mention can carry; each may also have a cue span in ``Mention.cues``.
ATTRIBUTES: tuple[str, ...] = ("laterality", "location", "severity", "chronicity")

# When several mentions of one observation disagree, the CheXpert labeler's precedence applies:
# any positive mention makes the observation positive, else any uncertain one, else negative.
_PRECEDENCE = {"positive": 3, "uncertain": 2, "negative": 1, "absent": 0}


@dataclass(frozen=True)
class Mention:
    """One finding mentioned in a report, with its assertion status and attributes.

    Character offsets index the text given to the labeler (``text[start:end] == mention.text``).
    """

    observation: str  # a CheXpert name ("Pleural Effusion") or a finer finding ("nodule", "pacemaker")
    category: str | None  # the CheXpert parent ("Lung Lesion" for "nodule"); None: no CheXpert class
    status: Status  # "positive" | "negative" | "uncertain" (mentions are never "absent")
    start: int  # first character of the finding phrase
    end: int  # one past its last character
    text: str  # the finding phrase as written
    laterality: str | None = None  # "left" | "right" | "bilateral" | None
    location: str | None = None  # zone without side: "lower lobe", "base", "apex", "lingula", "rib", ...
    severity: str | None = None  # "trace" | "small" | "mild" | "moderate" | "large" | "severe" | ...
    chronicity: str | None = None  # "acute" | "chronic" | "new" | "stable" | "improved" | "resolved" | ...
    section: str | None = None  # report section category ("findings", "impression") or None before any header
    # Character spans of the words that set status and attributes, keyed "status", "laterality",
    # "location", "severity", "chronicity" (e.g. the "no" of "no effusion"): what an editor changes.
    cues: Mapping[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def site(self) -> str | None:
        """Side and zone together, e.g. "right lower lobe"; None when neither is known."""
        parts = [p for p in (self.laterality, self.location) if p]
        return " ".join(parts) if parts else None


@dataclass(frozen=True)
class ReportLabels:
    """The labeler's output for one report."""

    observations: dict[str, Status]  # all 14 CHEXPERT_OBSERVATIONS -> status
    mentions: tuple[Mention, ...] = ()  # every finding mention in text order (indication etc. excluded)

    def vector(self) -> tuple[str, ...]:
        """The 14 statuses in ``CHEXPERT_OBSERVATIONS`` order (for equality checks)."""
        return tuple(self.observations[name] for name in CHEXPERT_OBSERVATIONS)

    def positives(self) -> tuple[str, ...]:
        """Observations labelled positive, in ``CHEXPERT_OBSERVATIONS`` order."""
        return tuple(n for n in CHEXPERT_OBSERVATIONS if self.observations[n] == "positive")

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-able data: observations and mentions (cue spans as lists)."""
        return {
            "observations": dict(self.observations),
            "mentions": [
                {
                    "observation": m.observation,
                    "category": m.category,
                    "status": m.status,
                    "start": m.start,
                    "end": m.end,
                    "text": m.text,
                    "laterality": m.laterality,
                    "location": m.location,
                    "severity": m.severity,
                    "chronicity": m.chronicity,
                    "section": m.section,
                    "cues": {k: list(v) for k, v in m.cues.items()},
                }
                for m in self.mentions
            ],
        }


def aggregate(mentions: Iterable[Mention], empty: bool = False) -> dict[str, Status]:
    """Observation statuses from mentions, CheXpert style.

    Each observation takes the strongest status among its mentions (positive > uncertain > negative),
    "absent" when unmentioned. "No Finding" is derived: "negative" when any finding other than a
    support device is positive, "uncertain" when the strongest such finding is uncertain, else
    "positive". Findings without a CheXpert class (``category is None``, e.g. scoliosis) count as
    findings here, since a report describing them is not a normal study.

    Args:
        mentions: the report's mentions.
        empty: True when the report has no text; every observation is then "absent".
    """
    out: dict[str, Status] = {name: "absent" for name in CHEXPERT_OBSERVATIONS}
    if empty:
        return out
    strongest_finding = 0
    for m in mentions:
        if m.category in out and m.category != "No Finding":
            if _PRECEDENCE[m.status] > _PRECEDENCE[out[m.category]]:
                out[m.category] = m.status
        if m.category != "Support Devices":
            strongest_finding = max(strongest_finding, _PRECEDENCE[m.status])
    if strongest_finding == _PRECEDENCE["positive"]:
        out["No Finding"] = "negative"
    elif strongest_finding == _PRECEDENCE["uncertain"]:
        out["No Finding"] = "uncertain"
    else:
        out["No Finding"] = "positive"
    return out
