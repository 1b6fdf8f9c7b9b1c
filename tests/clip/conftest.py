"""Tiny in-process towers for the CLIP tests: a 2-layer random Llama report tower with a word tokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest

from lexray.data.manifest import write_manifest
from lexray.data.study import Image, Study
from lexray.phantoms import PhantomFindings, render_phantom, save_phantom_png
from lexray.testing import build_tiny_llama


@pytest.fixture(scope="session")
def tiny_text_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer random Llama directory usable as ``text.encoder``."""
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


REPORTS = [
    ("No acute cardiopulmonary process.", PhantomFindings()),
    ("Lungs are clear. Heart size is normal.", PhantomFindings()),
    ("Large left pleural effusion.", PhantomFindings(effusion=(("left", 2),))),
    ("Small right pleural effusion.", PhantomFindings(effusion=(("right", 1),))),
    ("Mild cardiomegaly. Lungs are clear.", PhantomFindings(cardiomegaly=True)),
    ("Right upper lobe opacity.", PhantomFindings(parenchymal=frozenset({("opacity", "right", "upper")}))),
    (
        "Left lower lobe atelectasis.",
        PhantomFindings(parenchymal=frozenset({("atelectasis", "left", "lower")})),
    ),
    ("Pacemaker in place. No acute process.", PhantomFindings(devices=frozenset({"pacemaker"}))),
]


@pytest.fixture(scope="session")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 train + 8 val studies with phantom PNGs; the first two train reports are identical twins."""
    root = tmp_path_factory.mktemp("phantom-set")
    studies = []
    for i in range(32):
        text, findings = REPORTS[i % len(REPORTS)]
        sid = f"s{i:02d}"
        save_phantom_png(root / "images" / f"{sid}.png", render_phantom(findings, sid, 48), sid, findings)
        split = "train" if i < 24 else "val"
        studies.append(
            Study(
                sid,
                sid,
                "phantom",
                split,
                findings=text,
                images=(Image(f"images/{sid}.png", "PA"),),
                extra={"synthetic": "true", "phantom_findings": findings.key()},
            )
        )
    studies.append(
        Study("nofile", "p", "phantom", "train", findings="x", images=(Image("images/missing.png"),))
    )
    write_manifest(studies, root / "manifest.parquet")
    return root / "manifest.parquet"
