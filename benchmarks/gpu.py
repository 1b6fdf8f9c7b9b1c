"""GPU throughput of lexray's training and encoding paths at the published scale (one CUDA GPU).

Measures, with lexray's own modules and training kit on randomly initialised weights (no downloads):

* MNTP training steps/s of a Llama-3.2-1B-sized bidirectional encoder with LoRA r=16 (q/k/v/o);
* supervised contrastive steps/s (anchor + positive + one hard negative per row, InfoNCE x 50), in one
  forward per role and with GradCache chunks (the paper text recipe's ``chunk_size``);
* CLIP steps/s and images/s: the paper recipe's EVA02-L/14 at 448 px (timm ``eva02_large_patch14_448``,
  random init, fully trained) + the 1B text tower with LoRA, symmetric CLIP loss;
* encode throughput (reports/s) of the 1B text tower;

each training step in bf16 autocast and in fp16 autocast with Accelerate's loss scaler, through
lexray's optimiser step (``lexray.training``: AdamW groups, schedule, clipping, unscaling), with peak
memory and achieved TFLOP/s (analytic FLOPs: 2·N·T forward, +2·N·T for activation gradients of frozen
weights, +2·N_trainable·T for weight gradients, plus attention) next to a bf16 matmul peak measured in
the same run. About 5 minutes on one H100/H200. ``--tiny`` runs the same code on CPU at toy size in
seconds (a smoke check, not a measurement; a CPU has no fp16 loss scaler, so its fp16 rows run fp32).

    python benchmarks/gpu.py            # on a CUDA machine
    python benchmarks/gpu.py --tiny     # anywhere
"""

from __future__ import annotations

import argparse
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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
PAPER = Scale(2048, 16, 32, 8, 8192, 128256, 32, 512, "eva02_large_patch14_448", 448, 32, 256, 10, 3)
TINY = Scale(64, 2, 4, 2, 128, 512, 4, 32, "eva02_tiny_patch14_224", 56, 4, 32, 2, 1)
PRECISIONS = ("bf16", "fp16")


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


def peak_memory(device: torch.device) -> float:
    """Peak bytes since the last reset: CUDA allocations, or the process's peak RSS on a CPU."""
    if device.type == "cuda":
        return float(torch.cuda.max_memory_allocated(device))
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024.0


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def accelerator_for(precision: str) -> Any:
    """A fresh one-process Accelerator in ``precision`` (Accelerate keeps one precision per process)."""
    from accelerate.state import AcceleratorState

    from lexray.training import make_accelerator

    AcceleratorState._reset_state(reset_partial_state=True)
    return make_accelerator(precision)


def train_loop(
    accelerator: Any, model: nn.Module, lr: float, backward_of: Callable[[nn.Module], None]
) -> tuple[Callable[[], None], Callable[[], nn.Module]]:
    """(one lexray training step, undo) for ``model``: ``backward_of(prepared)`` runs forward + backward."""
    from lexray.training import build_adamw, lr_schedule, optimizer_step, param_groups

    optimizer = build_adamw(param_groups(model, lr, 0.05), lr)
    scheduler = lr_schedule(optimizer, 0, 10**6)
    prepared, optimizer = accelerator.prepare(model, optimizer)

    def step() -> None:
        backward_of(prepared)
        optimizer_step(accelerator, prepared, optimizer, scheduler, grad_clip=5.0)

    def undo() -> nn.Module:
        # Drop Accelerate's autocast wrapper so the next precision starts from the plain module.
        unwrapped = accelerator.unwrap_model(prepared, keep_fp32_wrapper=False)
        accelerator.free_memory()
        return unwrapped

    return step, undo


