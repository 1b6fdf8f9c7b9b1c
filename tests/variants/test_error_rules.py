"""The single-error rules for the weak types (certainty, chronicity, severity, omission) on handwritten sentences.

Each case gives a report, an error type and a pattern every accepted rewrite must match; the labeler must
see exactly one change of that type (the oracle of ``test_errors``). Several seeds cover the alternatives.
"""

from __future__ import annotations

import re

import pytest

from lexray.variants import make_error_variants, source_text

from .conftest import make_study
from .test_errors import _oracle_single_change

SEEDS = range(4)

CASES = [
    # certainty: a ruled-out finding made possible, alone or out of a list
    ("certainty", "No pneumothorax.", "", r"Possible pneumothorax\.|Pneumothorax cannot be excluded\."),
    (
        "certainty",
        "There is no evidence of pneumonia. The heart is normal in size.",
        "",
        r"(?:There is possible pneumonia|Possible pneumonia|Pneumonia cannot be excluded|Findings "
        r"suspicious for pneumonia)\. The heart is normal in size\.|^FINDINGS: There is no evidence of "
        r"pneumonia\. (?:Possible cardiomegaly|Cardiomegaly cannot be excluded|Findings suspicious for "
        r"cardiomegaly)\.$",
    ),
    (
        "certainty",
        "No pneumothorax or pleural effusion.",
        "",
        r"No (?:pneumothorax|pleural effusion)\. (?:Possible \w[\w ]*|\w[\w ]* cannot be excluded|"
        r"Findings suspicious for \w[\w ]*)\.",
    ),
    # certainty: evidential words hedged, a hedge made definite
    (
        "certainty",
        "Right lower lobe opacity consistent with pneumonia.",
        "",
        r"opacity (?:suspicious for|possibly representing|consistent with \w+) pneumonia\."
        r"|^FINDINGS: (?:Possible|Probable|Questionable|Suspected|Likely) right lower lobe opacity",
    ),
    (
        "certainty",
        "Pneumothorax cannot be excluded.",
        "",
        r"^FINDINGS: (?:Pneumothorax is present|No evidence of pneumothorax)\.$",
    ),
    # chronicity: stable/again seen <-> new/increased, increase <-> decrease
    ("chronicity", "Left basilar atelectasis is again seen.", "", r"atelectasis is newly seen\."),
    ("chronicity", "Stable cardiomegaly.", "", r"^FINDINGS: (?:New|Increased|Worsening) cardiomegaly\.$"),
    (
        "chronicity",
        "Interval increase in the left effusion.",
        "",
        r"Interval decrease in the left effusion\.",
    ),
    ("chronicity", "Persistent small left pleural effusion.", "", r"(?:New|Improving|Worsening) small left"),
    # severity: swapped to the other end of the scale, or a far-end degree put on an unqualified finding
    (
        "severity",
        "There is a small left pleural effusion.",
        "",
        r"There is an? (?:large|moderate-sized) left",
    ),
    ("severity", "Mild cardiomegaly.", "", r"^FINDINGS: (?:Severe|Marked|Moderate) cardiomegaly\.$"),
    ("severity", "Trace right pleural effusion.", "", r"(?:Large|Moderate-sized) right pleural effusion\."),
    ("severity", "There is a left pleural effusion.", "", r"There is a large left pleural effusion\."),
    ("severity", "The heart is enlarged.", "", r"The heart is (?:markedly|severely) enlarged\."),
    # omission: one finding out of a list, normal statements kept
    (
        "omission",
        "There is left basilar atelectasis and a small left pleural effusion. No pneumothorax.",
        "",
        r"^FINDINGS: There is (?:left basilar atelectasis|a small left pleural effusion)\. No pneumothorax\.$",
    ),
]


@pytest.mark.parametrize(("etype", "findings", "impression", "pattern"), CASES)
def test_weak_type_rules_make_one_realistic_error(labeler, etype, findings, impression, pattern) -> None:
    study = make_study("s", findings, impression)
    source = source_text(study)
    accepted = []
    for seed in SEEDS:
        (record,) = make_error_variants(study, [etype], seed=seed, labeler=labeler)
        if record.accepted:
            accepted.append(record.text)
            assert re.search(pattern, record.text), record.text
            assert _oracle_single_change(labeler, source, record.text, etype, record.target), record.text
    assert accepted, f"no {etype} error accepted for {findings!r}"


def test_no_degree_is_forced_between_a_noun_and_its_modifiers(labeler) -> None:
    """ "pulmonary edema" has no slot for "severe" inside it: no "pulmonary severe edema"."""
    study = make_study("s", "There is superimposed pulmonary edema.")
    for seed in SEEDS:
        (record,) = make_error_variants(study, ["severity"], seed=seed, labeler=labeler)
        assert not record.accepted and "severe" not in record.text


def test_a_hedged_positive_finding_stays_the_same_finding(labeler) -> None:
    study = make_study("s", "Small right pleural effusion.", "Right pleural effusion.")
    for seed in SEEDS:
        (record,) = make_error_variants(study, ["certainty"], seed=seed, labeler=labeler)
        assert record.accepted and record.target == "Pleural Effusion"
        after = labeler(record.text)
        assert after.observations["Pleural Effusion"] == "uncertain"
