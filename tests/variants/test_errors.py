"""Single-error variants on handwritten reports, checked against an independent oracle."""

from __future__ import annotations

import pytest

from lexray.variants import ERROR_TYPES, make_error_variants, make_error_variants_batch, source_text

from .conftest import HANDWRITTEN, make_study

BY_ID = {s.study_id: s for s in HANDWRITTEN}
PRESENT = ("positive", "uncertain")


def _oracle_single_change(labeler, source: str, variant: str, error_type: str, target: str) -> bool:
    """A naive restatement of the single-error rule, written apart from lexray.variants.checks."""
    a, b = labeler(source), labeler(variant)
    diff = [o for o in a.observations if o != "No Finding" and a.observations[o] != b.observations[o]]
    if error_type in ("laterality", "location", "severity", "chronicity"):
        if diff:
            return False

        def values(labels, obs, attr):
            return {
                getattr(m, attr) for m in labels.mentions if m.category == obs and m.status in PRESENT
            } - {None}

        changed = [
            (o, attr)
            for o in a.observations
            if a.observations[o] in PRESENT and o != "No Finding"
            for attr in ("laterality", "location", "severity", "chronicity")
            if values(a, o, attr) != values(b, o, attr)
        ]
        return changed == [(target, error_type)]
    if diff != [target]:
        return False
    before, after = a.observations[target], b.observations[target]
    expected = {
        "negation": {("positive", "negative"), ("negative", "positive")},
        "certainty": {
            ("positive", "uncertain"),
            ("uncertain", "positive"),
            ("uncertain", "negative"),
            ("negative", "uncertain"),
        },
        "fabricated": {("absent", "positive"), ("absent", "uncertain"), ("absent", "negative")},
        "omission": {("positive", "absent"), ("uncertain", "absent"), ("negative", "absent")},
    }[error_type]
    return (before, after) in expected


def test_accepted_error_variants_change_exactly_one_fact(labeler) -> None:
    records = make_error_variants_batch(HANDWRITTEN, ERROR_TYPES, seed=0, labeler=labeler)
    assert len(records) == len(HANDWRITTEN) * len(ERROR_TYPES)
    accepted = [r for r in records if r.accepted]
    assert {r.error_type for r in accepted} == set(ERROR_TYPES)  # every type is exercised
    for r in records:
        assert r.kind == "error" and r.style == "error" and r.error_type in ERROR_TYPES
        if r.accepted:
            src = source_text(BY_ID[r.study_id])
            assert r.text != src and r.target
            assert _oracle_single_change(labeler, src, r.text, r.error_type, r.target), (r.error_type, r.text)
        else:
            assert r.reject_reason


def test_specific_edits(labeler) -> None:
    by_type = {
        r.error_type: r for r in make_error_variants(BY_ID["abn-1"], ERROR_TYPES, seed=0, labeler=labeler)
    }
    lat = by_type["laterality"]
    assert lat.accepted and lat.target == "Atelectasis"
    # both statements of the finding are swapped so the report stays self-consistent
    assert "left lower lobe" in lat.text and "left basilar" in lat.text and "right" not in lat.text.lower()
    sev = by_type["severity"]
    assert sev.accepted and "Mild" not in sev.text
    neg = by_type["negation"]
    assert neg.accepted and labeler(neg.text).observations["Atelectasis"] == "negative"
    omi = by_type["omission"]
    assert omi.accepted and "atelectasis" not in omi.text.lower()


def test_normal_report_gets_negation_and_fabrication_but_no_attribute_errors(labeler) -> None:
    records = {
        r.error_type: r for r in make_error_variants(BY_ID["norm-1"], ERROR_TYPES, seed=3, labeler=labeler)
    }
    for etype in ("laterality", "severity", "location", "chronicity", "omission"):
        assert records[etype].not_applicable, etype
        assert records[etype].text == ""
    assert records["fabricated"].accepted
    fab = labeler(records["fabricated"].text).observations[records["fabricated"].target]
    assert fab == "positive"
    assert records["negation"].accepted
    assert labeler(records["negation"].text).observations[records["negation"].target] == "positive"


def test_deterministic_under_seed(labeler) -> None:
    a = make_error_variants_batch(HANDWRITTEN, ERROR_TYPES, seed=5, labeler=labeler)
    b = make_error_variants_batch(HANDWRITTEN, ERROR_TYPES, seed=5, labeler=labeler)
    assert a == b
    fabricated = {
        r.text
        for seed in range(6)
        for r in make_error_variants(BY_ID["norm-2"], ["fabricated"], seed, labeler)
    }
    assert len(fabricated) > 1


def _degrees(labeler, text: str, observation: str) -> set[str]:
    return {m.severity for m in labeler(text).mentions if m.category == observation}


def test_fabricated_findings_carry_degrees_that_a_severity_error_can_change(labeler) -> None:
    import dataclasses

    from lexray.variants import parse_sections

    severities = set()
    for seed in range(12):
        (fab,) = make_error_variants(BY_ID["norm-1"], ["fabricated"], seed, labeler)
        findings, impression = parse_sections(fab.text)
        study = dataclasses.replace(BY_ID["norm-1"], findings=findings, impression=impression, report="")
        (sev,) = make_error_variants(study, ["severity"], seed, labeler)
        if sev.accepted:
            assert sev.target == fab.target
            severities.add(fab.target)
            assert _degrees(labeler, sev.text, fab.target) != _degrees(labeler, fab.text, fab.target)
    # several kinds of inserted finding state a degree or size that a severity error changes
    assert len(severities) >= 2


def test_uncertain_finding_made_certain(labeler) -> None:
    (rec,) = make_error_variants(BY_ID["abn-4"], ["certainty"], seed=0, labeler=labeler)
    assert rec.accepted and rec.target == "Atelectasis"
    assert labeler(rec.text).observations["Atelectasis"] == "positive"
    assert "possibl" not in rec.text.lower()


def test_empty_report_and_unknown_type(labeler) -> None:
    (rec,) = make_error_variants(make_study("e", "", ""), ["negation"], seed=0, labeler=labeler)
    assert rec.not_applicable
    with pytest.raises(ValueError, match="unknown error type"):
        make_error_variants(BY_ID["abn-1"], ["typo"], seed=0, labeler=labeler)