def bench_mntp(encoder, scale: Scale, device: torch.device, precision: str) -> tuple[float, float, float]:
    """(steps/s, FLOP/s, peak bytes) of one MNTP step: mask, forward, masked next-token loss, update."""
    from lexray.text.mntp import MNTPHead, MNTPLoss, mask_batch

    accelerator = accelerator_for(precision)
    loss_fn = MNTPLoss(MNTPHead(encoder.base_model().get_input_embeddings().weight.detach()))
    batch = _token_batch(scale, scale.text_batch, scale.text_len, device)

    def backward(model: nn.Module) -> None:
        masked, labels = mask_batch({k: v.cpu() for k, v in batch.items()}, 0.2, 0, scale.vocab)
        hidden = model({k: v.to(device) for k, v in masked.items()}, pool=False)
        with accelerator.autocast():
            loss = sum(loss_fn(hidden, labels).values())
        accelerator.backward(loss)

    step, undo = train_loop(accelerator, encoder, 1e-4, backward)
    reset_peak(device)
    sec = timed(step, scale.steps, scale.warmup, device)
    peak = peak_memory(device)
    undo()
    tokens = scale.text_batch * scale.text_len
    return 1 / sec, _text_flops(encoder, scale, tokens, scale.text_len, backward=True) / sec, peak


def bench_contrastive(
    encoder, scale: Scale, device: torch.device, precision: str, chunk: int
) -> tuple[float, float, float]:
    """(steps/s, FLOP/s, peak bytes) of a contrastive step with one hard negative per anchor.

    ``chunk`` > 0 embeds through GradCache in chunks of that many rows (the fp16 path whose surrogate
    backward must be loss-scaled), 0 embeds each role in one forward.
    """
    from lexray.text.contrastive import InfoNCELoss, grad_cache_backward

    accelerator = accelerator_for(precision)
    loss_fn = InfoNCELoss(scale=50.0)
    length = scale.text_len // 2
    parts = [_token_batch(scale, scale.text_batch, length, device) for _ in range(3)]

    def backward(model: nn.Module) -> None:
        if chunk:
            # GradCache items are (role, row) pairs; a chunk never mixes roles (one group per role)
            groups = [[(role, i) for i in range(scale.text_batch)] for role in range(3)]

            def embed(items: list[tuple[int, int]]) -> torch.Tensor:
                role, rows = items[0][0], [i for _, i in items]
                return model({k: v[rows] for k, v in parts[role].items()})

            grad_cache_backward(
                embed, groups, lambda r: loss_fn(r[0], r[1], r[2]), chunk, backward=accelerator.backward
            )
            return
        a, p, n = (model(b) for b in parts)  # (B, D) each
        with accelerator.autocast():
            loss = sum(loss_fn(a, p, n).values())
        accelerator.backward(loss)

    step, undo = train_loop(accelerator, encoder, 1e-4, backward)
    reset_peak(device)
    sec = timed(step, scale.steps, scale.warmup, device)
    peak = peak_memory(device)
    undo()
    tokens = 3 * scale.text_batch * length
    flops = _text_flops(encoder, scale, tokens, length, backward=True)
    if chunk:  # GradCache's first, graph-free forward is extra work on top of the usual step
        flops += _text_flops(encoder, scale, tokens, length, backward=False)
    return 1 / sec, flops / sec, peak


def bench_encode(encoder, scale: Scale, device: torch.device, precision: str) -> tuple[float, float, float]:
    """(reports/s, FLOP/s, peak bytes) of no-grad encoding, 256-token reports."""
    length = scale.text_len // 2
    batch = _token_batch(scale, 4 * scale.text_batch, length, device)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16

    @torch.no_grad()
    def step() -> None:
        with torch.autocast(device.type, dtype=dtype):
            encoder(batch)

    reset_peak(device)
    sec = timed(step, scale.steps, scale.warmup, device)
    n = batch["input_ids"].shape[0]
    return n / sec, _text_flops(encoder, scale, n * length, length, backward=False) / sec, peak_memory(device)


def build_clip(encoder, scale: Scale, device: torch.device):  # -> DualEncoder
    """The paper's dual encoder at random init: EVA02-L/14 at 448 px + the LoRA text tower."""
    from lexray.clip.config import DualEncoderConfig, TextTowerConfig
    from lexray.clip.model import DualEncoder
    from lexray.vision.towers import VisionConfig

    config = DualEncoderConfig(
        vision=VisionConfig(
            kind="timm", model=scale.vit, image_size=scale.image_size, gradient_checkpointing=False
        ),
        text=TextTowerConfig(encoder="random-llama", mode="lora", max_length=scale.clip_text_len),
        embed_dim=1280,
    )
    return DualEncoder.from_config(config, text_tower=encoder).to(device)


