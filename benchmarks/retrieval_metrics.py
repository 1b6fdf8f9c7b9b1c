"""Time and peak memory of exact retrieval metrics vs the bare matrix product and a naive full-matrix method.

Each measurement runs in a fresh subprocess so its peak resident memory (``ru_maxrss``) is its own.
Embeddings are random unit vectors (queries = keys + noise) made inside the subprocess before timing.

* ``matmul``: the bare blockwise product Q @ K.T with the same block size, results discarded — the floor.
* ``lexray``: :func:`lexray.evaluate.retrieval.retrieval_ranks` (exact, pessimistic ties) + summary.
* ``naive``: the usual research-code method: the full N x N similarity, ``argsort`` of every row, and the
  position of the true key (open_clip's ``get_clip_metrics``). Run only at a size where it fits.

Usage: python benchmarks/retrieval_metrics.py [--n 100000] [--dim 512] [--naive-n 20000]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np


def _embeddings(n: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    k = rng.standard_normal((n, dim), dtype=np.float32)
    # In place, so generating the inputs does not raise the peak above the two matrices themselves.
    q = rng.standard_normal((n, dim), dtype=np.float32)
    q *= 6.0
    q += k
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    k /= np.linalg.norm(k, axis=1, keepdims=True)
    return q, k


def _worker(method: str, n: int, dim: int, block_mb: int) -> dict:
    import torch

    from lexray.evaluate.retrieval import retrieval_ranks, summarize_ranks

    q, k = _embeddings(n, dim)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    groups = np.arange(n)
    t0 = time.perf_counter()
    if method == "matmul":
        qt, kt = torch.from_numpy(q), torch.from_numpy(k)
        rows = min(n, max(1, block_mb * 2**20 // (4 * n)))
        buf = torch.empty((rows, n), dtype=torch.float32)  # reused, as in lexray's loop
        for s in range(0, n, rows):
            e = min(s + rows, n)
            torch.mm(qt[s:e], kt.T, out=buf[: e - s])  # (B, N)
        hit1 = float("nan")
    elif method == "lexray":
        res = retrieval_ranks(q, k, groups, groups, block_bytes=block_mb * 2**20)
        hit1 = summarize_ranks(res)["hit@1"]
    elif method == "naive":
        logits = torch.from_numpy(q) @ torch.from_numpy(k).T  # (N, N)
        ranking = torch.argsort(logits, dim=1, descending=True)
        preds = torch.where(ranking == torch.arange(n)[:, None])[1].numpy()
        hit1 = float(100 * np.mean(preds < 1))
    else:
        raise ValueError(method)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": seconds, "peak_mib": peak, "peak_above_inputs_mib": peak - rss_before, "hit@1": hit1}


def _run(method: str, n: int, dim: int, block_mb: int) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        method,
        "--n",
        str(n),
        "--dim",
        str(dim),
        "--block-mb",
        str(block_mb),
    ]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--naive-n", type=int, default=20_000)
    parser.add_argument("--block-mb", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=1, help="runs per row; the fastest is kept")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(_worker(args.worker, args.n, args.dim, args.block_mb)))
        return

    plan = [("matmul", args.naive_n), ("lexray", args.naive_n), ("naive", args.naive_n)]
    if args.n != args.naive_n:
        plan += [("matmul", args.n), ("lexray", args.n)]
    results = {}
    for method, n in plan:
        runs = [_run(method, n, args.dim, args.block_mb) for _ in range(args.repeats)]
        results[(method, n)] = min(runs, key=lambda r: r["seconds"])
        print(f"{method} N={n}: {results[(method, n)]}", file=sys.stderr, flush=True)
    header = "| method | N | D | seconds | x matmul | peak RSS MiB | peak above inputs MiB | hit@1 |"
    print(header)
    print("|---|---|---|---|---|---|---|---|")
    for (method, n), r in results.items():
        base = results[("matmul", n)]["seconds"]
        print(
            f"| {method} | {n:,} | {args.dim} | {r['seconds']:.1f} | {r['seconds'] / base:.2f} | "
            f"{r['peak_mib']:.0f} | {r['peak_above_inputs_mib']:.0f} | {r['hit@1']:.2f} |"
        )


if __name__ == "__main__":
    main()
