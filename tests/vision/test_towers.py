"""Image towers: every architecture family builds from a tiny random config, pools, and trains."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lexray.vision import HF_VISION_TABLE, ImagePreprocess, VisionConfig, build_image_tower

TINY_HF = {
    "vit": dict(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, patch_size=8
    ),
    "dinov2": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=2, patch_size=8),
    "swin": dict(embed_dim=16, depths=[1, 1], num_heads=[1, 2], patch_size=4, window_size=4),
    "convnext": dict(hidden_sizes=[16, 32], depths=[1, 1], num_stages=2),
    "clip_vision_model": dict(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, patch_size=8
    ),
    "siglip_vision_model": dict(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, patch_size=8
    ),
}

CONFIGS = {
    **{
        f"hf-{mt}": VisionConfig(
            kind="hf", image_size=32, hf_config={"model_type": mt, "image_size": 32, **kw}
        )
        for mt, kw in TINY_HF.items()
    },
    "timm-eva02": VisionConfig(
        kind="timm",
        model="eva02_tiny_patch14_224",
        image_size=28,
        timm_kwargs=dict(depth=2, embed_dim=32, num_heads=2),
    ),
    "timm-resnet": VisionConfig(kind="timm", model="resnet18", image_size=32, channels=1),
    "small_cnn": VisionConfig(kind="small_cnn", image_size=32, cnn_widths=(8, 16, 16), cnn_out_dim=24),
}


def test_table_covers_every_tiny_config() -> None:
    assert set(TINY_HF) == set(HF_VISION_TABLE) - {"dinov2_with_registers"}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_tower_forward_and_every_trainable_parameter_gets_a_gradient(name: str) -> None:
    torch.manual_seed(0)
    tower = build_image_tower(CONFIGS[name])
    tower.train()
    images = [np.random.default_rng(i).random((40, 36)).astype(np.float32) for i in range(3)]
    pixels = tower.preprocess.batch(images)  # (B, C, S, S)
    assert pixels.shape == (3, tower.preprocess.channels, tower.preprocess.size, tower.preprocess.size)
    feats = tower(pixels)
    assert feats.shape == (3, tower.out_dim)
    feats.pow(2).sum().backward()
    missing = [n for n, p in tower.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"{name}: trainable parameters without a gradient: {missing[:5]}"
    frozen_with_grad = [n for n, p in tower.named_parameters() if not p.requires_grad and p.grad is not None]
    assert not frozen_with_grad


@pytest.mark.parametrize("name", ["hf-vit", "hf-swin", "timm-eva02", "small_cnn"])
def test_layer_ids_run_from_stem_to_head(name: str) -> None:
    tower = build_image_tower(CONFIGS[name])
    ids = {n: tower.layer_id(n) for n, _ in tower.named_parameters()}
    assert min(ids.values()) == 0 or name == "small_cnn"
    assert max(ids.values()) == tower.num_layers + 1
    assert len(set(ids.values())) >= 3  # stem/first block, at least one more block, head


def test_rebuild_from_backbone_state_needs_no_config_fields() -> None:
    tower = build_image_tower(CONFIGS["hf-vit"])
    state = tower.backbone_state()
    again = build_image_tower(VisionConfig(kind="hf", image_size=32), state=state)
    again.load_state_dict(tower.state_dict())
    x = torch.randn(2, 3, 32, 32)
    tower.eval(), again.eval()
    torch.testing.assert_close(tower(x), again(x))


def test_unknown_kind_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="small_cnn"):
        build_image_tower(VisionConfig(kind="nope"))  # type: ignore[arg-type]


def test_preprocess_letterboxes_and_normalises(tmp_path) -> None:
    pre = ImagePreprocess(size=8, channels=3, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    img = np.ones((4, 8), dtype=np.float32)  # wide white image
    x = pre(img)
    assert x.shape == (3, 8, 8)
    # Padded rows at top and bottom are black -> (0 - 0.5) / 0.5 = -1; the middle stays white.
    assert torch.allclose(x[:, 0], torch.full((3, 8), -1.0))
    assert torch.allclose(x[:, 4], torch.ones(3, 8))
    pre.save(tmp_path)
    assert ImagePreprocess.load(tmp_path) == pre


def test_preprocess_keeps_left_and_right() -> None:
    pre = ImagePreprocess(size=16, channels=1, mean=(0.0,), std=(1.0,))
    img = np.zeros((32, 32), dtype=np.float32)
    img[:, 24:] = 1.0  # bright on the image right
    x = pre(img)[0]
    assert x[:, 12:].mean() > 0.9 and x[:, :8].mean() < 0.1


def test_preprocess_rejects_bad_shapes() -> None:
    pre = ImagePreprocess(size=8, channels=1, mean=(0.0,), std=(1.0,))
    with pytest.raises(ValueError, match="grayscale"):
        pre(np.zeros((2, 2, 2, 2), dtype=np.float32))
