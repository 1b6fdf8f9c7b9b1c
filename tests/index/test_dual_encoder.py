"""The index and the service with the real DualEncoder (small CNN + the real MiniLM report tower)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from lexray.cli.main import app
from lexray.data.manifest import write_manifest
from lexray.data.study import Image, Study
from lexray.index import RetrievalIndex, Searcher
from lexray.phantoms import PhantomFindings, render_phantom, save_phantom_png
from lexray.serve import create_app

pytestmark = pytest.mark.slow

_REPORTS = [
    ("Heart size normal. Lungs clear.", PhantomFindings()),
    ("Cardiomegaly without edema.", PhantomFindings(cardiomegaly=True)),
    ("Small left pleural effusion.", PhantomFindings(effusion=(("left", 1),))),
    ("Right pneumothorax.", PhantomFindings(pneumothorax=("right",))),
]


def test_build_search_serve_with_dual_encoder(tmp_path: Path, minilm_dir: Path):
    from lexray.clip import DualEncoder, DualEncoderConfig, TextTowerConfig

    cfg = DualEncoderConfig(text=TextTowerConfig(encoder=str(minilm_dir), max_length=64), embed_dim=64)
    run = tmp_path / "run"
    DualEncoder.from_config(cfg).save_pretrained(run / "final")  # a run directory keeps its model in final/
    studies = []
    for i in range(8):
        report, findings = _REPORTS[i % 4]
        sid = f"ph{i}"
        save_phantom_png(tmp_path / "img" / f"{sid}.png", render_phantom(findings, sid, 128), sid, findings)
        studies.append(Study(sid, sid, "phantom", "test", (Image(f"img/{sid}.png", "PA"),), findings=report))
    write_manifest(studies, tmp_path / "manifest.parquet")
    out = tmp_path / "index"
    r = CliRunner().invoke(
        app,
        ["index", "build", "--model", str(run), "--manifest", str(tmp_path / "manifest.parquet"),
         "--out", str(out), "--no-progress"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    idx = RetrievalIndex.load(out)
    assert idx.model_ref.path == str((run / "final").resolve())
    assert idx.model_ref.model_class == "lexray.clip:DualEncoder" and idx.embed_dim == 64
    searcher = Searcher.open(out)
    # The stored vectors are what the loaded model gives for the same inputs.
    np.testing.assert_allclose(
        idx.vectors("text"), searcher.model.embed_texts([s.report_text for s in studies]), atol=1e-5
    )
    # An untrained CNN maps phantoms close together, so ph5 need not rank first; it must score ~1 itself.
    res = searcher.by_image(tmp_path / "img" / "ph5.png", k=8, target="image")
    assert {h.study_id: h.score for h in res.hits}["ph5"] == pytest.approx(1.0, abs=1e-4)
    r = CliRunner().invoke(app, ["search", "--index", str(out), "--text", "pleural effusion", "-k", "3"])
    assert r.exit_code == 0, r.output
    client = TestClient(create_app(searcher))
    data = (tmp_path / "img" / "ph3.png").read_bytes()
    body = client.post("/v1/search/image", files={"file": ("ph3.png", data, "image/png")}).json()
    assert len(body["results"]) == 5 and body["query"]["width"] == 128
