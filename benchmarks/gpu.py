"""GPU throughput of lexray's training and encoding paths at the published scale (one CUDA GPU).

Measures, with lexray's own modules on randomly initialised weights (no downloads):

* MNTP training steps/s of a Llama-3.2-1B-sized bidirectional encoder with LoRA r=16 (q/k/v/o);
* supervised contrastive steps/s (anchor + positive + one hard negative per row, InfoNCE x 50);
* CLIP steps/s: ViT-L/14 at 448 px (timm ``vit_large_patch14_clip_224`` resized to 448) + the 1B
  text tower with LoRA, symmetric CLIP loss;
* encode throughput (reports/s) of the 1B text tower in bf16;

each with achieved TFLOP/s (analytic FLOPs: 2·N·T forward, +2·N·T for activation gradients of frozen
weights, +2·N_trainable·T for weight gradients, plus attention) next to a bf16 matmul peak measured in
the same run. Finishes within 10 minutes on one H100. ``--tiny`` runs the same code on CPU at toy size
(a smoke check, not a measurement).

    python benchmarks/gpu.py            # on a CUDA machine
    python benchmarks/gpu.py --tiny     # anywhere
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Scale:
    """Sizes of one benchmark run."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    text_batch: int
    text_len: int
    vit: str
    image_size: int
    clip_batch: int
    clip_text_len: int
    steps: int
    warmup: int


