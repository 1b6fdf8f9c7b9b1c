"""Report-encoding throughput of SmolLM2-135M: lexray's TextEncoder.encode vs naive padded transformers loops.

Texts are real Open-i reports (findings + impression, in archive order), so the length distribution is
the real one. Rows, all in the same run on the same model weights:

* **naive, pad to max_length**: tokenizer(padding="max_length") in file order, AutoModel forward, mean pool;
* **naive, pad to longest**: tokenizer(padding=True) in file order (the usual loop);
* **naive, length-sorted**: the same loop over texts sorted by token length, fixed-size slices;
* **lexray encode**: batches cut where padding costs least (``plan_batches``), bidirectional mask, mean
  pooling.

FLOP/s counts the useful work only (real, non-padding tokens): 2 x non-embedding parameters per token
plus attention (4 x layers x hidden x T per token), divided by wall time, and is compared with the
machine's measured matmul peak in the same dtype (a 2048 x 2048 x 2048 matmul, same thread count; the best
of a measurement before and one after the rows, so a slow moment of a shared machine does not lower it).
``--dtype bfloat16`` runs every row (and the peak) in bf16: CPUs with AVX512-BF16 multiply bf16 several
times faster than fp32.

    python benchmarks/encode_throughput.py --openi ../shared/data/openi --n 256 --batch-size 32
    python benchmarks/encode_throughput.py --openi ../shared/data/openi --n 256 --batch-size 32 --dtype bfloat16
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from lexray import models


def matmul_peak(dtype: torch.dtype, n: int = 2048, repeats: int = 5) -> float:
    """Measured matmul throughput (FLOP/s) in ``dtype``: best of ``repeats`` n x n x n products."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def useful_flops(token_counts: list[int], n_params: int, n_layers: int, hidden: int) -> float:
    """Forward FLOPs on real tokens: 2 x params per token + 4 x layers x hidden x T per token (attention)."""
    return sum(2 * n_params * t + 4 * n_layers * hidden * t * t for t in token_counts)


def naive_loop(
    model, tokenizer, texts: list[str], batch_size: int, max_length: int, padding: str, sort: bool = False
) -> float:
    """The loop found in most research code: padded batches, masked mean. Returns seconds.

    File order unless ``sort``: then texts go longest first in fixed-size slices (sorting included).
    """
    t0 = time.perf_counter()
    if sort:
        lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]]
        texts = [texts[i] for i in sorted(range(len(texts)), key=lengths.__getitem__, reverse=True)]
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            enc = tokenizer(
                texts[start : start + batch_size],
                padding=padding,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            )
            hidden = model(**enc).last_hidden_state  # (B, T, D)
            mask = enc["attention_mask"].unsqueeze(-1).float()
            _ = (hidden * mask).sum(1) / mask.sum(1)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--openi", type=Path, default=Path("../shared/data/openi"), help="Open-i folder or .tgz"
    )
    parser.add_argument("--model", default="smollm2-135m", help="model reference (alias, dir or hub id)")
    parser.add_argument("--n", type=int, default=256, help="reports to encode")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    parser.add_argument(
        "--dtype", default="float32", choices=["float32", "bfloat16"], help="weights and peak"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from transformers import AutoModel, AutoTokenizer

    from lexray.data.sources.openi import load_openi
    from lexray.text import TextEncoder

    studies = load_openi(args.openi).studies
    texts = [s.report_text for s in studies if s.report_text][: args.n]
    directory = models.local_path(args.model)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    dtype = getattr(torch, args.dtype)
    model = AutoModel.from_pretrained(directory, dtype=dtype).eval()
    encoder = TextEncoder.from_pretrained(
        args.model, pooling="mean", max_length=args.max_length, dtype=args.dtype
    ).eval()
    cfg = model.config
    n_params = sum(p.numel() for n, p in model.named_parameters() if "embed" not in n)
    counts = [len(tokenizer(t, truncation=True, max_length=args.max_length)["input_ids"]) for t in texts]
    flops = useful_flops(counts, n_params, cfg.num_hidden_layers, cfg.hidden_size)

    peak_before = matmul_peak(dtype)
    encoder.encode(texts[: args.batch_size], batch_size=args.batch_size)  # warm-up
    rows = []
    for name, fn in (
        (
            "naive, pad to max_length",
            lambda: naive_loop(model, tokenizer, texts, args.batch_size, args.max_length, "max_length"),
        ),
        (
            "naive, pad to longest",
            lambda: naive_loop(model, tokenizer, texts, args.batch_size, args.max_length, "longest"),
        ),
        (
            "naive, length-sorted",
            lambda: naive_loop(
                model, tokenizer, texts, args.batch_size, args.max_length, "longest", sort=True
            ),
        ),
        (
            "lexray encode",
            lambda: _timed(lambda: encoder.encode(texts, batch_size=args.batch_size)),
        ),
    ):
        seconds = fn()
        rows.append((name, seconds))
    peak = max(peak_before, matmul_peak(dtype))

    table = Table(
        title=f"{args.model}: {len(texts)} Open-i reports, mean {sum(counts) / len(counts):.0f} tokens, "
        f"batch {args.batch_size}, {torch.get_num_threads()} threads, {args.dtype}; "
        f"matmul peak {peak / 1e9:.0f} GFLOP/s"
    )
    for col in ("method", "reports/s", "speed-up vs longest", "useful GFLOP/s", "% of matmul peak"):
        table.add_column(col, justify="right" if col != "method" else "left")
    base = dict(rows)["naive, pad to longest"]
    for name, seconds in rows:
        rate = flops / seconds
        table.add_row(
            name,
            f"{len(texts) / seconds:.1f}",
            f"{base / seconds:.2f}x",
            f"{rate / 1e9:.1f}",
            f"{100 * rate / peak:.0f}%",
        )
    Console().print(table)


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
