"""`lexray evaluate` end to end with a real (tiny, random) DualEncoder saved to disk, and `compare`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lexray.cli.main import app
from lexray.testing import build_tiny_llama

REPORTS = [
    "lungs are clear",
    "small left pleural effusion",
    "mild cardiomegaly",
    "right upper lobe opacity",
    "no focal consolidation",
    "heart size is normal",
]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    import torch

    from lexray.clip import DualEncoder, DualEncoderConfig, TextTowerConfig
    from lexray.vision import VisionConfig

    base = tmp_path_factory.mktemp("tiny-clip")
    text_dir = build_tiny_llama(base / "llama")
    torch.manual_seed(0)
    model = DualEncoder.from_config(
        DualEncoderConfig(
            vision=VisionConfig(kind="small_cnn", image_size=32, cnn_widths=(8, 16, 16), cnn_out_dim=24),
            text=TextTowerConfig(encoder=str(text_dir), mode="frozen", max_length=32),
            embed_dim=16,
        )
    )
    model.save_pretrained(base / "run")
    return base / "run"


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    from PIL import Image as PILImage

    from lexray.data.manifest import write_manifest
    from lexray.data.study import Image, Study

    base = tmp_path_factory.mktemp("manifest")
    (base / "images").mkdir()
    studies = []
    for split, n in (("test", 6), ("train", 6)):
        for i in range(n):
            sid = f"{split}{i}"
            rng = np.random.default_rng(hash(sid) % 2**32)
            PILImage.fromarray((rng.random((40, 40)) * 255).astype(np.uint8)).save(
                base / "images" / f"{sid}.png"
            )
            studies.append(
                Study(
                    study_id=sid,
                    patient_id=sid,
                    source="synthetic",
                    split=split,
                    images=(Image(path=f"images/{sid}.png", view="PA"),),
                    findings=REPORTS[i],
                )
            )
    write_manifest(studies, base / "manifest.parquet")
    return base / "manifest.parquet"


def test_evaluate_default_command_and_compare(tiny_run, manifest, tmp_path):
    runner = CliRunner()
    common = [
        "--manifest",
        str(manifest),
        "--set",
        "run_generation=false",
        "--set",
        "robustness.styles=[]",
        "--no-progress",
    ]
    res = runner.invoke(app, ["evaluate", "--model", str(tiny_run), *common, "--out", str(tmp_path / "a")])
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert m["n_studies"] == 6 and m["split"] == "test"
    r = m["retrieval"]["study/exact/image_to_text"]
    assert 0 <= r["hit@1"] <= 100 and 1 <= r["median_rank"] <= 6
    assert (tmp_path / "a" / "config.yaml").read_text().count("run_generation: false") == 1
    res = runner.invoke(
        app,
        [
            "evaluate",
            "run",
            "--model",
            str(tiny_run),
            *common,
            "--set",
            "retrieval.ties=optimistic",
            "--out",
            str(tmp_path / "b"),
        ],
    )
    assert res.exit_code == 0, res.output
    res = runner.invoke(
        app,
        ["evaluate", "compare", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "cmp.md")],
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "cmp.md").read_text().startswith("| metric | a | b |")


def test_evaluate_errors_are_clear(tiny_run, manifest, tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["evaluate", "--model", str(tiny_run), "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "missing --manifest" in res.output
    res = runner.invoke(
        app,
        [
            "evaluate",
            "run",
            "--model",
            str(tiny_run),
            "--manifest",
            str(manifest),
            "--out",
            str(tmp_path / "x"),
            "--set",
            "retrieval.nope=1",
        ],
    )
    assert res.exit_code == 2 and "unknown key" in res.output
    res = runner.invoke(
        app,
        [
            "evaluate",
            "run",
            "--model",
            str(tmp_path / "absent"),
            "--manifest",
            str(manifest),
            "--out",
            str(tmp_path / "x"),
        ],
    )
    assert res.exit_code == 2 and "does not exist" in res.output


def test_build_5x200_command(tmp_path):
    import pandas as pd

    from lexray.evaluate.fivex200 import FIVE_CLASSES

    rows = []
    for i in range(50):
        lab = {c: "" for c in FIVE_CLASSES}
        lab[FIVE_CLASSES[i % 5]] = 1
        rows.append({"Path": f"p{i}.jpg", "Frontal/Lateral": "Frontal", **lab})
    pd.DataFrame(rows).to_csv(tmp_path / "train.csv", index=False)
    res = CliRunner().invoke(
        app,
        [
            "evaluate",
            "build-5x200",
            "--labels",
            str(tmp_path / "train.csv"),
            "--out",
            str(tmp_path / "5x10.csv"),
            "--n-per-class",
            "10",
        ],
    )
    assert res.exit_code == 0, res.output
    out = pd.read_csv(tmp_path / "5x10.csv")
    assert len(out) == 50 and out["label"].value_counts().min() == 10


def test_text_benchmark_is_reachable_from_evaluate(tiny_run, tmp_path):
    pytest.importorskip("lexray.text.bench")
    rows = []
    for i, r in enumerate(REPORTS):
        rows.append(
            {
                "id": f"s{i}",
                "findings": r,
                "impression": "no acute cardiopulmonary process",
                "shorthand": r.replace("pleural effusion", "eff"),
                "impression_only": r,
                "restyled": f"the {r}",
                "errors": [{"type": t, "text": f"{t} {r}"} for t in ("left", "right", "large")],
            }
        )
    bench = tmp_path / "bench.jsonl"
    bench.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    res = CliRunner().invoke(
        app,
        [
            "evaluate",
            "text",
            "--model",
            str(tiny_run),
            "--bench",
            str(bench),
            "--out",
            str(tmp_path / "t.json"),
        ],
    )
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "t.json").read_text())
    assert {"shorthand_R@1", "errdisc_orig_acc"} <= set(m)
    assert all(0.0 <= v <= 100.0 for v in m.values())
