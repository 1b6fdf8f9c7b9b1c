"""Phantom radiographs: deterministic, labelled synthetic, and the findings show where they should."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lexray.data.study import Study
from lexray.findings.labels import CHEXPERT_OBSERVATIONS, Mention, ReportLabels
from lexray.phantoms import (
    PhantomConfig,
    PhantomFindings,
    findings_from_labels,
    is_synthetic_png,
    render_phantom,
    render_studies,
    sample_anatomy,
    side_sign,
    study_seed,
)

SIZE = 128


def _region(img: np.ndarray, side: str, rows: tuple[float, float], cols: tuple[float, float]) -> float:
    """Mean over a box given in the patient's frame: ``cols`` are distances from the midline (0..0.5)."""
    s = img.shape[0]
    r0, r1 = int(rows[0] * s), int(rows[1] * s)
    if side_sign(side) > 0:  # patient left = image right
        c0, c1 = int((0.5 + cols[0]) * s), int((0.5 + cols[1]) * s)
    else:
        c0, c1 = int((0.5 - cols[1]) * s), int((0.5 - cols[0]) * s)
    return float(img[r0:r1, c0:c1].mean())


def test_same_study_same_image_other_study_other_anatomy() -> None:
    f = PhantomFindings(cardiomegaly=True)
    a, b = render_phantom(f, "s1", SIZE), render_phantom(f, "s1", SIZE)
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.float32 and a.shape == (SIZE, SIZE) and 0 <= a.min() and a.max() <= 1
    assert np.abs(a - render_phantom(f, "s2", SIZE)).mean() > 0.01
    assert study_seed("s1") == study_seed("s1") != study_seed("s2")


def test_left_effusion_raises_the_left_costophrenic_region_only() -> None:
    # The patient's left costophrenic angle is at the lower, lateral image RIGHT on a PA film.
    base = render_phantom(PhantomFindings(), "p7", SIZE)
    left = render_phantom(PhantomFindings(effusion=(("left", 1),)), "p7", SIZE)
    box = dict(rows=(0.62, 0.76), cols=(0.2, 0.4))
    assert _region(left, "left", **box) > _region(base, "left", **box) + 0.05
    assert _region(left, "right", **box) == pytest.approx(_region(base, "right", **box), abs=0.005)
    # In image terms: the right half of the image got denser, the left half did not.
    half = SIZE // 2
    assert (left - base)[:, half:].sum() > 10 * abs((left - base)[:, :half].sum())


def test_large_effusion_covers_more_than_small() -> None:
    base = render_phantom(PhantomFindings(), "p8", SIZE)
    small = render_phantom(PhantomFindings(effusion=(("right", 1),)), "p8", SIZE)
    large = render_phantom(PhantomFindings(effusion=(("right", 2),)), "p8", SIZE)
    assert (large - base).sum() > 2 * (small - base).sum() > 0


def test_cardiomegaly_widens_the_heart() -> None:
    a = sample_anatomy(np.random.default_rng(study_seed("p9")))
    row = int(a.heart_y * SIZE)
    normal = render_phantom(PhantomFindings(), "p9", SIZE)[row]
    big = render_phantom(PhantomFindings(cardiomegaly=True), "p9", SIZE)[row]
    assert (big > 0.5).sum() > (normal > 0.5).sum() + SIZE * 0.05


