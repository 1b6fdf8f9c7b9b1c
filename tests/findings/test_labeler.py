"""Finding labeler on handwritten report sentences: negation, uncertainty, laterality, abbreviations,
sections, spans and the CheXpert aggregation."""

from __future__ import annotations

import pytest

from lexray.findings import CHEXPERT_OBSERVATIONS, Labeler, Mention, ReportLabels, get_labeler

pytestmark = pytest.mark.filterwarnings("error:.*W036:UserWarning")  # no per-document spaCy warnings


@pytest.fixture(scope="module")
def labeler() -> Labeler:
    return get_labeler()


def obs(labeler: Labeler, text: str) -> dict[str, str]:
    return labeler(text).observations


def only(labels: ReportLabels, observation: str) -> Mention:
    found = [m for m in labels.mentions if m.observation == observation or m.category == observation]
    assert len(found) == 1, [(m.observation, m.text) for m in labels.mentions]
    return found[0]


def test_observation_names_are_the_chexpert_fourteen() -> None:
    assert CHEXPERT_OBSERVATIONS == (
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


def test_every_observation_has_a_status_and_vector_follows_the_order(labeler: Labeler) -> None:
    labels = labeler("Small left pleural effusion.")
    assert set(labels.observations) == set(CHEXPERT_OBSERVATIONS)
    assert labels.vector() == tuple(labels.observations[n] for n in CHEXPERT_OBSERVATIONS)
    assert labels.vector()[CHEXPERT_OBSERVATIONS.index("Pleural Effusion")] == "positive"
    assert labels.observations["Pneumothorax"] == "absent"


# --- negation scope -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [
        "No pneumothorax or effusion.",
        "No pleural effusion or pneumothorax is seen.",
        "There is no evidence of pneumothorax or pleural effusion.",
        "Pneumothorax and pleural effusion are not seen.",
        "Negative for pneumothorax, pleural effusion or focal consolidation.",
    ],
)
def test_negation_covers_every_finding_in_its_scope(labeler: Labeler, text: str) -> None:
    o = obs(labeler, text)
    assert o["Pneumothorax"] == "negative"
    assert o["Pleural Effusion"] == "negative"


def test_negation_stops_at_the_sentence_end_and_at_but(labeler: Labeler) -> None:
    o = obs(labeler, "No pneumothorax. Small left pleural effusion.")
    assert (o["Pneumothorax"], o["Pleural Effusion"]) == ("negative", "positive")
    o = obs(labeler, "No pleural effusion, but there is right lower lobe atelectasis.")
    assert (o["Pleural Effusion"], o["Atelectasis"]) == ("negative", "positive")


def test_pseudo_negation_does_not_negate(labeler: Labeler) -> None:
    assert obs(labeler, "No change in the moderate cardiomegaly.")["Cardiomegaly"] == "positive"
    assert obs(labeler, "Cardiomegaly, no significant change.")["Cardiomegaly"] == "positive"


def test_resolution_negates_and_sets_chronicity(labeler: Labeler) -> None:
    labels = labeler("Interval resolution of the left pleural effusion.")
    m = only(labels, "Pleural Effusion")
    assert (m.status, m.laterality, m.chronicity) == ("negative", "left", "resolved")


# --- uncertainty ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [
        "Cannot exclude pneumonia.",
        "Pneumonia cannot be excluded.",
        "Findings may represent pneumonia.",
        "Questionable right lower lobe pneumonia.",
        "Opacity, possibly pneumonia.",
    ],
)
def test_uncertainty_cues(labeler: Labeler, text: str) -> None:
    assert obs(labeler, text)["Pneumonia"] == "uncertain"


def test_nearest_cue_wins_between_uncertainty_and_negation(labeler: Labeler) -> None:
    o = obs(labeler, "Possible small effusion, no pneumothorax.")
    assert (o["Pleural Effusion"], o["Pneumothorax"]) == ("uncertain", "negative")
    assert obs(labeler, "No definite pneumothorax.")["Pneumothorax"] == "negative"


def test_positive_beats_uncertain_beats_negative_across_mentions(labeler: Labeler) -> None:
    assert obs(labeler, "No effusion on the right. Small left effusion.")["Pleural Effusion"] == "positive"
    assert (
        obs(labeler, "No effusion on the right. Possible left effusion.")["Pleural Effusion"] == "uncertain"
    )


# --- laterality, location, severity, chronicity -----------------------------------------------------
def test_bibasilar_is_bilateral_at_the_bases(labeler: Labeler) -> None:
    m = only(labeler("Bibasilar atelectasis."), "Atelectasis")
    assert (m.laterality, m.location, m.site) == ("bilateral", "base", "bilateral base")


def test_right_greater_than_left_is_bilateral(labeler: Labeler) -> None:
    m = only(labeler("Right greater than left pleural effusions."), "Pleural Effusion")
    assert m.laterality == "bilateral"


