"""The training loop: exact resume, duplicate-free batches, layer decay, and the GPU recipe at tiny scale."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from lexray.clip.data import (
    BatchPlanner,
    Pair,
    TextAugmentConfig,
    batch_text_key,
    format_report,
    shuffle_sentences,
)
from lexray.clip.train import ClipTrainConfig, build_optimizer, load_train_config, train
from lexray.config import load_config
from lexray.phantoms import PhantomFindings, render_phantom

REPO = Path(__file__).resolve().parents[2]


def tiny_run(manifest: Path, text_dir: Path, out: Path, mode: str = "frozen", **kw) -> ClipTrainConfig:
    base = {
        "output_dir": str(out),
        "seed": 3,
        "batch_size": 4,
        "max_steps": 6,
        "log_every": 1,
        "eval_every": 3,
        "save_every": 0,
        "model": {
            "vision": {"kind": "small_cnn", "image_size": 32, "cnn_widths": [8, 16, 16], "cnn_out_dim": 24},
            "text": {
                "encoder": str(text_dir),
                "mode": mode,
                "max_length": 32,
                "cache_dir": str(out.parent / "cache"),
            },
            "embed_dim": 16,
        },
        "data": {
            "sources": [{"manifest": str(manifest), "split": "train"}],
            "val": {"manifest": str(manifest), "split": "val"},
            "augment": {"shuffle_prob": 0.5},
            "image_augment": {"enabled": True},
        },
        "optim": {"lr": 1e-3, "warmup_steps": 2},
    }
    return load_config(ClipTrainConfig, base=base, overrides=[f"{k}={v}" for k, v in kw.items()])


def _weights(run: Path, sub: str = "final") -> dict[str, torch.Tensor]:
    return load_file(run / sub / "model.safetensors")


@pytest.mark.parametrize("mode", ["frozen", "lora"])
def test_interrupted_and_resumed_run_ends_with_the_same_weights(
    manifest: Path, tiny_text_dir: Path, tmp_path: Path, mode: str
) -> None:
    whole = train(tiny_run(manifest, tiny_text_dir, tmp_path / "whole", mode))
    cfg = tiny_run(manifest, tiny_text_dir, tmp_path / "split", mode)
    train(cfg, stop_at_step=4)
    assert not (tmp_path / "split" / "final").exists()
    split = train(cfg)
    a, b = _weights(whole), _weights(split)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    if mode == "lora":
        ta = load_file(next((whole / "final" / "text" / "adapter").glob("*.safetensors")))
        tb = load_file(next((split / "final" / "text" / "adapter").glob("*.safetensors")))
        for k in ta:
            torch.testing.assert_close(ta[k], tb[k], rtol=0, atol=0, msg=k)
    # Training moved the weights at all (a resume test on a frozen model would prove nothing).
    init = train(tiny_run(manifest, tiny_text_dir, tmp_path / "zero", mode, max_steps=1, **{"optim.lr": 0.0}))
    assert any(not torch.equal(_weights(init)[k], a[k]) for k in a if "num_batches" not in k)


def test_run_directory_records_everything(manifest: Path, tiny_text_dir: Path, tmp_path: Path) -> None:
    import json

    run = train(tiny_run(manifest, tiny_text_dir, tmp_path / "run", save_every=3, max_steps=6))
    assert (run / "config.yaml").is_file() and (run / "tb").is_dir()
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {r["stage"] for r in rows} == {"clip", "val", "done"}
    assert all(r["world_size"] == 1 and r["precision"] == "no" for r in rows)
    assert all(r["global_batch"] == 4 for r in rows if r["stage"] == "clip")
    evals = [r for r in rows if "val/exact/rsum" in r]
    assert [r["step"] for r in evals] == [3, 6]
    assert "val/group/i2t/R@10" in evals[0]  # phantom ground truth is used when the manifest has it
    assert all(np.isfinite(r["loss"]) for r in rows if "loss" in r)
    skipped = (run / "skipped.jsonl").read_text()
    assert "nofile" in skipped
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-0000003", "step-0000006"]
    # The frozen LLM is not copied into checkpoints.
    ckpt = run / "checkpoints" / "step-0000006" / "model.safetensors"
    assert not any(k.startswith("text_tower.") for k in load_file(ckpt))
    from lexray.clip import DualEncoder

    model = DualEncoder.from_pretrained(run)
    assert model.embed_texts(["Large left pleural effusion."]).shape == (1, 16)


def _pairs(texts: list[str]) -> list[Pair]:
    return [Pair(f"s{i}", "src", t, "", ("x.png", "y.png")) for i, t in enumerate(texts)]


def test_batches_are_free_of_duplicate_reports_and_deterministic() -> None:
    texts = (
        ["No acute process."] * 10 + [f"Finding number {i}." for i in range(30)] + ["no  ACUTE process."] * 3
    )
    planner = BatchPlanner(_pairs(texts), [1.0] * len(texts), 8, TextAugmentConfig())
    batches = planner.batches(0)
    assert batches
    for b in batches:
        keys = [batch_text_key(d.text) for d in b]
        assert len(set(keys)) == len(keys) == 8
    again = BatchPlanner(_pairs(texts), [1.0] * len(texts), 8, TextAugmentConfig())
    assert again.batches(0) == batches and again.batches(1) != batches
    # Each epoch rotates through the views.
    assert {d.image for b in planner.batches(0) + planner.batches(1) for d in b} == {0, 1}


def test_the_batch_key_folds_case_and_spaces_and_keeps_the_punctuation_that_reports_drop() -> None:
    from lexray.data.study import normalize_report

    assert batch_text_key(" No  ACUTE\nprocess. ") == batch_text_key("no acute process.")
    # Kept apart on purpose (see batch_text_key): the demo's batch plan depends on it.
    assert batch_text_key("no active disease.") != batch_text_key("no active disease..")
    assert normalize_report("no active disease.") == normalize_report("no active disease..")


def test_source_weights_set_the_draws_per_epoch() -> None:
    texts = [f"Report {i}." for i in range(40)]
    weights = [2.0] * 20 + [0.5] * 20
    planner = BatchPlanner(_pairs(texts), weights, 4, TextAugmentConfig())
    counts = Counter(d.pair for b in planner.batches(0) for d in b)
    heavy = sum(counts[i] for i in range(20))
    light = sum(counts[i] for i in range(20, 40))
    assert heavy >= 36 and light <= 14  # ~40 vs ~10 draws (a few lost to the dropped last batch)


def test_text_augmentation() -> None:
    assert format_report("A b.", "C.", "tagged") == "[FINDINGS]{A b.} [IMPRESSION]{C.}"
    assert format_report("A b.", "", "plain") == "A b."
    rng = np.random.default_rng(0)
    text = "One. Two. Three. Four. Five."
    shuffled = {shuffle_sentences(text, rng) for _ in range(20)}
    assert len(shuffled) > 1 and all(sorted(s.split()) == sorted(text.split()) for s in shuffled)
    pairs = [Pair("a", "s", "One. Two. Three.", "Imp.", ("x",)), Pair("b", "s", "Other.", "", ("x",))]
    aug = TextAugmentConfig(format="tagged", variant_prob=1.0)
    planner = BatchPlanner(pairs, [1.0, 1.0], 2, aug, variants={"a": ["Variant of a."]})
    assert planner.text_for(0, 0, 0) == "Variant of a."
    assert planner.text_for(1, 0, 1) == "[FINDINGS]{Other.}"


def test_layer_decay_scales_lower_blocks(tiny_text_dir: Path) -> None:
    from lexray.clip import DualEncoder, DualEncoderConfig, TextTowerConfig
    from lexray.clip.train import OptimConfig
    from lexray.vision import VisionConfig

    cfg = DualEncoderConfig(
        vision=VisionConfig(kind="small_cnn", image_size=32, cnn_widths=(8, 16, 16), cnn_out_dim=24),
        text=TextTowerConfig(encoder=str(tiny_text_dir), mode="lora", max_length=32),
        embed_dim=16,
    )
    model = DualEncoder.from_config(cfg)
    opt = build_optimizer(model, OptimConfig(lr=1.0, text_lr=0.5, layer_decay=0.5, weight_decay=0.1))
    lr_of = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    wd_of = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    named = dict(model.named_parameters())
    depth = model.image_tower.num_layers + 1  # 4
    assert lr_of[id(named["image_tower.blocks.0.0.weight"])] == pytest.approx(0.5 ** (depth - 1))
    assert lr_of[id(named["image_tower.blocks.2.0.weight"])] == pytest.approx(0.5 ** (depth - 3))
    assert lr_of[id(named["image_proj.1.weight"])] == 1.0
    assert all(
        lr_of[id(p)] == 0.5 for n, p in named.items() if n.startswith("text_tower.") and p.requires_grad
    )
    assert wd_of[id(named["logit_scale"])] == 0.0 and wd_of[id(named["image_proj.1.bias"])] == 0.0
    assert wd_of[id(named["image_proj.1.weight"])] == 0.1
    assert not any(id(p) in lr_of for p in model.parameters() if not p.requires_grad)


def test_paper_gpu_recipe_code_path_at_tiny_scale(
    manifest: Path, tiny_text_dir: Path, tmp_path: Path
) -> None:
    """configs/clip/paper-gpu.yaml as published (EVA02 via timm, LoRA text tower, tagged + shuffled
    reports, layer decay, clipping, grad accumulation), shrunk to a few tiny steps on the CPU."""
    cfg = load_train_config(
        REPO / "configs" / "clip" / "paper-gpu.yaml",
        [
            f"output_dir={tmp_path / 'paper'}",
            "model.vision.pretrained=false",
            "model.vision.image_size=28",
            "model.vision.timm_kwargs={depth: 2, embed_dim: 32, num_heads: 2}",
            f"model.text.encoder={tiny_text_dir}",
            "model.text.max_length=48",
            "model.embed_dim=16",
            f"data.sources=[{{manifest: {manifest}, split: train}}]",
            f"data.val={{manifest: {manifest}, split: val}}",
            "batch_size=4",
            "max_steps=2",
            "eval_every=2",
            "save_every=2",
            "optim.warmup_steps=1",
            "mixed_precision='no'",
        ],
    )
    assert cfg.model.vision.kind == "timm" and cfg.model.text.mode == "lora"
    assert cfg.optim.layer_decay == 0.85 and cfg.optim.grad_clip == 5.0 and cfg.optim.lr == 1e-5
    assert cfg.data.augment.format == "tagged" and cfg.data.augment.shuffle_prob == 0.3
    run = train(cfg)
    from lexray.clip import DualEncoder

    model = DualEncoder.from_pretrained(run)
    assert model.text_tower.has_lora
    emb = model.embed_images([render_phantom(PhantomFindings(), "x", 64)])
    assert emb.shape == (1, 16) and np.isclose(np.linalg.norm(emb), 1.0, atol=1e-5)


def test_sharded_cache_fill_covers_every_text(manifest: Path, tiny_text_dir: Path, tmp_path: Path) -> None:
    from lexray.clip import DualEncoder
    from lexray.clip.data import SourceConfig, load_pairs
    from lexray.clip.train import fill_text_cache

    cfg = tiny_run(manifest, tiny_text_dir, tmp_path / "run")
    extra = [SourceConfig(manifest=str(manifest), split="val")]
    n0 = fill_text_cache(cfg, extra, shard=0, num_shards=2)
    n1 = fill_text_cache(cfg, extra, shard=1, num_shards=2)
    texts = {
        p.text() for split in ("train", "val") for p in load_pairs(SourceConfig(str(manifest), split))[0]
    }
    assert n0 + n1 == len(texts)
    model = DualEncoder.from_config(cfg.model)
    cache = model.attach_text_cache()
    cache.get(sorted(texts))  # raises KeyError if any text is missing
    assert cache.misses == 0


def test_image_augmentation_is_reproducible_and_keeps_sides() -> None:
    from lexray.clip.data import ImageAugmentConfig, augment_images

    x = torch.zeros(2, 1, 32, 32)
    x[:, :, :, 20:] = 1.0  # bright image right
    cfg = ImageAugmentConfig(enabled=True, noise=0.0)
    a = augment_images(x, np.random.default_rng(1), cfg)
    b = augment_images(x, np.random.default_rng(1), cfg)
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, x)
    assert (a[:, :, :, 24:].mean() > 0.8) and (a[:, :, :, :12].mean() < 0.2)  # never flipped


def test_bf16_autocast_runs_the_clip_step_on_cpu(
    manifest: Path, tiny_text_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from accelerate.state import AcceleratorState

    from lexray.clip.model import DualEncoder

    seen: list[torch.dtype | None] = []
    original = DualEncoder.forward

    def recording(self, *args, **kwargs):
        seen.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(DualEncoder, "forward", recording)
    AcceleratorState._reset_state(reset_partial_state=True)  # Accelerate keeps one precision per process
    try:
        run = train(
            tiny_run(manifest, tiny_text_dir, tmp_path / "bf16", "lora", max_steps=2, mixed_precision="bf16")
        )
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
    assert seen and set(seen) == {torch.bfloat16}
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if r["stage"] == "clip"]
    assert len(steps) == 2 and all(r["precision"] == "bf16" and np.isfinite(r["loss"]) for r in steps)


def test_the_run_bounds_cpu_memory_before_it_builds_the_model(
    manifest: Path, tiny_text_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    from lexray.clip.model import DualEncoder
    from lexray.training.memory import KERNEL_CACHE_CAPACITY

    for name in ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY"):
        monkeypatch.delenv(name, raising=False)
    seen: list[tuple[str | None, str | None]] = []
    original = DualEncoder.from_config.__func__

    def recording(cls, *args, **kwargs):
        seen.append((os.environ.get("ONEDNN_PRIMITIVE_CACHE_CAPACITY"), os.environ.get("LRU_CACHE_CAPACITY")))
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(DualEncoder, "from_config", classmethod(recording))
    train(tiny_run(manifest, tiny_text_dir, tmp_path / "run", "lora", max_steps=1, eval_every=0))
    assert seen and seen[0] == (str(KERNEL_CACHE_CAPACITY), str(KERNEL_CACHE_CAPACITY))
