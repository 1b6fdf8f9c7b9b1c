"""Exact retrieval metrics computed blockwise: ranks, hit rate (CXR "Recall@K"), true recall@k, MRR.

A kit module below every stage: evaluation (:mod:`lexray.evaluate`) and the training loops' validation
(:mod:`lexray.clip.validate`) score with the same rules, and neither imports the other.

Protocol (stated because published CXR numbers differ on exactly these points):

* **Rank.** For query ``i`` with positive key set ``P_i`` (keys whose group equals the query's group),
  the rank of the first positive is ``1 + #{negative keys j : s_ij > p_i}`` with ``p_i = max_{j in P_i}
  s_ij`` (``ties="optimistic"``) or ``1 + #{negative keys j : s_ij >= p_i}`` (``ties="pessimistic"``,
  the default: a negative tied with the best positive is counted ahead, so a collapsed model that gives
  every key the same score gets rank N, not 1). Ties are therefore resolved by rule, never by sort order.
* **hit@k** (accuracy@k, hit rate) is the share of queries whose rank is <= k. This is what CXR papers
  call "Recall@K". With one positive per query it equals true recall@k.
* **recall@k** (true recall) is the mean over queries of ``|P_i within the top k| / |P_i|`` with the
  same tie rule; it differs from hit@k only when queries have several positives.
* **exact-pair** vs **duplicate-aware** is a choice of groups made by the caller (see
  :mod:`lexray.evaluate.protocol`): a study's own id, or the id of its normalised report text.

Scores are computed one block of query rows at a time against all keys, so peak memory is the two
embedding matrices plus one ``(rows, keys)`` block; the best positive score is taken from the very
block it is compared in (never recomputed by a second product whose rounding could differ). Identical
key vectors are merged first and counted with their multiplicity, so exactly duplicated reports tie
exactly, whatever kernel the matrix product used.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from tqdm.auto import tqdm

log = logging.getLogger(__name__)

Ties = Literal["pessimistic", "optimistic"]
DEFAULT_KS: tuple[int, ...] = (1, 5, 10, 50)


@dataclass(frozen=True)
class RankResult:
    """Per-query outcome of one retrieval direction."""

    ranks: np.ndarray  # (Nq,) int64 rank of the best positive, 1-based
    n_positives: np.ndarray  # (Nq,) int64 number of positive keys of each query
    recall_hits: dict[int, np.ndarray] | None = None  # k -> (Nq,) positives within the top k (true recall)


def _as_matrix(x: np.ndarray | torch.Tensor, name: str) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x, dtype=np.float32) if not isinstance(x, torch.Tensor) else x)
    t = t.detach().to(torch.float32).cpu().contiguous()
    if t.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (N, D) matrix, got shape {tuple(t.shape)}")
    # A row sum is non-finite when the row holds NaN or inf (or overflows); only those rows are checked
    # element by element. One read pass instead of a full boolean matrix.
    suspect = (~torch.isfinite(t.sum(dim=1))).nonzero().ravel()
    if len(suspect):
        bad_rows = suspect[~torch.isfinite(t[suspect]).all(dim=1)]
        if len(bad_rows):
            raise ValueError(
                f"{name} row {int(bad_rows[0])} has NaN or inf values: re-embed it or drop it before evaluating"
            )
    return t


def _dedupe_rows(keys: torch.Tensor, chunk: int = 4096) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """Merge bit-identical key rows: (unique keys (U, D), key -> unique index (Nk,), multiplicity (U,)).

    Rows are hashed by their bytes with integer arithmetic (exact and independent of summation order),
    and only rows whose hashes collide are compared byte for byte. ``+ 0.0`` maps -0.0 to 0.0 first,
    since both score identically.
    """
    arr = keys.numpy()
    n, d = arr.shape
    mult = np.random.default_rng(0).integers(1, 2**63, size=d, dtype=np.uint64) | np.uint64(1)
    h = np.empty(n, dtype=np.uint64)
    for s in range(0, n, chunk):
        words = (arr[s : s + chunk] + np.float32(0)).view(np.uint32).astype(np.uint64)  # (c, D)
        h[s : s + chunk] = (words * mult).sum(axis=1)  # wraps modulo 2**64
    _, inverse, counts = np.unique(h, return_inverse=True, return_counts=True)
    inverse = inverse.ravel()
    if (counts == 1).all():
        return keys, np.arange(n), np.ones(n, dtype=np.int64)
    suspects = np.flatnonzero(counts[inverse] > 1)
    sub = np.ascontiguousarray(arr[suspects] + np.float32(0))
    rows = sub.view(np.dtype((np.void, sub.dtype.itemsize * d))).ravel()
    _, first, inv_s = np.unique(rows, return_index=True, return_inverse=True)
    rep = np.arange(n)
    rep[suspects] = suspects[first[inv_s.ravel()]]  # each row -> the first row with the same bytes
    uniq_rows, key_to_u, mult_u = np.unique(rep, return_inverse=True, return_counts=True)
    return keys[torch.as_tensor(uniq_rows)].contiguous(), key_to_u.ravel(), mult_u


def _encode_groups(query_groups: Sequence | np.ndarray, key_groups: Sequence | np.ndarray):
    qg = np.asarray(query_groups)
    kg = np.asarray(key_groups)
    labels, codes = np.unique(
        np.concatenate([qg.astype(object), kg.astype(object)]).astype(str), return_inverse=True
    )
    codes = codes.ravel()
    return codes[: len(qg)], codes[len(qg) :], len(labels)


def retrieval_ranks(
    queries: np.ndarray | torch.Tensor,
    keys: np.ndarray | torch.Tensor,
    query_groups: Sequence | np.ndarray,
    key_groups: Sequence | np.ndarray,
    *,
    ties: Ties = "pessimistic",
    recall_ks: Sequence[int] = (),
    block_bytes: int = 256 * 2**20,
    progress: bool = False,
    desc: str = "ranking",
) -> RankResult:
    """Rank of the best positive key for every query, exactly, one block of query rows at a time.

    Args:
        queries: (Nq, D) query embeddings (L2-normalised for cosine similarity; scores are dot products).
        keys: (Nk, D) key embeddings.
        query_groups: (Nq,) group label of each query; its positives are the keys with the same label.
        key_groups: (Nk,) group label of each key.
        ties: "pessimistic" (negatives tied with the best positive count ahead) or "optimistic".
        recall_ks: also count, for each k here, how many positives fall within the top k (true recall);
            costs a top-k per block, so leave empty when every query has one positive.
        block_bytes: memory for one float32 (rows, keys) score block; sets the rows per block.
        progress: show a progress bar.
        desc: progress-bar label.

    Returns:
        A :class:`RankResult` with 1-based ranks and positive counts.

    Raises:
        ValueError: mismatched shapes, non-finite values, or a query without any positive key.
    """
    if ties not in ("pessimistic", "optimistic"):
        raise ValueError(f"ties must be 'pessimistic' or 'optimistic', got {ties!r}")
    q = _as_matrix(queries, "queries")
    k = _as_matrix(keys, "keys")
    if q.shape[1] != k.shape[1]:
        raise ValueError(f"queries have dimension {q.shape[1]} but keys have {k.shape[1]}")
    if len(query_groups) != len(q) or len(key_groups) != len(k):
        raise ValueError(
            f"need one group per row: {len(q)} queries / {len(query_groups)} query groups, "
            f"{len(k)} keys / {len(key_groups)} key groups"
        )
    qg, kg, n_groups = _encode_groups(query_groups, key_groups)
    uniq, key_to_u, mult = _dedupe_rows(k)
    n_u = len(uniq)
    if n_u < len(k):
        log.info("merged %d identical key vectors into %d unique ones", len(k), n_u)

    # Positive members of every group as (unique key index, multiplicity within the group), CSR layout.
    pairs = np.unique(np.stack([kg, key_to_u], axis=1), axis=0, return_counts=True)
    pair_rows, pair_counts = pairs
    g_of_pair = pair_rows[:, 0]
    gu_flat = pair_rows[:, 1].astype(np.int64)
    gc_flat = pair_counts.astype(np.int64)
    g_ptr = np.zeros(n_groups + 1, dtype=np.int64)
    np.add.at(g_ptr, g_of_pair + 1, 1)
    g_ptr = np.cumsum(g_ptr)
    g_size = np.bincount(kg, minlength=n_groups).astype(np.int64)  # positives per group, with repeats

    no_pos = np.flatnonzero(g_size[qg] == 0)
    if len(no_pos):
        raise ValueError(
            f"{len(no_pos)} queries have no positive key (first: query {int(no_pos[0])}); every query's "
            "group must appear among the key groups"
        )

    ks_r = sorted(set(int(x) for x in recall_ks))
    if ks_r and min(ks_r) < 1:
        raise ValueError(f"recall_ks must be >= 1, got {ks_r}")
    k_top = min(max(ks_r), n_u) if ks_r else 0

    rows_per_block = max(1, int(block_bytes // (4 * max(n_u, 1))))
    # Vectors that stand for several identical keys: their extra copies are added column by column.
    dup_cols = torch.as_tensor(np.flatnonzero(mult > 1))
    dup_extra = torch.as_tensor(mult[mult > 1] - 1, dtype=torch.int64)
    ranks = np.empty(len(q), dtype=np.int64)
    recall_hits = {kk: np.zeros(len(q), dtype=np.int64) for kk in ks_r} if ks_r else None

    # Reused buffers: fresh 100+ MB allocations per block cost page faults comparable to the compare.
    rows_per_block = min(rows_per_block, len(q))
    score_buf = torch.empty((rows_per_block, n_u), dtype=torch.float32)
    ahead_buf = torch.empty((rows_per_block, n_u), dtype=torch.bool)
    # Blocks also bound the gathered positives (index, score and temporaries: ~64 bytes each): a
    # duplicate-aware query whose report is one of 30,000 identical "normal" reports has 30,000.
    pos_per_query = (g_ptr[qg + 1] - g_ptr[qg]).astype(np.int64)
    cum_pos = np.concatenate([[0], np.cumsum(pos_per_query)])
    pos_budget = max(1, block_bytes // 64)
    bounds = [0]
    while bounds[-1] < len(q):
        s = bounds[-1]
        e = min(s + rows_per_block, int(np.searchsorted(cum_pos, cum_pos[s] + pos_budget, side="right")) - 1)
        bounds.append(max(e, s + 1))
    for s, e in tqdm(
        list(zip(bounds[:-1], bounds[1:], strict=True)), desc=desc, disable=not progress, unit="block"
    ):
        b = e - s
        scores = torch.mm(q[s:e], uniq.T, out=score_buf[:b])  # (B, U); BLAS reads the transpose in place
        grp = qg[s:e]
        lens = g_ptr[grp + 1] - g_ptr[grp]  # (B,) distinct positive vectors per query
        row_ids = np.repeat(np.arange(b), lens)
        flat = np.repeat(g_ptr[grp] - np.concatenate([[0], np.cumsum(lens)[:-1]]), lens) + np.arange(
            lens.sum()
        )
        cols = torch.as_tensor(gu_flat[flat])
        rows_t = torch.as_tensor(row_ids)
        pos_vals = scores[rows_t, cols]  # (P,) scores of positive vectors, taken from this very block
        best = torch.full((b,), -torch.inf).scatter_reduce(0, rows_t, pos_vals, reduce="amax")  # (B,)
        thr = best[:, None]
        ahead = (torch.ge if ties == "pessimistic" else torch.gt)(scores, thr, out=ahead_buf[:b])  # (B, U)
        # numpy's count_nonzero is several times faster than torch's bool sum over rows.
        n_ahead = torch.from_numpy(np.count_nonzero(ahead.numpy(), axis=1).astype(np.int64))  # (B,)
        if len(dup_cols):
            n_ahead += ahead[:, dup_cols].to(torch.int64) @ dup_extra
        if ties == "pessimistic":
            # Positives equal to the best score were counted in n_ahead; they are not negatives.
            eq = (pos_vals == best[rows_t]).to(torch.int64) * torch.as_tensor(gc_flat[flat])
            pos_counted = torch.zeros(b, dtype=torch.int64).scatter_add(0, rows_t, eq)
        else:
            pos_counted = torch.zeros(b, dtype=torch.int64)
        ranks[s:e] = (1 + n_ahead - pos_counted).numpy()
        if recall_hits is not None:
            _count_top_positives(
                scores,
                pos_vals,
                rows_t,
                cols,
                torch.as_tensor(gc_flat[flat]),
                mult,
                k_top,
                ks_r,
                ties,
                recall_hits,
                s,
            )
    return RankResult(ranks=ranks, n_positives=g_size[qg], recall_hits=recall_hits)


def _count_top_positives(
    scores: torch.Tensor,
    pos_vals: torch.Tensor,
    rows_t: torch.Tensor,
    cols: torch.Tensor,
    pos_mult: torch.Tensor,
    mult: np.ndarray,
    k_top: int,
    ks: list[int],
    ties: Ties,
    out: dict[int, np.ndarray],
    offset: int,
) -> None:
    """Positives within the top k of each row of ``scores`` (B, U), under the tie rule, for true recall.

    The top ``k_top`` unique vectors cover at least ``k_top`` keys, so every key that can be within the
    top max(ks) is among them (ties at the cut are handled by the tie rule below, not by topk's order).
    """
    b = scores.shape[0]
    top_vals, top_idx = torch.topk(scores, k_top, dim=1)  # (B, k_top)
    rows_np = rows_t.numpy()
    cols_np = cols.numpy()
    mult_np = pos_mult.numpy()
    row_ptr = np.searchsorted(rows_np, np.arange(b + 1))  # rows_np is sorted by construction
    tv = top_vals.numpy()
    ti = top_idx.numpy()
    neg_first = ties == "pessimistic"
    for r in range(b):
        # The smallest score in the top list may have tied vectors outside it; fetch them all.
        cut = tv[r, -1]
        extra = torch.nonzero(scores[r] == float(cut)).ravel().numpy()
        idx = np.unique(np.concatenate([ti[r], extra]))
        pc = cols_np[row_ptr[r] : row_ptr[r + 1]]  # sorted positive vectors of this row
        pm = mult_np[row_ptr[r] : row_ptr[r + 1]]
        at = np.minimum(np.searchsorted(pc, idx), len(pc) - 1)
        npos = np.where(pc[at] == idx, pm[at], 0).astype(np.int64)
        vals = scores[r, torch.as_tensor(idx)].numpy()
        nneg = mult[idx] - npos
        order = np.argsort(-vals, kind="stable")
        vals, npos, nneg = vals[order], npos[order], nneg[order]
        # Walk groups of equal score; inside a group, negatives go first (pessimistic) or last.
        taken = 0
        hits = dict.fromkeys(ks, 0)
        i = 0
        while i < len(vals) and taken < ks[-1]:
            j = i
            while j < len(vals) and vals[j] == vals[i]:
                j += 1
            gp, gn = int(npos[i:j].sum()), int(nneg[i:j].sum())
            seq = ((gn, 0), (gp, 1)) if neg_first else ((gp, 1), (gn, 0))
            for count, is_pos in seq:
                for kk in ks:
                    room = max(0, min(count, kk - taken))
                    if is_pos:
                        hits[kk] += room
                taken += count
            i = j
        for kk in ks:
            out[kk][offset + r] = hits[kk]


def summarize_ranks(
    result: RankResult, ks: Sequence[int] = DEFAULT_KS, curve: bool = False
) -> dict[str, Any]:
    """hit@k (CXR "Recall@K", in %), true recall@k where computed (in %), median/mean rank, MRR.

    Args:
        result: output of :func:`retrieval_ranks`.
        ks: cut-offs for hit@k.
        curve: also return ``hit_curve``: hit@k in % for every k from 1 to max(ks) (for plots).

    Returns:
        Flat mapping, e.g. ``{"hit@1": 21.0, ..., "median_rank": 7.0, "mean_rank": 60.2, "mrr": 0.31,
        "n_queries": 3269}``.
    """
    r = result.ranks
    if len(r) == 0:
        raise ValueError("no queries to summarise")
    out: dict[str, Any] = {f"hit@{k}": float(100.0 * np.mean(r <= k)) for k in ks}
    if result.recall_hits is not None:
        for k, hits in sorted(result.recall_hits.items()):
            out[f"recall@{k}"] = float(100.0 * np.mean(hits / result.n_positives))
    out["median_rank"] = float(np.median(r))
    out["mean_rank"] = float(np.mean(r))
    out["mrr"] = float(np.mean(1.0 / r))
    out["n_queries"] = float(len(r))
    out["mean_positives"] = float(np.mean(result.n_positives))
    if curve:
        counts = np.bincount(np.minimum(r, max(ks) + 1), minlength=max(ks) + 2)[1 : max(ks) + 1]
        out["hit_curve"] = (100.0 * np.cumsum(counts) / len(r)).tolist()
    return out