def test_attributes_attach_to_their_own_finding(labeler: Labeler) -> None:
    labels = labeler("Small left pleural effusion and right lower lobe opacity.")
    eff, opa = only(labels, "Pleural Effusion"), only(labels, "Lung Opacity")
    assert (eff.laterality, eff.severity, eff.location) == ("left", "small", None)
    assert (opa.laterality, opa.location, opa.severity) == ("right", "lower lobe", None)


def test_postmodifiers_after_the_finding(labeler: Labeler) -> None:
    m = only(labeler("There is an opacity in the left upper lobe."), "Lung Opacity")
    assert (m.laterality, m.location) == ("left", "upper lobe")
    m = only(labeler("Effusion on the right has increased."), "Pleural Effusion")
    assert (m.laterality, m.chronicity) == ("right", "worsened")


def test_severity_inside_a_gapped_phrase_and_chronicity(labeler: Labeler) -> None:
    m = only(labeler("The heart is mildly enlarged."), "Cardiomegaly")
    assert (m.status, m.severity) == ("positive", "mild")
    m = only(labeler("Stable moderate cardiomegaly."), "Cardiomegaly")
    assert (m.severity, m.chronicity) == ("moderate", "stable")


def test_rib_fracture_location_and_chronicity(labeler: Labeler) -> None:
    m = only(labeler("Healed left posterior rib fracture."), "Fracture")
    assert (m.laterality, m.location, m.chronicity) == ("left", "rib", "healed")


def test_attributes_do_not_cross_a_barrier(labeler: Labeler) -> None:
    labels = labeler("Left pleural effusion, and atelectasis.")
    assert only(labels, "Atelectasis").laterality is None


# --- abbreviations --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "observation", "laterality", "location"),
    [
        ("Small right PTX.", "Pneumothorax", "right", None),
        ("Left eff.", "Pleural Effusion", "left", None),
        ("RLL atx.", "Atelectasis", "right", "lower lobe"),
        ("LUL consol.", "Consolidation", "left", "upper lobe"),
        ("GGO in the RML.", "Lung Opacity", "right", "middle lobe"),
        ("CHF.", "Edema", None, None),
    ],
)
def test_abbreviations(
    labeler: Labeler, text: str, observation: str, laterality: str | None, location: str | None
) -> None:
    labels = labeler(text)
    m = only(labels, observation)
    assert (labels.observations[observation], m.laterality, m.location) == ("positive", laterality, location)


def test_ctr_cardiothoracic_ratio(labeler: Labeler) -> None:
    assert obs(labeler, "CTR 0.62.")["Cardiomegaly"] == "positive"
    assert obs(labeler, "CTR 0.45.")["Cardiomegaly"] == "negative"


def test_status_post_keeps_the_device_and_marks_it_post_procedural(labeler: Labeler) -> None:
    labels = labeler("S/p CABG with intact sternotomy wires.")
    assert labels.observations["Support Devices"] == "positive"
    assert any(m.chronicity == "post-procedural" for m in labels.mentions)


def test_nad_and_normal_statements_give_no_finding(labeler: Labeler) -> None:
    for text in ("NAD.", "Heart size normal. Lungs are clear. No acute cardiopulmonary disease."):
        o = obs(labeler, text)
        assert o["No Finding"] == "positive", text
        assert all(o[n] in ("absent", "negative") for n in CHEXPERT_OBSERVATIONS[1:]), text
    o = obs(labeler, "Heart size normal. Lungs are clear.")
    assert (o["Cardiomegaly"], o["Lung Opacity"]) == ("negative", "negative")


def test_no_finding_ignores_devices_but_not_other_findings(labeler: Labeler) -> None:
    assert obs(labeler, "Pacemaker in place. Lungs are clear.")["No Finding"] == "positive"
    assert obs(labeler, "Mild cardiomegaly.")["No Finding"] == "negative"
    assert obs(labeler, "Thoracic scoliosis. Lungs are clear.")["No Finding"] == "negative"
    assert obs(labeler, "Possible pneumonia.")["No Finding"] == "uncertain"


# --- sections -------------------------------------------------------------------------------------
def test_section_headers_do_not_break_negation(labeler: Labeler) -> None:
    labels = labeler("FINDINGS:\nNo focal consolidation.\n\nIMPRESSION: No pneumothorax or effusion.")
    o = labels.observations
    assert (o["Consolidation"], o["Pneumothorax"], o["Pleural Effusion"]) == ("negative",) * 3
    assert [m.section for m in labels.mentions] == ["findings", "impression", "impression"]


def test_a_header_ends_the_scope_of_the_sentence_before_it(labeler: Labeler) -> None:
    o = obs(labeler, "FINDINGS: No pneumothorax IMPRESSION: Small right pleural effusion.")
    assert (o["Pneumothorax"], o["Pleural Effusion"]) == ("negative", "positive")


