"""The style-mix grid on tiny towers and a tiny phantom manifest: every cell trains, evaluates and is tabled."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from lexray.data.manifest import read_manifest, write_manifest
from lexray.data.study import Image, Study
from lexray.experiments.style_mix import (
    CohortConfig,
    ExperimentError,
    StyleMixConfig,
    TowerSpec,
    build_cohorts,
    hospital_rewrites,
    run_style_mix,
)
from lexray.phantoms import PhantomFindings, render_phantom, save_phantom_png
from lexray.testing import build_tiny_bert, build_tiny_llama

REPORTS = [
    ("The heart size is normal. The lungs are clear.", "No acute cardiopulmonary abnormality.", PhantomFindings()),
    (
        "There is a large left pleural effusion. The heart is normal in size.",
        "Large left pleural effusion.",
        PhantomFindings(effusion=(("left", 2),)),
    ),
    (
        "The heart is enlarged. No pleural effusion or pneumothorax.",
        "Cardiomegaly.",
        PhantomFindings(cardiomegaly=True),
    ),
    (
        "There is a small right pleural effusion. No pneumothorax.",
        "Small right pleural effusion.",
        PhantomFindings(effusion=(("right", 1),)),
    ),
]


@pytest.fixture(scope="module")
def labeler():  # noqa: ANN201 - lexray.findings.Labeler
    from lexray.findings import get_labeler

    return get_labeler()


@pytest.fixture()
def phantom_manifest(tmp_path: Path) -> Path:
    """24 train, 4 val and 8 test phantom studies with findings and impression."""
    root = tmp_path / "phantoms"
    studies = []
    for i in range(36):
        findings, impression, drawn = REPORTS[i % len(REPORTS)]
        sid = f"s{i:02d}"
        save_phantom_png(root / "images" / f"{sid}.png", render_phantom(drawn, sid, 32), sid, drawn)
        split = "train" if i < 24 else "val" if i < 28 else "test"
        studies.append(
            Study(
                sid, f"p{i}", "phantom", split, findings=findings, impression=impression,
                images=(Image(f"images/{sid}.png", "PA"),),
                extra={"synthetic": "true", "phantom_findings": drawn.key()},
            )
        )
    return write_manifest(studies, root / "manifest.parquet")


def _present(labels) -> dict[str, str]:  # noqa: ANN001
    return {k: v for k, v in labels.observations.items() if v in ("positive", "uncertain")}


def test_hospital_rewrites_keep_the_labelers_findings(labeler) -> None:  # noqa: ANN001
    from lexray.variants.rules import source_text

    studies = [
        Study(f"s{i}", f"p{i}", "openi", "train", findings=f, impression=imp)
        for i, (f, imp, _) in enumerate(REPORTS * 3)
    ]
    rewritten, counts = hospital_rewrites(studies, ("brief", "impression_only", "shorthand"), 0, labeler)
    assert rewritten and sum(counts.values()) == len(studies)
    for sid, st in rewritten.items():
        source = next(s for s in studies if s.study_id == sid)
        assert st.report_text != source_text(source) and st.findings == ""
        # The findings present (or possible) are the same; summary styles may drop stated negatives.
        assert _present(labeler(st.report_text)) == _present(labeler(source_text(source)))
        assert st.extra["hospital_style"] in ("brief", "impression_only", "shorthand")
    assert len({st.extra["hospital_style"] for st in rewritten.values()}) > 1  # styles are mixed


def test_cohorts_never_train_on_val_or_test_reports(phantom_manifest: Path, tmp_path: Path, labeler) -> None:  # noqa: ANN001
    studies = read_manifest(phantom_manifest)
    cohorts = build_cohorts(studies, CohortConfig(share=0.5), tmp_path / "c", phantom_manifest.parent, labeler)
    held_out = {s.study_id for s in studies if s.split != "train"}
    held_out_texts = {s.report_text for s in studies if s.split != "train"}
    a, b, c = (read_manifest(cohorts.train[arm]) for arm in ("a", "b", "c"))
    assert not {s.study_id for s in b} & held_out
    assert {s.study_id for s in a} < {s.study_id for s in b}  # (b) is (a) plus the hospital cohort
    added = [s for s in b if s.study_id not in {x.study_id for x in a}]
    assert added and all(s.extra.get("hospital_style") for s in added)
    assert all(s.images for s in added)  # with their own (same-findings) images
    # The control arm: the same studies as (b), each in its own report.
    own_reports = {s.study_id: s.report_text for s in studies}
    assert [s.study_id for s in c] == [s.study_id for s in b]
    assert all(s.report_text == own_reports[s.study_id] for s in c)
    standard, hospital = (read_manifest(cohorts.test[t]) for t in ("standard", "hospital"))
    assert [s.study_id for s in standard] == [s.study_id for s in hospital]
    assert {s.report_text for s in standard} <= held_out_texts
    with pytest.raises(ExperimentError, match="strictly between 0 and 1"):
        build_cohorts(studies, CohortConfig(share=1.0), tmp_path / "d", phantom_manifest.parent, labeler)


def test_the_grid_trains_evaluates_and_tables_every_cell(
    phantom_manifest: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, labeler  # noqa: ANN001
) -> None:
    monkeypatch.setenv("LEXRAY_HOME", str(tmp_path / "home"))
    clip = {
        "batch_size": 4, "max_steps": 2, "eval_every": 0, "save_every": 0,
        "model": {
            "vision": {"kind": "small_cnn", "image_size": 32, "cnn_widths": [8, 16], "cnn_out_dim": 16},
            "text": {"max_length": 48},
            "embed_dim": 8,
        },
        "optim": {"warmup_steps": 1},
    }
    (tmp_path / "clip.yaml").write_text(yaml.safe_dump(clip))
    (tmp_path / "eval.yaml").write_text(yaml.safe_dump({"batch_size": 8, "robustness": {"styles": []}}))
    cfg = StyleMixConfig(
        out=str(tmp_path / "grid"),
        manifest=str(phantom_manifest),
        towers=(
            TowerSpec("llama", str(build_tiny_llama(tmp_path / "llama")), max_length=48),
            TowerSpec("bert", str(build_tiny_bert(tmp_path / "bert")), max_length=48),
        ),
        cohort=CohortConfig(share=0.5, styles=("brief", "impression_only", "shorthand")),
        seeds=(0, 1),
        clip_config=str(tmp_path / "clip.yaml"),
        eval_config=str(tmp_path / "eval.yaml"),
    )
    table_path = run_style_mix(cfg, labeler=labeler)
    table = json.loads((table_path.parent / "table.json").read_text())
    cells = sorted((tmp_path / "grid" / "cells").glob("*/*/eval-*/metrics.json"))
    assert len(cells) == 2 * 3 * 2 * 2  # towers x arms x seeds x test styles
    assert (table_path.parent / "degradation.png").stat().st_size > 0
    md = table_path.read_text()
    assert "SYNTHETIC" not in md  # a given manifest is not assumed synthetic
    # Every number is read from the cells' own metrics files: recompute one mean and one paired difference.
    def hit10(tower: str, arm: str, seed: int, style: str) -> float:
        m = json.loads((tmp_path / "grid" / "cells" / tower / f"{arm}-seed{seed}" / f"eval-{style}" / "metrics.json").read_text())
        return m["retrieval"]["study/exact/image_to_text"]["hit@10"]

    rows = {(r["tower"], r["test"], r["arm"]): r for r in table["rows"]}
    a = rows[("bert", "hospital", "a")]["i2t R@10"]
    assert a["mean"] == pytest.approx((hit10("bert", "a", 0, "hospital") + hit10("bert", "a", 1, "hospital")) / 2)
    diff = rows[("llama", "standard", "b-a")]["i2t R@10"]
    expected = [hit10("llama", "b", s, "standard") - hit10("llama", "a", s, "standard") for s in (0, 1)]
    assert diff["mean"] == pytest.approx(sum(expected) / 2) and diff["n"] == 2
    assert rows[("llama", "standard", "a")]["i2t R@1 same-findings"] is not None
    style_alone = rows[("bert", "hospital", "b-c")]["i2t R@10"]
    expected = [hit10("bert", "b", s, "hospital") - hit10("bert", "c", s, "hospital") for s in (0, 1)]
    assert style_alone["mean"] == pytest.approx(sum(expected) / 2)

    # A second run reuses every finished cell: the metrics files are not rewritten.
    stamps = {p: p.stat().st_mtime_ns for p in cells}
    run_style_mix(cfg, labeler=labeler)
    assert {p: p.stat().st_mtime_ns for p in cells} == stamps


def test_a_grid_without_towers_or_seeds_is_a_named_error(tmp_path: Path) -> None:
    with pytest.raises(ExperimentError, match="no towers"):
        run_style_mix(StyleMixConfig(out=str(tmp_path)))
    with pytest.raises(ExperimentError, match="no seeds"):
        run_style_mix(StyleMixConfig(out=str(tmp_path), towers=(TowerSpec("x", "minilm-l6"),), seeds=()))
