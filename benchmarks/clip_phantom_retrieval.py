"""Phantom retrieval on the Open-i R2Gen test split: trained dual encoders vs random ranking.

Each run directory is a ``lexray clip train`` run (its best model is used). Images are the SYNTHETIC
phantoms of the test studies, texts their real reports. Two ground truths:

* **group**: a retrieved report counts when its rendered findings equal the true report's (the
  phantom's own ground truth: many reports are normal and render alike, so this is the fair ceiling);
* **exact**: only the true report counts (the published protocol).

The random-ranking row is the expected hit rate of a model that ranks at random, computed exactly from
the group sizes of the same split.

    python benchmarks/clip_phantom_retrieval.py runs/clip-phantom runs/clip-phantom-minilm
"""

from __future__ import annotations

import argparse
import math
import time
from collections import Counter
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from lexray.clip import DualEncoder
from lexray.clip.data import SourceConfig, load_pairs
from lexray.clip.validate import evaluate_split

KS = (1, 5, 10)


def random_hit_rate(group_sizes: list[int], n: int, k: int) -> float:
    """Expected hit@k (%) of a random ranking: 1 - C(n - m, k) / C(n, k) averaged over queries."""
    total = 0.0
    for m in group_sizes:
        total += 1.0 - math.comb(n - m, k) / math.comb(n, k)
    return 100.0 * total / len(group_sizes)


def main() -> None:
    """Evaluate each run and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--manifest", default="runs/phantoms/manifest.parquet")
    parser.add_argument("--split", default="test")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    pairs, _ = load_pairs(SourceConfig(manifest=args.manifest, split=args.split))
    counts = Counter(p.group for p in pairs)
    n = len(pairs)
    table = Table(
        title=f"Phantom retrieval, {args.split} split ({n} studies, {len(counts)} distinct findings)"
    )
    for col in [
        "model",
        "text tower",
        *[f"i2t group R@{k}" for k in KS],
        *[f"i2t exact R@{k}" for k in KS],
        "t2i exact R@10",
        "s",
    ]:
        table.add_column(col, justify="right" if col not in ("model", "text tower") else "left")
    group_sizes = [counts[p.group] for p in pairs]
    table.add_row(
        "random ranking",
        "-",
        *[f"{random_hit_rate(group_sizes, n, k):.1f}" for k in KS],
        *[f"{random_hit_rate([1] * n, n, k):.1f}" for k in KS],
        f"{random_hit_rate([1] * n, n, 10):.1f}",
        "-",
    )
    for run in args.runs:
        t = time.perf_counter()
        model = DualEncoder.from_pretrained(run)
        if model.text_frozen:
            model.attach_text_cache()
        m = evaluate_split(model, args.manifest, args.split, KS)
        table.add_row(
            str(run),
            model.config.text.encoder,
            *[f"{m[f'group/i2t/R@{k}']:.1f}" for k in KS],
            *[f"{m[f'exact/i2t/R@{k}']:.1f}" for k in KS],
            f"{m['exact/t2i/R@10']:.1f}",
            f"{time.perf_counter() - t:.0f}",
        )
    console = Console(width=200)
    console.print(table)
    console.print("hit@K in %; SYNTHETIC phantom images, real Open-i report text.")


if __name__ == "__main__":
    main()
