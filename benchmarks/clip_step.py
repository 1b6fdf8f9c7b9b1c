"""Training-step throughput: frozen text tower with cached features vs recomputing it every step.

Same model (small CNN image tower + SmolLM2-135M frozen report tower), same batches of real Open-i
reports paired with phantom images, same optimizer; the only difference is where the report features
come from: the on-disk cache (LLM2CLIP) or a forward pass of the LLM at every step.

    python benchmarks/clip_step.py --steps 10 --batch-size 32

Prints a table of steps/s, the speed-up, and the machine's measured fp32 matmul rate for reference.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from lexray.clip import ClipLoss, DualEncoder, DualEncoderConfig, TextTowerConfig
from lexray.clip.train import OptimConfig, build_optimizer
from lexray.phantoms import PhantomFindings, render_phantom
from lexray.vision import VisionConfig

REPO = Path(__file__).resolve().parents[1]


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    """Measured fp32 matmul rate of this machine (GFLOP/s)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - t) / 1e9


def load_reports(openi: Path, n: int) -> list[str]:
    """The first ``n`` distinct train-split Open-i reports (read from ../shared, never copied)."""
    from lexray.data.sources.openi import load_openi

    result = load_openi(openi / "NLMCXR_reports.tgz", split_file=openi / "r2gen_split.json")
    seen: dict[str, None] = {}
    for s in result.studies:
        if s.split == "train" and s.report_text:
            seen.setdefault(s.report_text, None)
        if len(seen) == n:
            break
    return list(seen)


def run(mode: str, model: DualEncoder, batches: list[tuple[torch.Tensor, list[str]]], steps: int) -> float:
    """Steps/s of ``steps`` optimizer steps (after one warm-up step) in ``mode`` "cached" or "recompute"."""
    optimizer = build_optimizer(model, OptimConfig(lr=1e-4))
    loss_fn = ClipLoss()

    def step(pixels: torch.Tensor, texts: list[str]) -> None:
        text_in = model.text_features(texts) if mode == "cached" else model.text_tower.tokenize(texts)
        out = model(pixels, text_in)
        loss = sum(loss_fn(out["image"], out["text"], out["logit_scale"]).values())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    model.train()
    model.text_tower.eval()
    step(*batches[0])
    t = time.perf_counter()
    for i in range(steps):
        step(*batches[i % len(batches)])
    return steps / (time.perf_counter() - t)


def main() -> None:
    """Parse arguments, build the model, time both modes, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--text", default="smollm2-135m", help="text tower reference")
    parser.add_argument("--openi", type=Path, default=REPO.parent / "shared" / "data" / "openi")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    n = args.batch_size * max(2, min(args.steps, 4))
    texts = load_reports(args.openi, n)
    images = [render_phantom(PhantomFindings(), f"bench-{i}", 256) for i in range(n)]
    config = DualEncoderConfig(
        vision=VisionConfig(kind="small_cnn", image_size=args.image_size, cnn_widths=(16, 32, 64, 96, 128)),
        text=TextTowerConfig(encoder=args.text, mode="frozen", max_length=192),
        embed_dim=256,
        projection="mlp",
    )
    model = DualEncoder.from_config(config)
    pre = model.image_tower.preprocess
    batches = [
        (pre.batch(images[i : i + args.batch_size]), texts[i : i + args.batch_size])
        for i in range(0, n, args.batch_size)
    ]
    state = {k: v.clone() for k, v in model.state_dict().items()}

    recompute = run("recompute", model, batches, args.steps)
    model.load_state_dict(state)
    with tempfile.TemporaryDirectory() as cache_dir:
        model.attach_text_cache(cache_dir)
        t = time.perf_counter()
        model.text_features(texts)  # the one-off pass that fills the cache
        fill = time.perf_counter() - t
        cached = run("cached", model, batches, args.steps)

    table = Table(title=f"CLIP training step, batch {args.batch_size}, {args.image_size} px, {args.text}")
    table.add_column("text tower")
    table.add_column("steps/s", justify="right")
    table.add_column("s/step", justify="right")
    table.add_column("speed-up", justify="right")
    table.add_row("recomputed every step (baseline)", f"{recompute:.3f}", f"{1 / recompute:.2f}", "1.0x")
    table.add_row(
        "frozen, cached features (ours)", f"{cached:.3f}", f"{1 / cached:.2f}", f"{cached / recompute:.1f}x"
    )
    console = Console()
    console.print(table)
    console.print(
        f"one-off cache fill: {fill:.1f} s for {len(texts)} reports; "
        f"machine fp32 matmul: {matmul_gflops():.0f} GFLOP/s; threads: {args.threads}; "
        f"mean report length: {np.mean([len(t) for t in texts]):.0f} chars"
    )


if __name__ == "__main__":
    main()
