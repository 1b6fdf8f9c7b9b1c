"""Embedding batches cut by token length, where padding costs least."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# What one extra forward costs, in padded tokens (kernel launches, Python, small-matrix inefficiency).
# It keeps plan_batches from cutting a batch to save a few padding tokens; see BENCHMARKS.md for the sweep.
BATCH_OVERHEAD_TOKENS = 16


def plan_batches(
    lengths: Sequence[int], max_batch: int, overhead: int = BATCH_OVERHEAD_TOKENS
) -> list[list[int]]:
    """Split texts into batches of similar token length with the least padded work.

    Sorts by length (longest first) and cuts the sorted order where the total cost, padded tokens
    (batch size x its longest text) plus ``overhead`` per batch, is smallest, with at most
    ``max_batch`` texts per batch (dynamic programming over cut points). Fixed-size slices of the
    sorted order waste much more: one truncated outlier pads its whole batch to ``max_length``.

    Returns:
        Index lists into ``lengths``, in the order to run them.
    """
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    longest = np.array([lengths[i] for i in order], dtype=np.int64)  # descending
    n = len(order)
    best = np.zeros(n + 1, dtype=np.int64)  # best[i]: cheapest cost of the first i sorted texts
    cut = np.zeros(n + 1, dtype=np.int64)  # cut[i]: where the last batch of that plan starts
    for end in range(1, n + 1):
        starts = np.arange(max(0, end - max_batch), end)
        # A batch [start, end) is padded to its first (longest) text.
        costs = best[starts] + (end - starts) * longest[starts] + overhead
        k = int(np.argmin(costs))
        best[end], cut[end] = costs[k], starts[k]
    batches = []
    end = n
    while end > 0:
        start = int(cut[end])
        batches.append(order[start:end])
        end = start
    return batches[::-1]
