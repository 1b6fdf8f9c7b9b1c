"""Rule styles: what each style does to the text, determinism, equivalence checks with the real labeler."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from lexray.variants import (
    RULE_STYLES,
    make_rule_variants,
    make_rule_variants_batch,
    render_rule_style,
    source_text,
)
from lexray.variants._text import split_sentences
from lexray.variants.checks import SUMMARY_STYLES
from lexray.variants.rules import rules_version

from .conftest import HANDWRITTEN, make_study

STUDY = HANDWRITTEN[0]


def test_split_sentences_handles_numbering_and_empty_fragments() -> None:
    text = "1. Chest. Continued right elevation with 2.5 cm nodule. 2. Scapular fracture. 3. Clavicle. ."
    assert split_sentences(text) == [
        "Chest.",
        "Continued right elevation with 2.5 cm nodule.",
        "Scapular fracture.",
        "Clavicle.",
    ]
    assert split_sentences("Heart normal vs. prior. Lungs clear") == [
        "Heart normal vs. prior.",
        "Lungs clear.",
    ]
    assert split_sentences("  ") == []


def test_styles_transform_as_documented() -> None:
    out = {s: render_rule_style(STUDY, s, seed=0) for s in RULE_STYLES}
    assert all(reason == "" for _, reason in out.values())
    shorthand = out["shorthand"][0]
    assert "PTX" in shorthand or "RLL" in shorthand or "atx" in shorthand
    # most (not all) abbreviations apply per seed; over a few seeds every one shows up
    many = " ".join(render_rule_style(STUDY, "shorthand", seed)[0] for seed in range(6))
    assert all(a in many for a in ("RLL", "atx", "NAD", "PTX"))
    assert not re.search(r"\bthe\b", shorthand, re.I)
    assert (
        out["impression_only"][0] == "No acute cardiopulmonary abnormality. Mild right basilar atelectasis."
    )
    assert out["findings_only"][0].startswith("The heart is normal in size.")
    assert "IMPRESSION" not in out["findings_only"][0]
    assert "FINDINGS" not in out["headerless"][0] and "1." not in out["headerless"][0]
    reordered = out["reordered"][0]
    assert sorted(split_sentences(reordered.replace("FINDINGS:", "").replace("IMPRESSION:", ""))) == sorted(
        split_sentences(out["headerless"][0])
    )
    assert reordered != source_text(STUDY)
    assert out["expanded"][0].startswith("FINDINGS:")
    assert "There is no acute cardiopulmonary abnormality." in out["expanded"][0]


def test_expanded_spells_out_abbreviations() -> None:
    s = make_study("s", "No PTX. Small L eff. RLL consol s/p CABG.", "NAD.")
    text, reason = render_rule_style(s, "expanded", 0)
    assert reason == ""
    assert (
        "pneumothorax" in text and "right lower lobe consolidation" in text.lower() and "status post" in text
    )
    assert "coronary artery bypass graft" in text and "There is no pneumothorax." in text


def test_deterministic_under_seed_and_varies_across_seeds() -> None:
    for style in RULE_STYLES:
        assert render_rule_style(STUDY, style, 7) == render_rule_style(STUDY, style, 7)
    long = make_study(
        "long", " ".join(f"Finding number {k} is described." for k in range(8)), "No acute process."
    )
    orders = {render_rule_style(long, "reordered", seed)[0] for seed in range(5)}
    assert len(orders) > 1
    templates = {render_rule_style(STUDY, "hospital_template", seed)[0].split(":")[0] for seed in range(20)}
    assert len(templates) > 1


def test_not_applicable_styles() -> None:
    only_impression = make_study("i", "", "No acute disease.")
    assert render_rule_style(only_impression, "findings_only", 0)[1].startswith("not applicable")
    assert render_rule_style(only_impression, "impression_only", 0)[1].startswith("not applicable")
    assert render_rule_style(make_study("e", "", ""), "shorthand", 0)[1].startswith("not applicable")
    with pytest.raises(ValueError, match="unknown rule style"):
        render_rule_style(STUDY, "poetry", 0)


def test_rule_variants_keep_the_label_vector(labeler) -> None:
    records = make_rule_variants_batch(HANDWRITTEN, RULE_STYLES, seed=0, labeler=labeler)
    assert len(records) == len(HANDWRITTEN) * len(RULE_STYLES)
    by_id = {s.study_id: s for s in HANDWRITTEN}
    for r in records:
        assert r.generator == "rules" and r.kind == "equivalent" and r.prompt_version == rules_version()
        if r.accepted:
            src = labeler(source_text(by_id[r.study_id]))
            var = labeler(r.text)
            if r.style in SUMMARY_STYLES:
                # summaries keep every positive/uncertain finding
                present = {
                    o
                    for o, s in src.observations.items()
                    if s in ("positive", "uncertain") and o != "No Finding"
                }
                assert present == {
                    o
                    for o, s in var.observations.items()
                    if s in ("positive", "uncertain") and o != "No Finding"
                }
            else:
                assert var.vector() == src.vector(), (r.style, r.study_id)
        else:
            assert r.reject_reason
    accepted = {(r.study_id, r.style) for r in records if r.accepted}
    # the handwritten reports are plain enough that every rewrite style passes the check
    for style in ("shorthand", "reordered", "headerless", "hospital_template"):
        assert all((s.study_id, style) in accepted for s in HANDWRITTEN), style


def test_a_changed_label_vector_is_rejected(labeler, monkeypatch) -> None:
    from lexray.variants import rules

    # A faulty style that drops the negation must be caught by the labeler check.
    def broken(findings, impression, rng):
        return " ".join(s.replace("no ", "") for s in findings + impression), ""

    monkeypatch.setitem(rules.STYLE_FUNCTIONS, "headerless", broken)
    (record,) = make_rule_variants(HANDWRITTEN[4], ["headerless"], seed=0, labeler=labeler)
    assert not record.accepted
    assert "labels changed" in record.reject_reason and "negation" in record.reject_reason


# Two positive findings sentences among negative and normal ones, and a normal impression.
SUMMARISED = make_study(
    "sum",
    "Lungs are clear. No pleural effusion. Heart size is normal. Calcified granuloma in the right upper "
    "lobe. Degenerative changes of the spine.",
    "No acute cardiopulmonary abnormality.",
)


def test_summary_keeps_positive_findings_and_the_impression() -> None:
    texts = {render_rule_style(SUMMARISED, "summary", seed)[0] for seed in range(8)}
    assert texts == {
        "Calcified granuloma in the right upper lobe. Degenerative changes of the spine. "
        "No acute cardiopulmonary abnormality.",
        "Calcified granuloma in the right upper lobe; degenerative changes of the spine. "
        "No acute cardiopulmonary abnormality.",
    }
    normal = make_study("n", "Lungs are clear. No pneumothorax.", "Normal chest.")
    assert render_rule_style(normal, "summary", 0)[1].startswith("not applicable")


def test_brief_is_the_summary_in_shorthand_with_the_impression_first_or_last() -> None:
    texts = [render_rule_style(SUMMARISED, "brief", seed)[0] for seed in range(16)]
    for t in texts:
        low = t.lower()
        # negatives and normal statements are left out; the positives and the impression stay
        assert not re.search(r"lungs|heart|pleural|pl eff", low), t
        assert re.search(r"granuloma in (?:the )?(?:right upper lobe|rul|rt upper lobe)", low), t
        assert re.search(r"degen(?:erative)? changes of (?:the )?spine", low), t
        assert re.search(r"\bnad\b|no acute (?:cardiopulmonary|cp) (?:abnormality|abnl)", low), t
    assert any("RUL" in t or "Calc " in t for t in texts)  # abbreviated
    assert any(t.startswith(("NAD", "No acute")) for t in texts)  # the impression first
    assert any(t.startswith("Calc") for t in texts)  # or last
    assert any(";" in t for t in texts) and any(";" not in t for t in texts)
    # Without a positive findings sentence it is the impression in shorthand.
    normal = make_study("n", "Lungs are clear. No pneumothorax.", "No acute cardiopulmonary abnormality.")
    assert {render_rule_style(normal, "brief", seed)[0] for seed in range(8)} >= {"NAD."}


def test_restyled_rewords_every_frame_and_keeps_the_statements() -> None:
    from lexray.variants.rules import reword_report

    s = make_study(
        "rs",
        "The heart is mildly enlarged. No pneumothorax. Calcified granulomas are seen. "
        "There is a small left pleural effusion. Pulmonary vascularity is within normal limits.",
        "Stable mild cardiomegaly.",
    )
    texts = [render_rule_style(s, "restyled", seed)[0] for seed in range(12)]
    joined = " ".join(texts)
    # every sentence frame is recast at least once over a few seeds, with the degree word kept
    assert "mild cardiomegaly." in joined.lower() and "There is mild cardiomegaly." in joined
    assert re.search(r"There is no pneumothorax\.|No pneumothorax is (?:seen|identified)\.", joined)
    assert "There are calcified granulomas." in joined
    assert "A small left pleural effusion is seen." in joined
    assert "pulmonary vasculature" in joined.lower() and "Unchanged mild cardiomegaly." in joined
    for text in texts:
        assert text.startswith("FINDINGS:") and "\nIMPRESSION:" in text
        assert text.count("left") == 1 and "right" not in text  # laterality is never touched
    assert len(set(texts)) > 6
    # an error variant keeps its error when reworded: the swapped side stays swapped
    error = "FINDINGS: There is a small right pleural effusion. No pneumothorax.\nIMPRESSION: Right effusion."
    reworded = {reword_report(error, random.Random(k)) for k in range(10)}
    assert all("right" in t and "left" not in t and t.count("IMPRESSION:") == 1 for t in reworded)
    assert len(reworded) > 3
    assert reword_report("Heart nl. No PTX.", random.Random(0)).startswith("FINDINGS:")


@pytest.mark.parametrize(
    ("findings", "impression"),
    [
        (["Heart is normal.", "No effusion."], ["Normal chest."]),
        (["Heart is normal."], []),
        ([], ["Normal."]),
    ],
)
def test_parse_sections_inverts_render_sections(findings, impression):
    from lexray.variants import parse_sections
    from lexray.variants._text import render_sections

    assert parse_sections(render_sections(findings, impression)) == (" ".join(findings), " ".join(impression))
    assert parse_sections("Heart is normal.  No effusion.") == ("Heart is normal. No effusion.", "")


def test_code_version_counts_code_not_docstrings_or_comments(tmp_path: Path) -> None:
    """The rules version keys the variant caches: a docstring edit must keep them, a code edit remake them."""
    from lexray.variants._version import code_version

    pkg = tmp_path / "lexray"
    (pkg / "variants").mkdir(parents=True)
    for init in (pkg / "__init__.py", pkg / "variants" / "__init__.py"):
        init.write_text("")
    entry = pkg / "variants" / "rules.py"
    helper = pkg / "variants" / "_table.py"
    unrelated = pkg / "variants" / "other.py"
    entry.write_text('"""Rules."""\nfrom lexray.variants import _table\n\n\ndef f():\n    return _table.X\n')
    helper.write_text("X = 1  # the table\n")
    unrelated.write_text("Y = 1\n")

    def version() -> str:
        return code_version(["lexray.variants.rules"], tmp_path, "rules")

    before = version()
    entry.write_text(
        '"""Rules, reworded."""\nfrom lexray.variants import _table\n\n\ndef f():\n'
        '    """Now documented."""\n    # and commented\n    return _table.X\n'
    )
    helper.write_text("X = 1  # the table, with another comment\n")
    unrelated.write_text("Y = 2\n")  # not imported by the rules: cannot change a variant
    assert version() == before
    helper.write_text("X = 2\n")  # a table edit through an imported module changes the rules
    assert version() != before


def test_rules_version_covers_the_labeler_that_checks_variants() -> None:
    import ast

    from lexray.variants import _version, rules

    root = Path(rules.__file__).resolve().parents[2]
    tree = ast.parse(Path(rules.__file__).read_bytes())
    imported = _version._lexray_imports(tree, root)
    assert {"lexray.variants._rewrites", "lexray.variants.checks"} <= imported
    checks = ast.parse((root / "lexray" / "variants" / "checks.py").read_bytes())
    assert "lexray.findings" in _version._lexray_imports(checks, root)  # the labeler, imported lazily there
