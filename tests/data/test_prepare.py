"""Views, splits, prepare (sources -> manifest), stats, and the `lexray data prepare/stats` commands."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from lexray.cli.main import app
from lexray.data.manifest import read_manifest, read_rejects
from lexray.data.prepare import PrepareConfig, prepare
from lexray.data.sources.chexpert_plus import ChexpertPlusConfig
from lexray.data.sources.mimic import MimicCxrConfig
from lexray.data.splits import normalize_split, patient_splits
from lexray.data.stats import manifest_stats
from lexray.data.study import Image, Study
from lexray.data.views import filter_views, normalize_view, view_kind


def test_view_normalisation_and_filtering():
    assert normalize_view(" ap_axial ") == "AP AXIAL" and normalize_view(float("nan")) is None
    assert [view_kind(v) for v in ("PA", "ll", "Lateral", "LAO", "weird", None, "")] == [
        "frontal",
        "lateral",
        "lateral",
        "oblique",
        "other",
        None,
        None,
    ]
    s = Study("s", "p", "x", "train", images=(Image("a", "PA"), Image("b", "LATERAL"), Image("c", None)))
    assert [i.path for i in filter_views(s, "frontal").images] == ["a", "c"]
    assert [i.path for i in filter_views(s, "frontal", keep_unknown=False).images] == ["a"]
    assert [i.path for i in filter_views(s, "lateral").images] == ["b", "c"]
    assert filter_views(s, "all") is s


def test_split_names_and_hash_split_stability():
    assert [normalize_split(x) for x in ("Validate", " valid", "TEST", "training")] == [
        "val",
        "val",
        "test",
        "train",
    ]
    with pytest.raises(ValueError, match="unknown split name 'holdout'"):
        normalize_split("holdout")
    ids = [f"p{i}" for i in range(2000)]
    a = patient_splits(ids, 0.1, 0.2, seed=5)
    assert a == patient_splits(list(reversed(ids)), 0.1, 0.2, seed=5)  # order does not matter
    assert patient_splits(ids + ["new"], 0.1, 0.2, seed=5)["p7"] == a["p7"]  # growing keeps old patients
    shares = Counter(a.values())
    assert abs(shares["test"] / 2000 - 0.2) < 0.04 and abs(shares["val"] / 2000 - 0.1) < 0.03
    assert patient_splits(ids, 0.1, 0.2, seed=6) != a
    with pytest.raises(ValueError, match="sum below 1"):
        patient_splits(ids, 0.5, 0.5)


def test_prepare_combines_sources_filters_views_and_writes_rejects(mimic_tree, chexpert_csv, tmp_path):
    cfg = PrepareConfig(
        mimic_cxr=MimicCxrConfig(path=mimic_tree),
        chexpert_plus=ChexpertPlusConfig(path=chexpert_csv),
        views="frontal",
        keep_unknown_views=False,
        require_images=True,
    )
    summary = prepare(cfg, tmp_path / "out" / "m.parquet")
    studies = read_manifest(summary.manifest)
    ids = [s.study_id for s in studies]
    # 50000010 has only an image without a view: dropped by the frontal filter with require_images.
    assert ids == [
        "mimic-cxr-s50000001",
        "mimic-cxr-s50000002",
        "mimic-cxr-s50000009",
        "chexpert-plus-patient00001-study1",
        "chexpert-plus-patient00002-study3",
    ]
    assert all(view_kind(i.view) == "frontal" for s in studies for i in s.images)
    rejects = read_rejects(summary.manifest)
    assert ("mimic-cxr", "mimic-cxr-s50000010", "no_images") in {
        (r.source, r.record, r.reason) for r in rejects
    }
    assert summary.studies == {"mimic-cxr": 3, "chexpert-plus": 2}
    assert sum(summary.rejected.values()) == len(rejects)

    stats = manifest_stats(summary.manifest)
    assert stats["studies"] == 5
    assert stats["by_split_source"] == {
        "mimic-cxr": {"train": 1, "val": 1, "test": 1},
        "chexpert-plus": {"train": 1, "val": 1},
    }
    assert stats["sections"]["mimic-cxr"]["findings"] == pytest.approx(2 / 3, abs=1e-3)
    assert stats["sections"]["chexpert-plus"]["impression"] == 1.0
    assert stats["images"]["total"] == 5 and stats["images"]["views"] == {"PA": 3, "AP": 2}
    assert stats["rejects"]["mimic-cxr"]["no_images"] == 2
    words = stats["report_words"]["mimic-cxr"]
    assert words["count"] == 3
    oracle = sorted(
        len((s.findings + " " + s.impression).split()) for s in studies if s.source == "mimic-cxr"
    )
    assert (words["min"], words["max"]) == (oracle[0], oracle[-1])


def test_prepare_refuses_no_source_and_duplicate_ids_are_rejected(chexpert_csv, tmp_path):
    with pytest.raises(ValueError, match="no source configured"):
        prepare(PrepareConfig(), tmp_path / "m.parquet")
    from lexray.data.sources.hospital import HospitalConfig

    export = tmp_path / "e.csv"
    export.write_text("study_id,report\nA,IMPRESSION: ok\n")
    twice = PrepareConfig(hospital=(HospitalConfig(path=export, patient_id=None, image_path=None),) * 2)
    summary = prepare(twice, tmp_path / "m.parquet")
    assert summary.studies == {"hospital": 1}
    assert summary.rejected == {("hospital", "duplicate_study_id"): 1}


def test_cli_prepare_and_stats(mimic_tree, chexpert_csv, tmp_path):
    out = tmp_path / "run" / "manifest.parquet"
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"views": "frontal"}))
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "data",
            "prepare",
            f"mimic-cxr={mimic_tree}",
            f"chexpert-plus={chexpert_csv}",
            "--out",
            str(out),
            "--config",
            str(recipe),
            "--set",
            "mimic_cxr.check_images=false",
        ],
    )
    assert result.exit_code == 0, result.output
    saved = yaml.safe_load((out.parent / "manifest.config.yaml").read_text())
    assert saved["views"] == "frontal" and saved["mimic_cxr"]["check_images"] is False
    assert saved["mimic_cxr"]["path"] == str(mimic_tree)
    assert "mimic-cxr-s50000011" in {s.study_id for s in read_manifest(out)}  # image check was off

    stats = runner.invoke(app, ["data", "stats", str(out), "--json"])
    assert stats.exit_code == 0
    numbers = json.loads(stats.output)
    assert numbers["studies"] == len(read_manifest(out))
    table = runner.invoke(app, ["data", "stats", str(out)])
    assert (
        table.exit_code == 0 and "section availability" in table.output and "rejected records" in table.output
    )

    bad = runner.invoke(app, ["data", "prepare", "nonsense", "--out", str(out)])
    assert bad.exit_code == 2 and "KIND=PATH" in bad.output
    bad_key = runner.invoke(
        app, ["data", "prepare", f"mimic-cxr={mimic_tree}", "--out", str(out), "--set", "mimic_cxr.nope=1"]
    )
    assert bad_key.exit_code == 2 and "unknown key" in bad_key.output
    missing = runner.invoke(app, ["data", "stats", str(tmp_path / "none.parquet")])
    assert missing.exit_code == 2 and "does not exist" in missing.output


@pytest.mark.slow
def test_cli_prepare_real_open_i(openi_dir, tmp_path):
    out = tmp_path / "openi.parquet"
    result = CliRunner().invoke(
        app,
        [
            "data",
            "prepare",
            f"openi={openi_dir}",
            "--set",
            f"openi.split_file={openi_dir / 'r2gen_split.json'}",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    stats = manifest_stats(out)
    assert stats["studies"] + sum(stats["rejects"]["openi"].values()) == 3955
    assert {k: stats["by_split_source"]["openi"][k] for k in ("train", "val", "test")} == {
        "train": 2069,
        "val": 296,
        "test": 590,
    }
    assert round(stats["sections"]["openi"]["findings"] * stats["studies"]) == 3425
    assert Path(out.parent / "openi.config.yaml").is_file()


def test_decode_images_drops_corrupt_files(tmp_path):
    import numpy as np
    from PIL import Image as PILImage

    from lexray.data.sources.hospital import HospitalConfig

    good = tmp_path / "good.png"
    PILImage.fromarray(np.full((64, 64), 128, dtype=np.uint8)).save(good)
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    export = tmp_path / "e.csv"
    export.write_text(
        "study_id,image_path,report\nA,good.png;bad.png,IMPRESSION: ok\nB,bad.png,IMPRESSION: ok\n"
    )
    hospital = (HospitalConfig(path=export, patient_id=None, image_root=tmp_path),)
    lenient = prepare(PrepareConfig(hospital=hospital), tmp_path / "a.parquet")
    assert sum(len(s.images) for s in read_manifest(lenient.manifest)) == 3  # no decoding: kept
    strict = prepare(
        PrepareConfig(hospital=hospital, decode_images=True, require_images=True), tmp_path / "b.parquet"
    )
    studies = read_manifest(strict.manifest)
    assert [(s.study_id, [Path(i.path).name for i in s.images]) for s in studies] == [
        ("hospital-A", ["good.png"])
    ]
    assert strict.rejected == {("hospital", "corrupt_image"): 2, ("hospital", "no_images"): 1}
    assert all("bad.png" in r.detail for r in read_rejects(strict.manifest) if r.reason == "corrupt_image")
