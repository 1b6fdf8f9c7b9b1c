"""Chest X-ray finding labeler: CheXpert observations and finding mentions from report text.

Public API::

    from lexray.findings import CHEXPERT_OBSERVATIONS, Labeler, LabelerConfig, Mention, ReportLabels, get_labeler

    labels = get_labeler()("Small left pleural effusion. No pneumothorax.")
    labels.observations["Pleural Effusion"]  # "positive"
    labels.mentions[0].laterality              # "left"
"""

from lexray.findings.labeler import Labeler, LabelerConfig, get_labeler
from lexray.findings.labels import (
    ATTRIBUTES,
    CHEXPERT_OBSERVATIONS,
    STATUSES,
    Mention,
    ReportLabels,
    Status,
    aggregate,
)

__all__ = [
    "ATTRIBUTES",
    "CHEXPERT_OBSERVATIONS",
    "STATUSES",
    "Labeler",
    "LabelerConfig",
    "Mention",
    "ReportLabels",
    "Status",
    "aggregate",
    "get_labeler",
]