def bench_clip(
    model, encoder, scale: Scale, device: torch.device, precision: str
) -> tuple[float, float, float]:
    """(steps/s, FLOP/s, peak bytes) of a CLIP step: EVA02-L/14 at 448 px fully trained + LoRA text."""
    from lexray.clip.losses import ClipLoss

    accelerator = accelerator_for(precision)
    loss_fn = ClipLoss()
    images = torch.randn(scale.clip_batch, 3, scale.image_size, scale.image_size, device=device)
    texts = _token_batch(scale, scale.clip_batch, scale.clip_text_len, device)

    def backward(prepared: nn.Module) -> None:
        out = prepared(images, texts)
        with accelerator.autocast():
            loss = sum(loss_fn(**out).values())
        accelerator.backward(loss)

    step, undo = train_loop(accelerator, model, 1e-5, backward)
    reset_peak(device)
    sec = timed(step, scale.steps, scale.warmup, device)
    peak = peak_memory(device)
    undo()
    vit_params = _params(model.image_tower)
    patches = (scale.image_size // 14) ** 2
    vit_flops = 6 * vit_params * patches * scale.clip_batch  # fully trained: fwd + both backward halves
    text = _text_flops(
        encoder, scale, scale.clip_batch * scale.clip_text_len, scale.clip_text_len, backward=True
    )
    return 1 / sec, (vit_flops + text) / sec, peak


def main() -> None:
    """Run every benchmark in bf16 and fp16 and print one table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tiny", action="store_true", help="toy sizes on any device (smoke check)")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type != "cuda" and not args.tiny:
        raise SystemExit("no CUDA device: run on a GPU machine, or pass --tiny for a CPU smoke check")
    scale = TINY if args.tiny else PAPER
    started = time.perf_counter()
    torch.manual_seed(0)
    peak = matmul_peak(device, torch.bfloat16, 8192 if device.type == "cuda" else 512)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device: {name}; bf16 matmul peak measured: {peak / 1e12:.1f} TFLOP/s")
    # bf16 frozen weights on a GPU (the paper's); fp32 on a CPU, whose bf16 kernels vary by model
    encoder = build_text_encoder(scale, device, torch.bfloat16 if device.type == "cuda" else torch.float32)
    print(
        f"text tower: {_params(encoder.backbone) / 1e9:.2f} B params, "
        f"{_params(encoder, trainable=True) / 1e6:.1f} M trainable (LoRA + latent pooling)"
    )
    clip = build_clip(encoder, scale, device)
    print(
        f"image tower: {scale.vit} at {scale.image_size} px, {_params(clip.image_tower) / 1e6:.0f} M params (all trained)"
    )
    chunk = max(1, scale.text_batch // 4)
    rows = []
    for precision in PRECISIONS:
        rows += [
            (
                f"MNTP step, {scale.text_batch} x {scale.text_len} tok",
                precision,
                "steps/s",
                *bench_mntp(encoder, scale, device, precision),
            ),
            (
                f"contrastive step, 3 x {scale.text_batch} x {scale.text_len // 2} tok",
                precision,
                "steps/s",
                *bench_contrastive(encoder, scale, device, precision, 0),
            ),
            (
                f"contrastive step, GradCache chunks of {chunk}",
                precision,
                "steps/s",
                *bench_contrastive(encoder, scale, device, precision, chunk),
            ),
            (
                f"encode, {scale.text_len // 2}-token reports",
                precision,
                "reports/s",
                *bench_encode(encoder, scale, device, precision),
            ),
        ]
        sps, flops, mem = bench_clip(clip, encoder, scale, device, precision)
        label = f"CLIP step, {scale.vit} @ {scale.image_size}px + LoRA text, batch {scale.clip_batch}"
        rows += [
            (label, precision, "steps/s", sps, flops, mem),
            (label, precision, "images/s", sps * scale.clip_batch, flops, mem),
        ]
    print("| benchmark | precision | rate | unit | peak memory GiB | achieved TFLOP/s | % of bf16 peak |")
    print("|---|---|---|---|---|---|---|")
    for label, precision, unit, rate, flops, mem in rows:
        print(
            f"| {label} | {precision} | {rate:.2f} | {unit} | {mem / 2**30:.1f} | {flops / 1e12:.3f} | {100 * flops / peak:.0f}% |"
        )
    print(f"total wall time: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
