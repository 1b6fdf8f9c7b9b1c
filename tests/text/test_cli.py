"""CLI contracts: ``lexray encode`` (row i = line i, float32 (n, d)), ``lexray text evaluate``, export-st."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from lexray.cli.main import app
from lexray.text import TextEncoder

runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]


def test_encode_contract(tiny_llama_dir, tmp_path):
    lines = [
        "lungs are clear .",
        "",
        "there is mild cardiomegaly with small left pleural effusion",
        "lungs are clear .",
    ]
    src = tmp_path / "texts.txt"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "emb.npy"
    result = runner.invoke(
        app, ["encode", "--model", str(tiny_llama_dir), "--texts", str(src), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    emb = np.load(out)
    assert emb.dtype == np.float32 and emb.shape == (4, 32)
    expected = TextEncoder.from_pretrained(str(tiny_llama_dir)).encode(lines)
    np.testing.assert_allclose(emb, expected, atol=1e-5)  # row i is line i (the empty line included)
    np.testing.assert_allclose(emb[0], emb[3], atol=1e-6)


def test_encode_crlf_and_missing_file(tiny_llama_dir, tmp_path):
    src = tmp_path / "crlf.txt"
    src.write_bytes(b"lungs are clear .\r\nmild cardiomegaly\r\n")
    out = tmp_path / "e.npy"
    assert (
        runner.invoke(app, ["encode", "-m", str(tiny_llama_dir), "-t", str(src), "-o", str(out)]).exit_code
        == 0
    )
    assert np.load(out).shape == (2, 32)
    missing = runner.invoke(
        app, ["encode", "-m", str(tiny_llama_dir), "-t", str(tmp_path / "no.txt"), "-o", str(out)]
    )
    assert missing.exit_code == 2 and "does not exist" in missing.output


def test_text_evaluate_writes_metrics(tiny_llama_dir, tmp_path):
    bench = tmp_path / "bench.jsonl"
    rows = []
    for i, (f, imp) in enumerate(
        [("lungs are clear .", "no acute process ."), ("mild cardiomegaly .", "stable .")]
    ):
        rows.append(
            {
                "id": f"X{i}",
                "findings": f,
                "impression": imp,
                "shorthand": f,
                "impression_only": imp,
                "restyled": imp + " " + f,
                "errors": [{"type": "negation", "text": "no " + f}] * 3,
            }
        )
    bench.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "m.json"
    result = runner.invoke(
        app, ["text", "evaluate", "--model", str(tiny_llama_dir), "--bench", str(bench), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())["metrics"]
    from lexray.text.bench import evaluate_bench, load_bench

    enc = TextEncoder.from_pretrained(str(tiny_llama_dir))
    assert metrics == pytest.approx(evaluate_bench(enc.encode, load_bench(bench)))
    assert set(metrics) >= {
        "restyled_R@1",
        "errdisc_orig_acc",
        "errdisc_shorthand_acc",
        "impression_only_R@10",
    }
    # --dtype runs the same encoder in another precision
    args = [
        "text",
        "evaluate",
        "-m",
        str(tiny_llama_dir),
        "-b",
        str(bench),
        "-o",
        str(out),
        "--dtype",
        "bfloat16",
    ]
    assert runner.invoke(app, args).exit_code == 0
    bf16 = TextEncoder.from_pretrained(str(tiny_llama_dir), dtype="bfloat16")
    assert bf16.base_model().embed_tokens.weight.dtype == torch.bfloat16
    assert json.loads(out.read_text())["metrics"] == pytest.approx(
        evaluate_bench(bf16.encode, load_bench(bench))
    )
    bad = runner.invoke(app, [*args[:-1], "float8"])
    assert bad.exit_code == 2 and "dtype" in bad.output


def test_export_st_matches_encoder(tiny_llama_dir, tmp_path):
    pytest.importorskip("sentence_transformers")
    from sentence_transformers import SentenceTransformer

    enc = TextEncoder.from_pretrained(
        str(tiny_llama_dir), instruction="represent this report : ", lora={"enabled": True}
    )
    with torch.no_grad():
        for n, p in enc.named_parameters():
            if "lora_B" in n:
                p.normal_(std=0.05)
    enc.save_pretrained(tmp_path / "enc")
    result = runner.invoke(app, ["text", "export-st", str(tmp_path / "enc"), str(tmp_path / "st")])
    assert result.exit_code == 0, result.output
    texts = ["lungs are clear .", "there is mild cardiomegaly with small left pleural effusion"]
    st = SentenceTransformer(str(tmp_path / "st"), device="cpu")
    ours = TextEncoder.from_pretrained(tmp_path / "enc").encode(texts)
    np.testing.assert_allclose(st.encode(texts), ours, atol=1e-4)


def test_export_st_refuses_latent(tiny_llama_dir, tmp_path):
    TextEncoder.from_pretrained(str(tiny_llama_dir), pooling="latent").save_pretrained(tmp_path / "lat")
    result = runner.invoke(app, ["text", "export-st", str(tmp_path / "lat"), str(tmp_path / "o")])
    assert result.exit_code == 2 and "latent" in result.output


@pytest.mark.parametrize("main", [True, False])
def test_text_train_reports_the_saved_encoder_on_the_main_process_only(tmp_path, monkeypatch, main):
    import accelerate

    import lexray.text.train

    class State:  # what `accelerate launch` gives each process
        is_main_process = main

    monkeypatch.setattr(lexray.text.train, "train", lambda config: tmp_path / "run")
    monkeypatch.setattr(accelerate, "PartialState", State)
    result = runner.invoke(
        app,
        [
            "text",
            "train",
            "--config",
            str(REPO / "configs/text/tiny-smoke.yaml"),
            "--out",
            str(tmp_path / "run"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert ("encoder saved to" in result.output) is main