# Llama-3.2-1B: hidden 2048, 16 layers, 32 heads (8 KV), MLP 8192, vocab 128,256.
PAPER = Scale(2048, 16, 32, 8, 8192, 128256, 32, 512, "vit_large_patch14_clip_224", 448, 32, 256, 10, 3)
TINY = Scale(64, 2, 4, 2, 128, 512, 4, 32, "vit_tiny_patch16_224", 64, 4, 32, 2, 1)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], None], steps: int, warmup: int, device: torch.device) -> float:
    """Seconds per call of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    _sync(device)
    return (time.perf_counter() - start) / steps


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int) -> float:
    """Measured FLOP/s of an n x n matmul in ``dtype`` (the machine's practical peak)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    sec = timed(lambda: torch.mm(a, b), steps=20, warmup=3, device=device)
    return 2 * n**3 / sec


def build_text_encoder(scale: Scale, device: torch.device, dtype: torch.dtype):  # -> TextEncoder
    """A random-init Llama-3.2-1B-shaped lexray TextEncoder with latent pooling and LoRA r=16."""
    from transformers import LlamaConfig, LlamaModel

    from lexray.text._arch import arch_spec
    from lexray.text.config import LoraSettings, TextEncoderConfig
    from lexray.text.encoder import TextEncoder

    cfg = LlamaConfig(
        hidden_size=scale.hidden,
        num_hidden_layers=scale.layers,
        num_attention_heads=scale.heads,
        num_key_value_heads=scale.kv_heads,
        intermediate_size=scale.intermediate,
        vocab_size=scale.vocab,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
    )
    backbone = LlamaModel(cfg).to(device=device, dtype=dtype)
    config = TextEncoderConfig(
        model="random-llama", pooling="latent", dtype="bfloat16", max_length=scale.text_len
    )
    encoder = TextEncoder(backbone, None, config, arch_spec("llama"), "random").to(device)
    encoder.apply_lora(LoraSettings(enabled=True, r=16, alpha=32, dropout=0.1))
    return encoder


def _token_batch(scale: Scale, batch: int, length: int, device: torch.device) -> dict[str, torch.Tensor]:
    ids = torch.randint(0, scale.vocab, (batch, length), device=device)
    ones = torch.ones(batch, length, dtype=torch.long, device=device)
    return {"input_ids": ids, "attention_mask": ones, "pool_mask": ones.bool()}


def _params(module: nn.Module, trainable: bool | None = None) -> int:
    return sum(p.numel() for p in module.parameters() if trainable is None or p.requires_grad == trainable)


def _text_flops(encoder: nn.Module, scale: Scale, tokens: int, length: int, backward: bool) -> float:
    """Matmul FLOPs of the text tower on ``tokens`` tokens in sequences of ``length``."""
    n_all = _params(encoder.backbone) - scale.vocab * scale.hidden  # embeddings are a lookup
    n_train = _params(encoder, trainable=True)
    attn = 4 * scale.layers * length * scale.hidden * tokens  # QK^T and AV per token, forward
    fwd = 2 * n_all * tokens + attn
    if not backward:
        return fwd
    return fwd + (2 * n_all * tokens + 2 * attn) + 2 * n_train * tokens


def bench_mntp(encoder, scale: Scale, device: torch.device) -> tuple[float, float]:
    """(steps/s, FLOP/s) of one MNTP step: mask, forward, next-token loss on masked positions, update."""
    from lexray.text.mntp import MNTPHead, MNTPLoss, mask_batch

    head = MNTPHead(encoder.base_model().get_input_embeddings().weight.detach())
    loss_fn = MNTPLoss(head)
    opt = torch.optim.AdamW([p for p in encoder.parameters() if p.requires_grad], lr=1e-4)
    batch = _token_batch(scale, scale.text_batch, scale.text_len, device)

    def step() -> None:
        masked, labels = mask_batch({k: v.cpu() for k, v in batch.items()}, 0.2, 0, scale.vocab)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            hidden = encoder({k: v.to(device) for k, v in masked.items()}, pool=False)
            loss = sum(loss_fn(hidden, labels).values())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    sec = timed(step, scale.steps, scale.warmup, device)
    tokens = scale.text_batch * scale.text_len
    return 1 / sec, _text_flops(encoder, scale, tokens, scale.text_len, backward=True) / sec


def bench_contrastive(encoder, scale: Scale, device: torch.device) -> tuple[float, float]:
    """(steps/s, FLOP/s) of one supervised contrastive step with one hard negative per anchor."""
    from lexray.text.contrastive import InfoNCELoss

    loss_fn = InfoNCELoss(scale=50.0)
    opt = torch.optim.AdamW([p for p in encoder.parameters() if p.requires_grad], lr=1e-4)
    length = scale.text_len // 2
    parts = [_token_batch(scale, scale.text_batch, length, device) for _ in range(3)]

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            a, p, n = (encoder(b) for b in parts)  # (B, D) each
            loss = sum(loss_fn(a, p, n).values())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    sec = timed(step, scale.steps, scale.warmup, device)
    tokens = 3 * scale.text_batch * length
    return 1 / sec, _text_flops(encoder, scale, tokens, length, backward=True) / sec


def bench_encode(encoder, scale: Scale, device: torch.device) -> tuple[float, float]:
    """(reports/s, FLOP/s) of no-grad encoding in bf16, 256-token reports."""
    length = scale.text_len // 2
    batch = _token_batch(scale, 4 * scale.text_batch, length, device)

    @torch.no_grad()
    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            encoder(batch)

    sec = timed(step, scale.steps, scale.warmup, device)
    n = batch["input_ids"].shape[0]
    return n / sec, _text_flops(encoder, scale, n * length, length, backward=False) / sec


def bench_clip(encoder, scale: Scale, device: torch.device) -> tuple[float, float]:
    """(steps/s, FLOP/s) of a CLIP step: ViT-L/14 at 448 px fully trained + the LoRA text tower."""
    from lexray.clip.config import DualEncoderConfig, TextTowerConfig
    from lexray.clip.losses import ClipLoss
    from lexray.clip.model import DualEncoder
    from lexray.vision.towers import VisionConfig

    config = DualEncoderConfig(
        vision=VisionConfig(
            kind="timm", model=scale.vit, image_size=scale.image_size, gradient_checkpointing=False
        ),
        text=TextTowerConfig(encoder="random-llama", mode="lora", max_length=scale.clip_text_len),
        embed_dim=1280,
    )
    model = DualEncoder.from_config(config, text_tower=encoder).to(device)
    loss_fn = ClipLoss()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    images = torch.randn(scale.clip_batch, 3, scale.image_size, scale.image_size, device=device)
    texts = _token_batch(scale, scale.clip_batch, scale.clip_text_len, device)

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            out = model(images, texts)
            loss = sum(loss_fn(**out).values())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    sec = timed(step, scale.steps, scale.warmup, device)
    vit_params = _params(model.image_tower)
    patches = (scale.image_size // 14) ** 2 if "patch14" in scale.vit else (scale.image_size // 16) ** 2
    vit_flops = 6 * vit_params * patches * scale.clip_batch  # fully trained: fwd + both backward halves
    text = _text_flops(
        encoder, scale, scale.clip_batch * scale.clip_text_len, scale.clip_text_len, backward=True
    )
    return 1 / sec, (vit_flops + text) / sec


def main() -> None:
    """Run every benchmark and print one table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tiny", action="store_true", help="toy sizes on any device (smoke check)")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type != "cuda" and not args.tiny:
        raise SystemExit("no CUDA device: run on a GPU machine, or pass --tiny for a CPU smoke check")
    scale = TINY if args.tiny else PAPER
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    torch.manual_seed(0)
    peak = matmul_peak(device, dtype, 8192 if device.type == "cuda" else 512)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device: {name}; {dtype} matmul peak measured: {peak / 1e12:.1f} TFLOP/s")
    encoder = build_text_encoder(scale, device, dtype)
    print(
        f"text tower: {_params(encoder.backbone) / 1e9:.2f} B params, "
        f"{_params(encoder, trainable=True) / 1e6:.1f} M trainable (LoRA + latent pooling)"
    )
    rows = [
        (
            f"MNTP step, {scale.text_batch} x {scale.text_len} tok",
            "steps/s",
            *bench_mntp(encoder, scale, device),
        ),
        (
            f"contrastive step, 3 x {scale.text_batch} x {scale.text_len // 2} tok",
            "steps/s",
            *bench_contrastive(encoder, scale, device),
        ),
        (f"encode, {scale.text_len // 2}-token reports", "reports/s", *bench_encode(encoder, scale, device)),
        (
            f"CLIP step, {scale.vit} @ {scale.image_size}px + LoRA text, batch {scale.clip_batch}",
            "steps/s",
            *bench_clip(encoder, scale, device),
        ),
    ]
    print("| benchmark | rate | unit | achieved TFLOP/s | % of measured peak |\n|---|---|---|---|---|")
    for label, unit, rate, flops in rows:
        print(f"| {label} | {rate:.2f} | {unit} | {flops / 1e12:.3f} | {100 * flops / peak:.0f}% |")


if __name__ == "__main__":
    main()
