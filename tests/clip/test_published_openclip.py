"""open_clip import: a tiny BiomedCLIP-shaped model made and saved by open_clip embeds identically in lexray."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from lexray.cli.main import app
from lexray.clip import DualEncoder
from lexray.clip.openclip import OpenClipDualEncoder, import_open_clip
from lexray.models import ModelNotAvailableError
from lexray.testing import build_tiny_bert

TEXTS = ["lungs are clear .", "small left pleural effusion", "there is mild cardiomegaly"]
MEAN, STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


@pytest.fixture(scope="module")
def saved_by_open_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """BiomedCLIP's layout (timm ViT + an HF BERT text tower, CLS pooling, MLP projection), scaled down."""
    import open_clip
    from open_clip.push_to_hf_hub import save_for_hf

    root = tmp_path_factory.mktemp("openclip")
    bert = build_tiny_bert(root / "bert")
    model_cfg = {
        "embed_dim": 16,
        "vision_cfg": {
            "timm_model_name": "vit_tiny_patch16_224",
            "timm_model_pretrained": False,
            "timm_pool": "",
            "timm_proj": "linear",
            "image_size": 224,
        },
        "text_cfg": {
            "hf_model_name": str(bert),
            "hf_tokenizer_name": str(bert),
            "hf_proj_type": "mlp",
            "hf_pooler_type": "cls_last_hidden_state_pooler",
            "context_length": 32,
        },
    }
    draft = root / "draft"
    shutil.copytree(bert, draft, ignore=shutil.ignore_patterns("*.safetensors"))  # the tokenizer only
    preprocess_cfg = {"mean": MEAN, "std": STD, "interpolation": "bicubic", "resize_mode": "shortest"}
    (draft / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": model_cfg, "preprocess_cfg": preprocess_cfg})
    )
    torch.manual_seed(0)
    model = open_clip.create_model(f"local-dir:{draft}")  # random init: the draft has no weights
    tokenizer = open_clip.get_tokenizer(f"local-dir:{draft}")
    save_for_hf(model, tokenizer, model_cfg, root / "biomedclip-tiny")
    return root / "biomedclip-tiny"


def _smooth_grey(h: int, w: int) -> np.ndarray:
    """An 8-bit image as smooth as a radiograph (no pixel-level noise)."""
    rows, cols = np.sin(np.linspace(0, 3, h))[:, None], np.cos(np.linspace(0, 2, w))[None, :]
    return (127.5 + 100 * rows * cols).astype(np.uint8)


def test_imported_open_clip_embeds_identically(saved_by_open_clip, tmp_path):
    import open_clip
    from PIL import Image

    model, _, transform = open_clip.create_model_and_transforms(f"local-dir:{saved_by_open_clip}")
    tokenizer = open_clip.get_tokenizer(f"local-dir:{saved_by_open_clip}")
    model.eval()
    result = CliRunner().invoke(
        app, ["models", "import", "open_clip", str(saved_by_open_clip), "--out", str(tmp_path / "m")]
    )
    assert result.exit_code == 0, result.output
    ours = DualEncoder.from_pretrained(tmp_path / "m")  # the directory, as evaluate/index build load it
    assert isinstance(ours, OpenClipDualEncoder) and ours.embed_dim == 16
    with torch.no_grad():
        expected = model.encode_text(tokenizer(TEXTS), normalize=True).numpy()
    np.testing.assert_allclose(ours.embed_texts(TEXTS, batch_size=2), expected, atol=1e-6)
    grey = _smooth_grey(50, 40)  # PIL's 8-bit passes clip overshoots that a float image keeps
    pixels = transform(Image.fromarray(grey).convert("RGB"))[None]
    with torch.no_grad():
        expected_img = model.encode_image(pixels, normalize=True)
        np.testing.assert_allclose(ours.encode_image(pixels).numpy(), expected_img.numpy(), atol=1e-6)
    # lexray's own preprocessing of the float image: the same transform up to 8-bit resampling.
    pre = ours.preprocess(grey.astype(np.float32) / 255.0)
    assert (pre - pixels[0]).abs().max().item() < 1.6 / 255 / 0.26  # two 8-bit roundings in PIL
    emb = ours.embed_images([grey.astype(np.float32) / 255.0])
    assert emb.shape == (1, 16) and np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_open_clip_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotAvailableError, match="BiomedCLIP.*HF_HUB_OFFLINE"):
        import_open_clip("hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224", tmp_path / "o")
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(
        app, ["models", "import", "open_clip", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 2 and "open_clip_config.json" in result.output


def test_imported_open_clip_builds_an_index_and_searches(saved_by_open_clip, tmp_path):
    from lexray.data.manifest import write_manifest
    from lexray.data.study import Image, Study
    from lexray.index import Searcher
    from lexray.phantoms import PhantomFindings, render_phantom, save_phantom_png

    out = import_open_clip(str(saved_by_open_clip), tmp_path / "m")
    studies = []
    for i, (report, findings) in enumerate(
        [
            ("lungs are clear .", PhantomFindings()),
            ("small left pleural effusion", PhantomFindings(effusion=(("left", 1),))),
        ]
    ):
        save_phantom_png(
            tmp_path / "img" / f"p{i}.png", render_phantom(findings, f"p{i}", 64), f"p{i}", findings
        )
        studies.append(
            Study(f"p{i}", f"p{i}", "phantom", "test", (Image(f"img/p{i}.png", "PA"),), findings=report)
        )
    write_manifest(studies, tmp_path / "manifest.parquet")
    r = CliRunner().invoke(
        app,
        ["index", "build", "--model", str(out), "--manifest", str(tmp_path / "manifest.parquet"),
         "--out", str(tmp_path / "index"), "--no-progress"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    hits = Searcher.open(tmp_path / "index").by_text("small left pleural effusion", k=2, target="text").hits
    assert hits[0].study_id == "p1" and hits[0].score == pytest.approx(1.0, abs=1e-5)
