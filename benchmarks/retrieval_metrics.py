"""Time and peak memory of exact retrieval metrics vs the bare matrix product and a naive full-matrix method.

Each measurement runs in a fresh subprocess so its peak resident memory (``ru_maxrss``) is its own.
Embeddings are random unit vectors (queries = keys + noise) made inside the subprocess before timing.

* ``matmul``: the bare blockwise product Q @ K.T with the same block size, results discarded — the floor.
* ``lexray``: :func:`lexray.ranking.retrieval_ranks` (exact, pessimistic ties) + summary.
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
    for m in (q, k):
        for s in range(0, n, 8192):  # normalise in chunks: no full-size temporaries
            m[s : s + 8192] /= np.linalg.norm(m[s : s + 8192], axis=1, keepdims=True)
    return q, k


def _matmul(q: np.ndarray, k: np.ndarray, block_mb: int) -> None:
    """The floor: the same blockwise product into a reused buffer, results discarded."""
    import torch

    n = len(k)
    qt, kt = torch.from_numpy(q), torch.from_numpy(k)
    rows = min(len(q), max(1, block_mb * 2**20 // (4 * n)))
    buf = torch.empty((rows, n), dtype=torch.float32)
    for s in range(0, len(q), rows):
        e = min(s + rows, len(q))
        torch.mm(qt[s:e], kt.T, out=buf[: e - s])  # (B, N)


def _worker(method: str, n: int, dim: int, block_mb: int, repeats: int = 1) -> dict:
    import torch

    from lexray.ranking import retrieval_ranks, summarize_ranks

    q, k = _embeddings(n, dim)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    groups = np.arange(n)
    if method == "interleaved":
        # Alternate the two methods in one process and keep each one's fastest run: on a shared machine
        # the load changes from minute to minute, and this keeps the ratio honest.
        best = {"matmul": float("inf"), "lexray": float("inf")}
        for _ in range(repeats):
            for name in best:
                t = time.perf_counter()
                _matmul(q, k, block_mb) if name == "matmul" else retrieval_ranks(
                    q, k, groups, groups, block_bytes=block_mb * 2**20
                )
                best[name] = min(best[name], time.perf_counter() - t)
        return {
            "seconds": best["lexray"],
            "matmul_seconds": best["matmul"],
            "ratio": best["lexray"] / best["matmul"],
        }
    t0 = time.perf_counter()
    if method == "matmul":
        _matmul(q, k, block_mb)
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


def _run(method: str, n: int, dim: int, block_mb: int, repeats: int = 1) -> dict:
    cmd = [sys.executable, __file__, "--worker", method, "--n", str(n), "--dim", str(dim)]
    cmd += ["--block-mb", str(block_mb), "--repeats", str(repeats)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="N for the isolated matmul/lexray runs")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--naive-n", type=int, default=20_000, help="N where the naive method still fits")
    parser.add_argument("--block-mb", type=int, default=256)
    parser.add_argument(
        "--interleave-n", type=int, default=20_000, help="N of the interleaved timing (0: skip)"
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="interleaved runs per method; the fastest is kept"
    )
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(_worker(args.worker, args.n, args.dim, args.block_mb, args.repeats)))
        return

    plan = [("matmul", args.naive_n), ("lexray", args.naive_n), ("naive", args.naive_n)]
    if args.n != args.naive_n:
        plan += [("matmul", args.n), ("lexray", args.n)]
    results = {}
    for method, n in plan:
        results[(method, n)] = _run(method, n, args.dim, args.block_mb)
        print(f"{method} N={n}: {results[(method, n)]}", file=sys.stderr, flush=True)
    print("Isolated runs (one subprocess each; peak = max resident set size of that process):\n")
    print("| method | N | D | seconds | x matmul | peak RSS MiB | peak above inputs MiB | hit@1 |")
    print("|---|---|---|---|---|---|---|---|")
    for (method, n), r in results.items():
        base = results[("matmul", n)]["seconds"]
        print(
            f"| {method} | {n:,} | {args.dim} | {r['seconds']:.1f} | {r['seconds'] / base:.2f} | "
            f"{r['peak_mib']:.0f} | {r['peak_above_inputs_mib']:.0f} | {r['hit@1']:.2f} |"
        )
    if args.interleave_n:
        r = _run("interleaved", args.interleave_n, args.dim, args.block_mb, args.repeats)
        print(f"\nInterleaved in one process, fastest of {args.repeats} each (robust to machine load):\n")
        print("| N | D | matmul s | lexray s | lexray / matmul |")
        print("|---|---|---|---|---|")
        print(
            f"| {args.interleave_n:,} | {args.dim} | {r['matmul_seconds']:.2f} | {r['seconds']:.2f} | {r['ratio']:.2f} |"
        )


if __name__ == "__main__":
    main()
