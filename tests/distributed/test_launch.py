"""``accelerate launch --num_processes 2 -m lexray.cli.main ...`` trains both stages on CPU (gloo) and
writes models that load and embed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from lexray.data.manifest import write_manifest
from lexray.data.study import Image, Study
from lexray.phantoms import PhantomFindings, render_phantom, save_phantom_png

pytestmark = pytest.mark.distributed

REPO = Path(__file__).resolve().parents[2]
REPORTS = [
    ("No acute cardiopulmonary process.", PhantomFindings()),
    ("Large left pleural effusion.", PhantomFindings(effusion=(("left", 2),))),
    ("Small right pleural effusion.", PhantomFindings(effusion=(("right", 1),))),
    ("Mild cardiomegaly. Lungs are clear.", PhantomFindings(cardiomegaly=True)),
    ("Pacemaker in place. No acute process.", PhantomFindings(devices=frozenset({"pacemaker"}))),
]


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_two_process_text_train_writes_an_encoder_that_loads_and_embeds(tiny_llama, tmp_path, launch):
    from lexray.text import TextEncoder

    studies = [
        Study(f"S{i}", f"P{i}", "synthetic", "train", findings=f"{text} Case {i}.", impression=text)
        for i, (text, _) in enumerate(REPORTS * 3)
    ]
    write_manifest(studies, tmp_path / "m.parquet")
    out = tmp_path / "run"
    sets = [f"encoder.model={tiny_llama}", f"data.manifest={tmp_path / 'm.parquet'}", "mntp.steps=2"]
    sets += ["contrastive.steps=2", "contrastive.chunk_size=3", "contrastive.hard_negatives=2"]
    args = ["text", "train", "-c", str(REPO / "configs/text/tiny-smoke.yaml"), "-o", str(out)]
    launch(args + [x for s in sets for x in ("--set", s)])
    steps = [r for r in _records(out) if r["stage"] in ("mntp", "contrastive")]
    assert [(r["stage"], r["step"]) for r in steps] == [
        ("mntp", 1),
        ("mntp", 2),
        ("contrastive", 1),
        ("contrastive", 2),
    ]
    assert all(r["world_size"] == 2 and r["global_batch"] == 8 for r in steps)
    emb = TextEncoder.from_pretrained(out).encode(["small right pleural effusion", "mild cardiomegaly"])
    assert emb.shape == (2, 32) and np.isfinite(emb).all()


@pytest.mark.parametrize("mode", ["lora", "frozen"])
def test_two_process_clip_train_writes_a_model_that_loads_and_embeds(tiny_llama, tmp_path, mode, launch):
    from lexray.clip import DualEncoder

    studies = []
    for i in range(20):
        text, findings = REPORTS[i % len(REPORTS)]
        sid = f"s{i:02d}"
        save_phantom_png(tmp_path / "images" / f"{sid}.png", render_phantom(findings, sid, 48), sid, findings)
        split = "train" if i < 16 else "val"
        studies.append(
            Study(
                sid,
                sid,
                "phantom",
                split,
                findings=f"{text} Study {i}.",
                images=(Image(f"images/{sid}.png"),),
            )
        )
    write_manifest(studies, tmp_path / "manifest.parquet")
    config = {
        "output_dir": str(tmp_path / "run"),
        "batch_size": 3,
        "max_steps": 3,
        "log_every": 1,
        "eval_every": 0,
        "save_every": 0,
        "model": {
            "vision": {"kind": "small_cnn", "image_size": 32, "cnn_widths": [8, 16, 16], "cnn_out_dim": 24},
            "text": {
                "encoder": str(tiny_llama),
                "mode": mode,
                "max_length": 32,
                "cache_dir": str(tmp_path / "cache"),
            },
            "embed_dim": 16,
        },
        "data": {
            "sources": [{"manifest": str(tmp_path / "manifest.parquet"), "split": "train"}],
            "val": {"manifest": str(tmp_path / "manifest.parquet"), "split": "val"},
        },
        "optim": {"lr": 1e-3, "warmup_steps": 1},
    }
    (tmp_path / "clip.yaml").write_text(yaml.safe_dump(config))
    launch(["clip", "train", "-c", str(tmp_path / "clip.yaml")])
    steps = [r for r in _records(tmp_path / "run") if r["stage"] == "clip"]
    assert [r["step"] for r in steps] == [1, 2, 3]
    assert all(r["world_size"] == 2 and r["global_batch"] == 6 and np.isfinite(r["loss"]) for r in steps)
    model = DualEncoder.from_pretrained(tmp_path / "run" / "final")
    assert model.embed_texts(["Large left pleural effusion."]).shape == (1, 16)


def test_two_process_evaluate_and_embed_equal_one_process(tiny_llama, tmp_path, launch):
    """`lexray evaluate` and `lexray embed` under `accelerate launch` shard the embedding work and write
    the same result as one process (the main process alone writes)."""
    from typer.testing import CliRunner

    from lexray.cli.main import app
    from lexray.clip import DualEncoder, DualEncoderConfig, TextTowerConfig
    from lexray.vision.towers import VisionConfig

    studies = []
    for i in range(14):
        text, findings = REPORTS[i % len(REPORTS)]
        sid = f"s{i:02d}"
        save_phantom_png(tmp_path / "images" / f"{sid}.png", render_phantom(findings, sid, 32), sid, findings)
        studies.append(
            Study(
                sid,
                sid,
                "phantom",
                "test" if i < 9 else "train",
                findings=f"{text} Study {i}.",
                images=(Image(f"images/{sid}.png"),),
            )
        )
    manifest = write_manifest(studies, tmp_path / "manifest.parquet")
    config = DualEncoderConfig(
        vision=VisionConfig(kind="small_cnn", image_size=32, cnn_widths=(8, 16), cnn_out_dim=16),
        text=TextTowerConfig(encoder=str(tiny_llama), mode="full", max_length=32),
        embed_dim=8,
    )
    model_dir = DualEncoder.from_config(config).save_pretrained(tmp_path / "model")
    # One item per forward: each embedding is then computed alike in one process or two, bit for bit, so
    # the near-ties of an untrained model rank alike too (batched, rows differ by ~1e-8 with the batch).
    sets = ["--set", "robustness.styles=[]", "--set", "batch_size=1"]
    common = ["--model", str(model_dir), "--manifest", str(manifest), *sets, "--no-progress"]

    one = CliRunner().invoke(app, ["evaluate", "run", *common, "--out", str(tmp_path / "eval-1")])
    assert one.exit_code == 0, one.output
    printed = launch(["evaluate", "run", *common, "--out", str(tmp_path / "eval-2")]).stdout
    assert printed.count("wrote ") == 1  # the main process alone writes and reports
    m1, m2 = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("eval-1", "eval-2"))
    for key in ("study/exact/image_to_text", "study/exact/text_to_image", "study/dedup/image_to_text"):
        scalars = {k: v for k, v in m1["retrieval"][key].items() if isinstance(v, (int, float))}
        assert scalars and {k: m2["retrieval"][key][k] for k in scalars} == pytest.approx(scalars), key
    assert m2["generation"]["bleu1"] == pytest.approx(m1["generation"]["bleu1"])

    embed = ["--model", str(model_dir), "--manifest", str(manifest), "--batch-size", "3"]
    for kind in ("images", "texts"):
        res = CliRunner().invoke(app, ["embed", kind, *embed, "--out", str(tmp_path / f"{kind}-1.npz")])
        assert res.exit_code == 0, res.output
        printed = launch(["embed", kind, *embed, "--out", str(tmp_path / f"{kind}-2.npz")]).stdout
        assert printed.count(" embeddings of size ") == 1
        a, b = np.load(tmp_path / f"{kind}-1.npz"), np.load(tmp_path / f"{kind}-2.npz")
        assert list(a["study_id"]) == list(b["study_id"])  # one ordered result
        np.testing.assert_allclose(a["embeddings"], b["embeddings"], atol=1e-5)
