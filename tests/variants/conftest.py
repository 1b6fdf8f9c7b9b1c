"""Fixtures of the variants tests: the real finding labeler and handwritten studies."""

from __future__ import annotations

import pytest

from lexray.data.study import Study


@pytest.fixture(scope="session")
def labeler():
    """The project's medspaCy labeler (rules only, no weights; built once, a few seconds)."""
    from lexray.findings import get_labeler

    return get_labeler()


def make_study(study_id: str, findings: str, impression: str = "", split: str = "train") -> Study:
    """A Study with the given sections."""
    return Study(
        study_id=study_id,
        patient_id=study_id,
        source="test",
        split=split,
        findings=findings,
        impression=impression,
    )


# Handwritten reports (no patient data) covering laterality, severity, location, chronicity, hedges,
# devices and normal studies.
HANDWRITTEN = [
    make_study(
        "abn-1",
        "The heart is normal in size. There is no pneumothorax or pleural effusion. "
        "Mild right lower lobe atelectasis is seen.",
        "1. No acute cardiopulmonary abnormality. 2. Mild right basilar atelectasis.",
    ),
    make_study(
        "abn-2",
        "The heart is mildly enlarged. There is a small left pleural effusion. No pneumothorax. "
        "The lungs are otherwise clear.",
        "Mild cardiomegaly. Small left pleural effusion.",
    ),
    make_study(
        "abn-3",
        "There is a new right upper lobe consolidation. No pleural effusion. The cardiomediastinal "
        "silhouette is within normal limits.",
        "Right upper lobe pneumonia.",
    ),
    make_study(
        "abn-4",
        "Heart size is normal. There is patchy opacity in the left lung base, possibly atelectasis. "
        "No pneumothorax.",
        "Possible left basilar atelectasis.",
    ),
    make_study(
        "norm-1",
        "The heart and mediastinum are normal. The lungs are clear. There is no pneumothorax, "
        "consolidation or pleural effusion.",
        "No acute cardiopulmonary process.",
    ),
    make_study("norm-2", "Heart size normal. Lungs clear. No effusion or pneumothorax.", "Normal chest."),
    make_study(
        "dev-1",
        "A right internal jugular central venous catheter tip projects over the superior vena cava. "
        "No pneumothorax. Stable mild cardiomegaly.",
        "Stable mild cardiomegaly. No acute process.",
    ),
]
