"""Report section parser on MIMIC, Open-i, CheXpert and hospital header styles."""

from __future__ import annotations

import pytest

from lexray.data.sections import DEID_PATTERN, find_headers, normalize_whitespace, parse_report

MIMIC = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  ___F with new onset ascites  // eval for infection

 TECHNIQUE:  Chest PA and lateral

 COMPARISON:  None.

 FINDINGS:

 There is no focal consolidation, pleural effusion or pneumothorax.  Bilateral
 nodular opacities that most likely represent nipple shadows.

 IMPRESSION:

 No acute cardiopulmonary process.
"""


def test_mimic_style_report():
    s = parse_report(MIMIC)
    assert s.findings == (
        "There is no focal consolidation, pleural effusion or pneumothorax. Bilateral nodular opacities "
        "that most likely represent nipple shadows."
    )
    assert s.impression == "No acute cardiopulmonary process."
    assert s.indication == "___F with new onset ascites // eval for infection"  # "___" kept
    assert s.comparison == "None."
    assert s.technique == "CHEST (PA AND LAT) Chest PA and lateral"
    assert s.other == "" and not s.headerless


def test_all_caps_headers_on_their_own_line_and_crlf():
    s = parse_report("FINDINGS\r\nHeart is normal.\r\n\r\nIMPRESSION\r\nNo acute disease. XXXX noted.\r\n")
    assert s.findings == "Heart is normal."
    assert s.impression == "No acute disease. XXXX noted."


def test_mixed_case_colon_headers_and_synonyms():
    text = (
        "Clinical History: 65M, SOB.\nComparison: 01/02/2020.\nFindings: Lungs clear.\n"
        "Conclusion: Normal chest."
    )
    s = parse_report(text)
    assert (s.indication, s.comparison, s.findings, s.impression) == (
        "65M, SOB.",
        "01/02/2020.",
        "Lungs clear.",
        "Normal chest.",
    )


def test_inline_caps_header_splits_but_prose_word_does_not():
    s = parse_report("FINDINGS: Heart ok. IMPRESSION: Normal. The impression: unchanged from before.")
    assert s.findings == "Heart ok."
    assert s.impression == "Normal. The impression: unchanged from before."


def test_impression_only_and_headerless_reports():
    assert parse_report("IMPRESSION: No acute process.").findings == ""
    s = parse_report("  No acute cardiopulmonary process.\n\n")
    assert s.impression == "No acute cardiopulmonary process." and s.headerless and s.findings == ""
    assert parse_report("Lungs clear.", headerless="findings").findings == "Lungs clear."
    titled = parse_report("FINAL REPORT\nNo change since prior.")
    assert titled.impression == "No change since prior." and titled.other == ""
    assert parse_report("") == parse_report("   ")
    assert not parse_report("").headerless


def test_wet_read_unknown_headers_and_repeated_sections_go_where_they_belong():
    text = (
        "WET READ: ___ ___ 3:15 PM\n  Left lower lobe pneumonia.\nFINAL REPORT\nHISTORY: cough\n"
        "IMPRESSION: Pneumonia.\nRECOMMENDATION(S): Follow-up.\nADDENDUM: IMPRESSION: Also small effusion."
    )
    s = parse_report(text)
    assert s.indication == "cough"
    assert s.impression == "Pneumonia. Also small effusion."
    assert "Left lower lobe pneumonia." in s.other and "Follow-up." in s.other


def test_header_offsets_are_sorted_and_non_overlapping():
    headers = find_headers(MIMIC)
    assert [h[2] for h in headers] == [
        "title",
        "technique",
        "indication",
        "technique",
        "comparison",
        "findings",
        "impression",
    ]
    assert all(a[1] <= b[0] for a, b in zip(headers, headers[1:], strict=False))


@pytest.mark.parametrize(
    ("raw", "clean"),
    [("a\n\n b\t c\u00a0d", "a b c d"), ("  ___  ", "___"), ("XXXX-XXXX", "XXXX-XXXX")],
)
def test_normalize_whitespace_keeps_deid_marks(raw, clean):
    assert normalize_whitespace(raw) == clean


def test_deid_pattern_recognises_open_i_and_mimic_marks():
    assert DEID_PATTERN.findall("Normal chest x-XXXX. Seen by ___ on [**2101-1-1**].") == [
        "XXXX",
        "___",
        "[**2101-1-1**]",
    ]


@pytest.mark.slow
def test_parser_recovers_open_i_sections_from_the_rebuilt_reports(openi_dir):
    """Open-i gives sections separately: parsing the joined text must give them back.

    The only disagreements allowed are XML fields that themselves contain a header (measured: 12 of
    3,927, e.g. an INDICATION field starting "INDICATION: ..."), where splitting again is right.
    """
    from lexray.data.sources.openi import load_openi

    studies = load_openi(openi_dir / "NLMCXR_reports.tgz").studies
    keys = ("findings", "impression", "indication", "comparison")
    mismatched = [
        s
        for s in studies
        if tuple(getattr(parse_report(s.report), k) for k in keys) != tuple(getattr(s, k) for k in keys)
    ]
    assert len(mismatched) / len(studies) < 0.005
    assert all(parse_report(s.report).findings == s.findings for s in studies)
    for s in mismatched:
        parsed = parse_report(s.report)
        differing = [getattr(s, k) for k in keys if getattr(parsed, k) != getattr(s, k)]
        assert any(find_headers(text) for text in differing)


@pytest.mark.parametrize(
    ("text", "findings", "impression", "indication"),
    [
        (
            "Clinical history: cough. Findings: Lungs clear. Impression: Normal.",
            "Lungs clear.",
            "Normal.",
            "cough.",
        ),
        (
            "FINDINGS Lungs are clear.\nIMPRESSION No acute process.",
            "Lungs are clear.",
            "No acute process.",
            "",
        ),
        ("Findings - lungs clear.\nImpression \u2013 normal", "lungs clear.", "normal", ""),
        ("FINDINGS AND IMPRESSION NO ACUTE DISEASE", "NO ACUTE DISEASE", "", ""),
        ("PRIOR CABG. NAD.", "", "PRIOR CABG. NAD.", ""),  # headerless shorthand stays whole
    ],
)
def test_mixed_case_and_colonless_headers_keep_their_sections(text, findings, impression, indication):
    s = parse_report(text)
    assert (s.findings, s.impression, s.indication) == (findings, impression, indication)
