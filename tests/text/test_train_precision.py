"""Mixed precision of the text stage: fp16 loss scaling reaches GradCache's weight gradients, bf16
autocast runs on CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lexray.config import load_config
from lexray.data.study import Study
from lexray.text import TextEncoder
from lexray.text.config import ContrastiveConfig, TextTrainConfig
from lexray.text.contrastive import InfoNCELoss, grad_cache_backward
from lexray.text.pairs import ContrastiveExample
from lexray.training import build_adamw, lr_schedule, optimizer_step, param_groups

REPO = Path(__file__).resolve().parents[2]
SCALE = 2.0**12  # a loss scale far from 1, so a missing or doubled scaling shows at once

ANCHORS = ["lungs are clear .", "mild cardiomegaly", "small left pleural effusion", "no pneumothorax"]
POSITIVES = [
    "the lungs are clear",
    "heart size is mild cardiomegaly",
    "left effusion small",
    "pneumothorax no",
]
NEGATIVES = ["lungs are not clear", "severe cardiomegaly", "large right pleural effusion", "pneumothorax"]


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    """Accelerate keeps one precision per process; each test here picks its own."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def _encoder(tiny_llama_dir: Path) -> TextEncoder:
    torch.manual_seed(0)
    enc = TextEncoder.from_pretrained(
        str(tiny_llama_dir), pooling="latent", lora={"enabled": True, "dropout": 0.0}
    )
    with torch.no_grad():  # LoRA B starts at zero: give every adapter a gradient path to A
        for p in enc.parameters():
            if p.requires_grad and not p.any():
                p.normal_(std=0.05)
    return enc


def test_grad_cache_with_a_real_loss_scaler_matches_the_full_batch(tiny_llama_dir):
    """torch's GradScaler driven directly: scale, backward, unscale, as an fp16 optimiser step does."""
    loss_fn = InfoNCELoss(scale=10.0, symmetric=True)

    def unscaled_grads(chunk: int) -> dict[str, torch.Tensor]:
        enc = _encoder(tiny_llama_dir)
        params = [p for p in enc.parameters() if p.requires_grad]
        opt = torch.optim.SGD(params, lr=0.0)
        scaler = torch.amp.GradScaler("cpu", init_scale=SCALE)

        def embed(texts):
            return enc(enc.tokenize(list(texts)))

        def loss_of(reps):
            return loss_fn(reps[0], reps[1], reps[2])

        if chunk:
            grad_cache_backward(
                embed,
                [ANCHORS, POSITIVES, NEGATIVES],
                loss_of,
                chunk,
                backward=lambda x: scaler.scale(x).backward(),
            )
        else:
            loss = sum(loss_of([embed(ANCHORS), embed(POSITIVES), embed(NEGATIVES)]).values())
            scaler.scale(loss).backward()
        scaler.unscale_(opt)
        return {n: p.grad.clone() for n, p in enc.named_parameters() if p.grad is not None}

    full, cached = unscaled_grads(0), unscaled_grads(3)
    assert full.keys() == cached.keys() and full
    for name in full:
        torch.testing.assert_close(cached[name], full[name], rtol=1e-4, atol=1e-6, msg=name)


def _examples() -> list[ContrastiveExample]:
    return [
        ContrastiveExample(a, p, (n,), (i, 100 + i, -1), "variant")
        for i, (a, p, n) in enumerate(zip(ANCHORS, POSITIVES, NEGATIVES, strict=True))
    ]


def test_fp16_contrastive_step_scales_grad_cache_like_the_plain_step(tiny_llama_dir):
    """Through Accelerate's own backward, clipping and optimiser step with a real GradScaler in it."""
    from lexray.text.train import contrastive_step
    from lexray.training import make_accelerator

    def one_step(chunk: int) -> tuple[float, dict[str, torch.Tensor]]:
        enc = _encoder(tiny_llama_dir)
        accelerator = make_accelerator("fp16")
        model = accelerator.prepare(enc)
        # Accelerate leaves a CPU run without a scaler; put torch's real one where a GPU run has it, so
        # backward scales, clip_grad_norm_ unscales and the step divides exactly as with fp16 on a GPU.
        accelerator.scaler = torch.amp.GradScaler("cpu", init_scale=SCALE)
        accelerator.native_amp = True
        optimizer = build_adamw(param_groups(enc, 1e-3, 0.0), 1e-3)
        scheduler = lr_schedule(optimizer, 0, 1)
        optimizer = accelerator.prepare(optimizer)
        config = ContrastiveConfig(scale=10.0, symmetric=True, chunk_size=chunk)
        contrastive_step(model, enc, _examples(), InfoNCELoss(10.0, True), config, accelerator)
        norm = optimizer_step(accelerator, model, optimizer, scheduler, grad_clip=1e9)
        return norm, {n: p.detach().clone() for n, p in enc.named_parameters() if p.requires_grad}

    full_norm, full = one_step(0)
    cached_norm, cached = one_step(2)
    assert full_norm == pytest.approx(cached_norm, rel=1e-4)  # the unscaled gradient norm
    for name in full:
        torch.testing.assert_close(cached[name], full[name], rtol=1e-4, atol=1e-6, msg=name)


def test_bf16_autocast_runs_both_text_stages_on_cpu(tiny_llama_dir, tmp_path, monkeypatch):
    from lexray.data.manifest import write_manifest
    from lexray.text.train import train

    reports = [("Mild cardiomegaly.", "Cardiomegaly."), ("Small left pleural effusion.", "Left effusion.")]
    studies = [
        Study(
            f"S{i}",
            f"P{i}",
            "synthetic",
            "train",
            findings=f"{reports[i % 2][0]} Case {i}.",
            impression=reports[i % 2][1],
        )
        for i in range(10)
    ]
    write_manifest(studies, tmp_path / "m.parquet")
    seen: list[torch.dtype | None] = []
    original = TextEncoder.forward

    def recording(self, *args, **kwargs):
        seen.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(TextEncoder, "forward", recording)
    cfg = load_config(
        TextTrainConfig,
        REPO / "configs/text/tiny-smoke.yaml",
        [
            f"encoder.model={tiny_llama_dir}",
            f"data.manifest={tmp_path / 'm.parquet'}",
            f"output_dir={tmp_path / 'run'}",
            "mixed_precision=bf16",
            "mntp.steps=2",
            "contrastive.steps=2",
            "contrastive.chunk_size=3",
        ],
    )
    out = train(cfg)
    assert seen and set(seen) == {torch.bfloat16}  # every training forward ran under bf16 autocast
    rows = [r for r in (out / "metrics.jsonl").read_text().splitlines() if '"loss"' in r]
    assert len(rows) == 4 and all('"precision": "bf16"' in r for r in rows)
    emb = TextEncoder.from_pretrained(out).encode(["mild cardiomegaly"])
    assert np.isfinite(emb).all()
