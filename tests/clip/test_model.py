"""DualEncoder: gradients reach exactly the trainable parameters per text mode; saves reload identically."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lexray.clip import ClipLoss, DualEncoder, DualEncoderConfig, TextFeatureCache, TextTowerConfig
from lexray.clip.model import MARKER_FILE
from lexray.vision import VisionConfig

TEXTS = [
    "no acute cardiopulmonary process",
    "left pleural effusion",
    "mild cardiomegaly",
    "right upper lobe opacity",
]


def tiny_config(text_dir: Path, mode: str = "frozen", **kw) -> DualEncoderConfig:
    return DualEncoderConfig(
        vision=VisionConfig(kind="small_cnn", image_size=32, cnn_widths=(8, 16, 16), cnn_out_dim=24),
        text=TextTowerConfig(encoder=str(text_dir), mode=mode, max_length=32),  # type: ignore[arg-type]
        embed_dim=16,
        **kw,
    )


def _images(n: int = 4) -> list[np.ndarray]:
    return [np.random.default_rng(i).random((40, 40)).astype(np.float32) for i in range(n)]


@pytest.mark.parametrize("mode", ["frozen", "lora", "full"])
def test_gradients_reach_exactly_the_trainable_parameters(tiny_text_dir: Path, mode: str) -> None:
    torch.manual_seed(0)
    model = DualEncoder.from_config(tiny_config(tiny_text_dir, mode))
    model.train()
    pixels = model.image_tower.preprocess.batch(_images())
    out = model(pixels, model.text_tower.tokenize(TEXTS))
    loss = sum(ClipLoss()(out["image"], out["text"], out["logit_scale"]).values())
    loss.backward()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    without = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not without, f"trainable parameters without a gradient: {without[:5]}"
    frozen_with = [n for n, p in model.named_parameters() if not p.requires_grad and p.grad is not None]
    assert not frozen_with
    text_trainable = {n for n in trainable if n.startswith("text_tower.")}
    if mode == "frozen":
        assert not text_trainable
    elif mode == "lora":
        assert text_trainable and all("lora_" in n for n in text_trainable)
    else:
        assert any("embed_tokens" in n for n in text_trainable)
    assert "logit_scale" in trainable


def test_cached_features_give_the_same_embeddings(tiny_text_dir: Path, tmp_path: Path) -> None:
    model = DualEncoder.from_config(tiny_config(tiny_text_dir))
    direct = model.embed_texts(TEXTS)
    model.attach_text_cache(tmp_path / "cache")
    cached_first = model.embed_texts(TEXTS)
    assert model.text_cache is not None and model.text_cache.misses == len(TEXTS)
    cached_again = model.embed_texts(TEXTS)
    assert model.text_cache.hits == len(TEXTS)
    np.testing.assert_allclose(direct, cached_first, atol=1e-5)
    np.testing.assert_allclose(direct, cached_again, atol=1e-5)
    assert np.allclose(np.linalg.norm(direct, axis=1), 1.0, atol=1e-5)


def test_temperature_is_clamped(tiny_text_dir: Path) -> None:
    model = DualEncoder.from_config(tiny_config(tiny_text_dir, max_logit_scale=20.0))
    with torch.no_grad():
        model.logit_scale.fill_(10.0)
    assert model.scale().item() == pytest.approx(20.0)


@pytest.mark.parametrize("mode", ["frozen", "lora"])
def test_save_and_reload_embed_identically(tiny_text_dir: Path, tmp_path: Path, mode: str) -> None:
    torch.manual_seed(1)
    model = DualEncoder.from_config(tiny_config(tiny_text_dir, mode, logit_bias=True))
    if mode == "lora":  # make the adapters non-trivial so a lost adapter would show
        with torch.no_grad():
            for n, p in model.text_tower.named_parameters():
                if "lora_B" in n:
                    p.normal_(0, 0.5)
    model.eval()
    images = _images(3)
    before_i, before_t = model.embed_images(images), model.embed_texts(TEXTS)
    model.save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / MARKER_FILE).is_file()
    again = DualEncoder.from_pretrained(tmp_path / "m")
    np.testing.assert_allclose(again.embed_images(images), before_i, atol=1e-5)
    np.testing.assert_allclose(again.embed_texts(TEXTS), before_t, atol=1e-5)
    assert again.embed_dim == 16 and again.logit_bias is not None


def test_embed_images_reads_files(tiny_text_dir: Path, tmp_path: Path) -> None:
    from PIL import Image as PILImage

    model = DualEncoder.from_config(tiny_config(tiny_text_dir))
    img = (np.random.default_rng(0).random((40, 40)) * 255).astype(np.uint8)
    PILImage.fromarray(img).save(tmp_path / "x.png")
    from_file = model.embed_images([tmp_path / "x.png"])
    from_array = model.embed_images([img.astype(np.float32) / 255.0])
    np.testing.assert_allclose(from_file, from_array, atol=1e-5)


def test_from_pretrained_without_a_model_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="lexray clip train"):
        DualEncoder.from_pretrained(tmp_path)


def test_cache_is_keyed_by_fingerprint_and_exact_text(tmp_path: Path) -> None:
    calls: list[list[str]] = []

    def compute(texts: list[str]) -> np.ndarray:
        calls.append(texts)
        return np.stack([np.full(3, float(len(t)), dtype=np.float32) for t in texts])

    cache = TextFeatureCache(tmp_path, "fp-a", 3)
    first = cache.get(["a", "bb", "a"], compute)
    assert calls == [["a", "bb"]] and first.shape == (3, 3) and first[0, 0] == first[2, 0] == 1.0
    # Reopened from disk: hits, no computation.
    again = TextFeatureCache(tmp_path, "fp-a", 3)
    np.testing.assert_array_equal(again.get(["bb", "a"]), first[[1, 0]])
    assert len(calls) == 1
    # A changed text is a miss; so is every text under another model's fingerprint.
    again.get(["a ", "a"], compute)
    assert calls[-1] == ["a "]
    other = TextFeatureCache(tmp_path, "fp-b", 3)
    with pytest.raises(KeyError):
        other.get(["a"])
    other.get(["a"], compute)
    assert calls[-1] == ["a"]


def test_cache_invalidated_when_the_text_tower_changes(tiny_text_dir: Path, tmp_path: Path) -> None:
    model = DualEncoder.from_config(tiny_config(tiny_text_dir, "lora"))
    fp = model.text_tower.fingerprint
    with torch.no_grad():
        for n, p in model.text_tower.named_parameters():
            if "lora_B" in n:
                p.add_(0.1)
    assert model.text_tower.fingerprint != fp
    with pytest.raises(ValueError, match="frozen"):
        model.attach_text_cache(tmp_path)