def test_indication_and_history_are_not_findings(labeler: Labeler) -> None:
    labels = labeler("INDICATION: Evaluate for pneumonia, rule out pneumothorax.\nFINDINGS: Cardiomegaly.")
    assert labels.observations["Pneumonia"] == "absent"
    assert labels.observations["Pneumothorax"] == "absent"
    assert [m.observation for m in labels.mentions] == ["Cardiomegaly"]


# --- spans ----------------------------------------------------------------------------------------
def test_spans_index_the_input_text(labeler: Labeler) -> None:
    text = "FINDINGS: No pneumothorax. Small left pleural effusion, stable.\nIMPRESSION: RLL atx."
    labels = labeler(text)
    assert labels.mentions
    for m in labels.mentions:
        assert text[m.start : m.end] == m.text
    eff = only(labels, "Pleural Effusion")
    assert text[slice(*eff.cues["laterality"])] == "left"
    assert text[slice(*eff.cues["severity"])] == "Small"
    assert text[slice(*eff.cues["chronicity"])] == "stable"
    ptx = only(labels, "Pneumothorax")
    assert text[slice(*ptx.cues["status"])] == "No"
    atx = only(labels, "Atelectasis")
    assert text[slice(*atx.cues["laterality"])] == "RLL"


# --- API ------------------------------------------------------------------------------------------
def test_pipe_matches_call_in_order(labeler: Labeler) -> None:
    texts = ["No pneumothorax.", "", "Left effusion.", "Cardiomegaly. Possible pneumonia."] * 3
    assert list(labeler.pipe(texts, batch_size=2)) == [labeler(t) for t in texts]


def test_empty_report_is_all_absent(labeler: Labeler) -> None:
    assert set(labeler("   ").vector()) == {"absent"}


def test_non_text_is_rejected(labeler: Labeler) -> None:
    with pytest.raises(TypeError, match="str"):
        labeler(None)  # type: ignore[arg-type]


def test_to_dict_is_plain_data(labeler: Labeler) -> None:
    import json

    data = labeler("Small left effusion.").to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["mentions"][0]["laterality"] == "left"


@pytest.mark.slow
def test_pipe_with_worker_processes_matches_in_process() -> None:
    labeler = get_labeler()
    texts = [f"Report {i}. Small left effusion. No pneumothorax." if i % 2 else "RLL atx." for i in range(40)]
    assert list(labeler.pipe(texts, batch_size=4, n_process=2)) == list(labeler.pipe(texts))


def test_a_premodifier_does_not_cross_a_verb(labeler: Labeler) -> None:
    labels = labeler("Patchy opacity at the left base may represent atelectasis.")
    opa, atx = only(labels, "Lung Opacity"), only(labels, "Atelectasis")
    assert (opa.laterality, opa.location) == ("left", "base")
    assert (atx.status, atx.laterality) == ("uncertain", None)


def test_no_opacity_to_suggest_pneumonia_is_negative(labeler: Labeler) -> None:
    o = obs(labeler, "There is no focal air space opacity to suggest a pneumonia.")
    assert (o["Lung Opacity"], o["Pneumonia"]) == ("negative", "negative")


def test_seen_with_a_comma_ends_a_negation_but_not_inside_a_list(labeler: Labeler) -> None:
    o = obs(labeler, "No definite pleural effusion seen, small nodule in the left lung.")
    assert (o["Pleural Effusion"], o["Lung Lesion"]) == ("negative", "positive")
    o = obs(labeler, "No evidence of infiltrate, pneumothorax, or identified mass lesion.")
    assert (o["Lung Opacity"], o["Pneumothorax"], o["Lung Lesion"]) == ("negative",) * 3


def test_negated_sign_negates_its_interpretation(labeler: Labeler) -> None:
    o = obs(labeler, "No focal consolidation concerning for pneumonia.")
    assert (o["Consolidation"], o["Pneumonia"]) == ("negative", "negative")
    o = obs(labeler, "Right basilar opacity concerning for pneumonia.")
    assert (o["Lung Opacity"], o["Pneumonia"]) == ("positive", "uncertain")
    o = obs(labeler, "No pneumothorax, possible small effusion.")
    assert (o["Pneumothorax"], o["Pleural Effusion"]) == ("negative", "uncertain")


def test_coordinated_sides_make_one_finding_bilateral(labeler: Labeler) -> None:
    m = only(labeler("Patchy left apical and right basilar airspace disease."), "Lung Opacity")
    assert (m.laterality, m.location) == ("bilateral", "base")
    labels = labeler("Right lower lobe opacity and left pleural effusion.")
    assert (only(labels, "Lung Opacity").laterality, only(labels, "Pleural Effusion").laterality) == (
        "right",
        "left",
    )
