"""diff_labels / check_equivalent / check_error on hand-built labels (no labeler needed)."""

from __future__ import annotations

from lexray.findings.labels import CHEXPERT_OBSERVATIONS, Mention, ReportLabels, aggregate
from lexray.variants.checks import CachedLabeler, check_equivalent, check_error, diff_labels


def _labels(*mentions: Mention) -> ReportLabels:
    return ReportLabels(observations=aggregate(mentions), mentions=tuple(mentions))


def _m(obs: str, status: str = "positive", **attrs: str) -> Mention:
    return Mention(observation=obs, category=obs, status=status, start=0, end=1, text="x", **attrs)


EFF_LEFT = _m("Pleural Effusion", laterality="left", severity="small")
PTX_NEG = _m("Pneumothorax", "negative")


def test_identical_labels_have_no_changes() -> None:
    a = _labels(EFF_LEFT, PTX_NEG)
    assert diff_labels(a, a) == []
    assert check_equivalent(a, a, "shorthand") == (True, "")


def test_status_changes_are_named_by_error_type() -> None:
    src = _labels(EFF_LEFT, PTX_NEG)
    cases = {
        "negation": _labels(_m("Pleural Effusion", "negative"), PTX_NEG),
        "certainty": _labels(
            _m("Pleural Effusion", "uncertain", laterality="left", severity="small"), PTX_NEG
        ),
        "omission": _labels(PTX_NEG),
        "fabricated": _labels(EFF_LEFT, PTX_NEG, _m("Edema")),
        "laterality": _labels(_m("Pleural Effusion", laterality="right", severity="small"), PTX_NEG),
        "severity": _labels(_m("Pleural Effusion", laterality="left", severity="large"), PTX_NEG),
        "location": _labels(
            _m("Pleural Effusion", laterality="left", severity="small", location="base"), PTX_NEG
        ),
        "chronicity": _labels(
            _m("Pleural Effusion", laterality="left", severity="small", chronicity="new"), PTX_NEG
        ),
    }
    for kind, variant in cases.items():
        changes = diff_labels(src, variant)
        assert [c.kind for c in changes] == [kind], (kind, changes)
        assert check_error(src, variant, kind, "Pleural Effusion" if kind != "fabricated" else "Edema")[0]
        assert not check_equivalent(src, variant, "paraphrase")[0]
        wrong = "negation" if kind != "negation" else "omission"
        ok, why = check_error(src, variant, wrong)
        assert not ok and "wrong kind" in why


def test_no_finding_only_counts_alone() -> None:
    normal = _labels(PTX_NEG)
    assert normal.observations["No Finding"] == "positive"
    abnormal = _labels(PTX_NEG, _m("Edema"))
    # Edema appears and No Finding flips: one change (the derived No Finding is not a second error).
    assert [c.observation for c in diff_labels(normal, abnormal)] == ["Edema"]
    # A non-CheXpert finding (category None) flips only No Finding: that is the one change.
    other = _labels(PTX_NEG, Mention("scoliosis", None, "positive", 0, 1, "x"))
    assert [(c.observation, c.kind) for c in diff_labels(normal, other)] == [("No Finding", "negation")]


def test_two_changes_are_not_a_single_error() -> None:
    src = _labels(EFF_LEFT, PTX_NEG)
    var = _labels(_m("Pleural Effusion", laterality="right", severity="large"), PTX_NEG)
    ok, why = check_error(src, var, "laterality")
    assert not ok and why.startswith("more than one change")


def test_error_must_hit_the_target() -> None:
    src = _labels(EFF_LEFT, _m("Atelectasis", laterality="left"))
    var = _labels(EFF_LEFT, _m("Atelectasis", laterality="right"))
    assert check_error(src, var, "laterality", "Atelectasis") == (True, "")
    ok, why = check_error(src, var, "laterality", "Pleural Effusion")
    assert not ok and "not Pleural Effusion" in why
    assert check_error(src, src, "laterality") == (False, "no clinical change detected")


def test_summary_styles_may_drop_negatives_not_findings() -> None:
    full = _labels(EFF_LEFT, PTX_NEG, _m("Atelectasis", laterality="right", location="base"))
    summary = _labels(_m("Pleural Effusion", laterality="left"), _m("Atelectasis", laterality="right"))
    assert check_equivalent(full, summary, "impression_only") == (True, "")
    # the same text as a rewrite style loses facts
    assert not check_equivalent(full, summary, "paraphrase")[0]
    dropped = _labels(EFF_LEFT, PTX_NEG)
    ok, why = check_equivalent(full, dropped, "impression_only")
    assert not ok and "Atelectasis omission" in why
    added_side = _labels(_m("Pleural Effusion", laterality="right"), _m("Atelectasis", laterality="right"))
    assert not check_equivalent(full, added_side, "findings_only")[0]


def test_attributes_can_be_switched_off() -> None:
    src = _labels(EFF_LEFT)
    var = _labels(_m("Pleural Effusion", laterality="right", severity="small"))
    assert not check_equivalent(src, var, "shorthand")[0]
    assert check_equivalent(src, var, "shorthand", attributes=("severity",))[0]


def test_cached_labeler_calls_through_once_per_text() -> None:
    calls: list[list[str]] = []

    class Counting:
        def pipe(self, texts):
            calls.append(list(texts))
            return [ReportLabels({o: "absent" for o in CHEXPERT_OBSERVATIONS}, ()) for _ in texts]

    cached = CachedLabeler(Counting(), maxsize=2)
    cached.pipe(["a", "b", "a"])
    cached.pipe(["a", "c"])
    assert calls == [["a", "b"], ["c"]]
    cached.pipe(["b"])  # evicted (LRU, maxsize 2)
    assert calls[-1] == ["b"]
