"""The text benchmark (``textbench-*.jsonl``): style-robust retrieval and error discrimination.

Metrics exactly as defined in the benchmark README:

* ``{style}_R@k`` for style in shorthand / impression_only / restyled: each variant queries the pool of
  originals (original = findings + " " + impression); a hit when its own source ranks within the top k
  by cosine similarity.
* ``errdisc_orig_acc`` / ``errdisc_shorthand_acc``: the anchor (original, or its shorthand variant)
  picks among ``restyled`` (correct) and the three single-error texts; correct when ``restyled`` has
  the highest cosine. Chance is 0.25.

The metric functions take embeddings, so any encoder (or the CLIP text tower) can be scored.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lexray.data.study import Study

STYLES = ("shorthand", "impression_only", "restyled")
KS = (1, 5, 10)


@dataclass(frozen=True)
class BenchItem:
    """One benchmark report with its variants."""

    id: str  # study id of the source report
    original: str  # findings + " " + impression
    shorthand: str  # terse, abbreviation-heavy dictation of the same content
    impression_only: str  # one/two-line impression-style summary
    restyled: str  # formal, reordered rewrite (the correct candidate in error discrimination)
    errors: tuple[tuple[str, str], ...]  # (error type, text) with exactly one clinically significant error


def load_bench(path: str | Path) -> list[BenchItem]:
    """Read a ``textbench-*.jsonl`` file.

    Raises:
        ValueError: a line lacks a field; the message names the line and the field.
    """
    items = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            rec = json.loads(line)
            try:
                items.append(
                    BenchItem(
                        id=str(rec["id"]),
                        original=rec["findings"] + " " + rec["impression"],
                        shorthand=rec["shorthand"],
                        impression_only=rec["impression_only"],
                        restyled=rec["restyled"],
                        errors=tuple((e["type"], e["text"]) for e in rec["errors"]),
                    )
                )
            except KeyError as exc:
                raise ValueError(
                    f"{path}:{lineno}: missing field {exc} (see the bench README for the format)"
                ) from exc
    return items


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.clip(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12, None)


def retrieval_hits(queries: np.ndarray, pool: np.ndarray, ks: Sequence[int] = KS) -> dict[int, float]:
    """Hit rate at k: query i is a hit when pool item i ranks within the top k by cosine.

    Ties count against the query (rank = number of pool items scoring at least as high, minus itself).
    """
    sims = _unit(queries) @ _unit(pool).T  # (N, N)
    own = np.diag(sims)[:, None]  # (N, 1)
    rank = (sims > own).sum(axis=1) + ((sims == own).sum(axis=1) - 1)  # (N,) items ahead of the source
    return {k: float((rank < k).mean()) for k in ks}


def error_discrimination(anchors: np.ndarray, correct: np.ndarray, errors: np.ndarray) -> float:
    """Accuracy of picking ``correct`` (N, D) over every error (N, E, D) by cosine to ``anchors`` (N, D).

    Correct only when the correct candidate scores strictly higher than all error texts.
    """
    a = _unit(anchors)
    good = (a * _unit(correct)).sum(-1)  # (N,)
    bad = np.einsum("nd,ned->ne", a, _unit(errors))  # (N, E)
    return float((good > bad.max(axis=1)).mean())


def evaluate_bench(
    embed: Callable[[list[str]], np.ndarray], items: Sequence[BenchItem], ks: Sequence[int] = KS
) -> dict[str, float]:
    """All benchmark metrics for an embedding function (texts -> (n, D) array).

    Every distinct text is embedded once.
    """
    n_err = {len(it.errors) for it in items}
    if len(n_err) != 1:
        raise ValueError(f"every bench item needs the same number of error texts, got {sorted(n_err)}")
    texts: list[str] = []
    for it in items:
        texts += [it.original, it.shorthand, it.impression_only, it.restyled, *(t for _, t in it.errors)]
    unique = sorted(set(texts))
    emb = np.asarray(embed(unique), dtype=np.float32)
    row = {t: i for i, t in enumerate(unique)}

    def get(ts: list[str]) -> np.ndarray:
        return emb[[row[t] for t in ts]]

    originals = get([it.original for it in items])
    metrics: dict[str, float] = {}
    for style in STYLES:
        hits = retrieval_hits(get([getattr(it, style) for it in items]), originals, ks)
        metrics.update({f"{style}_R@{k}": v for k, v in hits.items()})
    errors = np.stack([get([t for _, t in it.errors]) for it in items])  # (N, E, D)
    restyled = get([it.restyled for it in items])
    metrics["errdisc_orig_acc"] = error_discrimination(originals, restyled, errors)
    metrics["errdisc_shorthand_acc"] = error_discrimination(
        get([it.shorthand for it in items]), restyled, errors
    )
    return metrics


def _is_normal(study: Study) -> bool:
    """Open-i codes a normal study with the single MeSH major term "normal"."""
    major = [t.strip().lower() for t in str(study.extra.get("mesh_major", "")).split(";") if t.strip()]
    return major == ["normal"]


def select_bench_studies(studies: Sequence[Study], n: int = 100, seed: int = 0) -> list[Study]:
    """Pick the source reports of a new bench the way the dev set was built.

    Abnormal studies (Open-i MeSH other than "normal"; studies without MeSH count as abnormal) with both
    findings and impression, de-duplicated on normalised report text, then ``n`` drawn with ``seed``.

    Raises:
        ValueError: fewer than ``n`` eligible studies.
    """
    from lexray.text.pairs import normalize_text

    seen: set[str] = set()
    eligible = []
    for s in sorted(studies, key=lambda s: s.study_id):
        if not (s.findings.strip() and s.impression.strip()) or _is_normal(s):
            continue
        key = normalize_text(s.findings + " " + s.impression)
        if key not in seen:
            seen.add(key)
            eligible.append(s)
    if len(eligible) < n:
        raise ValueError(f"only {len(eligible)} eligible abnormal, de-duplicated studies; asked for {n}")
    return random.Random(seed).sample(eligible, n)


def write_bench_skeleton(studies: Sequence[Study], path: str | Path) -> Path:
    """Write ``{"id", "findings", "impression"}`` lines; the variants are then written by hand."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for s in studies:
            f.write(json.dumps({"id": s.study_id, "findings": s.findings, "impression": s.impression}) + "\n")
    return path