def test_pneumothorax_darkens_the_lateral_lung_and_lesions_brighten_their_zone() -> None:
    base = render_phantom(PhantomFindings(), "p10", SIZE)
    ptx = render_phantom(PhantomFindings(pneumothorax=("right",)), "p10", SIZE)
    diff = ptx - base
    half = SIZE // 2
    # The patient's right lung is on the image left: it loses density there, the image right is untouched.
    assert (diff[:, :half] < -0.04).sum() > SIZE * SIZE * 0.01
    assert np.abs(diff[:, half:]).max() < 1e-6
    mass = render_phantom(PhantomFindings(lesions=frozenset({("mass", "left", "upper")})), "p10", SIZE)
    diff = mass - base
    top_right_image = diff[: SIZE // 2, SIZE // 2 :].sum()
    assert top_right_image > 5 * abs(diff[:, : SIZE // 2].sum())


@pytest.mark.parametrize(
    "findings",
    [
        PhantomFindings(edema=True),
        PhantomFindings(hyperinflation=True),
        PhantomFindings(
            parenchymal=frozenset({("atelectasis", "left", "lower"), ("consolidation", "right", "middle")})
        ),
        PhantomFindings(
            devices=frozenset({"pacemaker", "sternotomy wires", "endotracheal tube", "enteric tube"})
        ),
        PhantomFindings(
            devices=frozenset({"central venous catheter", "chest tube", "surgical clips", "stent"})
        ),
        PhantomFindings(devices=frozenset({"prosthetic valve", "hardware"}), fracture=("left",)),
        PhantomFindings(pleural_thickening=("right",), wide_mediastinum=True),
    ],
)
def test_every_finding_changes_the_image(findings: PhantomFindings) -> None:
    assert (
        np.abs(render_phantom(findings, "p11", SIZE) - render_phantom(PhantomFindings(), "p11", SIZE)).sum()
        > 5
    )


def test_burn_in_marks_the_image_synthetic() -> None:
    img = render_phantom(PhantomFindings(), "p12", 256)
    assert (img[:20, :90] > 0.6).sum() > 30  # the white "SYNTHETIC" letters on black air, top left


def _labels(**mentions: tuple[str, str | None, str | None, str | None]) -> ReportLabels:
    ms = []
    obs = {name: "absent" for name in CHEXPERT_OBSERVATIONS}
    for obs_name, (status, laterality, location, severity) in mentions.items():
        name = obs_name.replace("_", " ")
        ms.append(Mention(name, name, status, 0, 1, name, laterality, location, severity))  # type: ignore[arg-type]
        if name in obs:
            obs[name] = status
    return ReportLabels(observations=obs, mentions=tuple(ms))  # type: ignore[arg-type]


def test_findings_from_labels_maps_sides_zones_and_sizes() -> None:
    f = findings_from_labels(
        _labels(
            Pleural_Effusion=("positive", "left", None, "large"),
            Pneumothorax=("negative", "right", None, None),
            Atelectasis=("positive", "bilateral", "base", None),
            nodule=("positive", "right", "upper lobe", None),
            Cardiomegaly=("uncertain", None, None, None),
            pacemaker=("positive", None, None, None),
        )
    )
    assert f.effusion == (("left", 2),)
    assert f.pneumothorax == ()
    assert f.parenchymal == {("atelectasis", "left", "lower"), ("atelectasis", "right", "lower")}
    assert f.lesions == {("nodule", "right", "upper")}
    assert not f.cardiomegaly  # uncertain is not drawn
    assert f.devices == {"pacemaker"}
    assert f.key() == findings_from_labels(_labels(pacemaker=("positive", None, None, None))).key().replace(
        "pacemaker", f.key()
    )
    assert PhantomFindings().key() == "normal" and PhantomFindings().normal


def test_unsided_effusion_is_bilateral_and_small() -> None:
    f = findings_from_labels(_labels(Pleural_Effusion=("positive", None, None, None)))
    assert f.effusion == (("left", 1), ("right", 1))


def test_render_studies_with_the_real_labeler(tmp_path: Path) -> None:
    studies = [
        Study("a/1", "p1", "test", "train", findings="Large left pleural effusion. Heart size is normal."),
        Study("b2", "p2", "test", "train", findings="The lungs are clear.", impression="No acute disease."),
        Study("c3", "p3", "test", "val", findings="", impression=""),
        Study("d4", "p4", "test", "test", findings="Mild cardiomegaly."),
    ]
    result = render_studies(
        studies, tmp_path, PhantomConfig(size=64, splits=("train", "val")), progress=False
    )
    assert [s.study_id for s in result.studies] == ["a/1", "b2"]
    assert result.skipped == [("c3", "no findings or impression text to depict")]
    assert result.findings["a/1"].effusion == (("left", 2),)
    assert result.findings["b2"].normal
    for s in result.studies:
        assert s.extra["synthetic"] == "true" and s.extra["phantom_findings"]
        path = tmp_path / s.images[0].path
        assert path.is_file() and is_synthetic_png(path)
