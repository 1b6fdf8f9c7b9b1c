"""Manifest statistics: counts per split and source, section availability, report lengths, rejects."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc

from lexray.data.manifest import read_rejects, read_table

_SECTIONS = ("findings", "impression", "indication", "comparison")
_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def _words(texts: Any) -> np.ndarray:
    # Whitespace-separated tokens counted by Arrow's regex kernel: no Python loop per report.
    return pc.count_substring_regex(texts, pattern=r"\S+").to_numpy(zero_copy_only=False)


def manifest_stats(path: str | Path) -> dict[str, Any]:
    """Summary numbers of a manifest and its rejects file, as plain JSON-able data.

    Keys: ``studies``, ``by_split_source`` ({source: {split: n}}), ``sections`` ({source: {section:
    share of studies with it}}), ``images`` (total, studies without images, views), ``report_words``
    ({source: count/mean/min/quantiles/max of findings+impression words}), ``rejects`` ({source:
    {reason: n}}).
    """
    table = read_table(path, columns=["source", "split", *_SECTIONS, "images"])
    n = table.num_rows
    sources = table.column("source").to_numpy(zero_copy_only=False).astype(str)
    splits = table.column("split").to_numpy(zero_copy_only=False).astype(str)
    by: dict[str, dict[str, int]] = {}
    for (src, split), count in Counter(zip(sources, splits, strict=True)).items():
        by.setdefault(src, {})[split or "(none)"] = count
    sections: dict[str, dict[str, float]] = {}
    present = {s: _words(table.column(s)) > 0 for s in _SECTIONS}
    words = _words(table.column("findings")) + _words(table.column("impression"))
    lengths: dict[str, dict[str, float]] = {}
    for src in sorted(set(sources)):
        mask = sources == src
        sections[src] = {s: round(float(present[s][mask].mean()), 4) for s in _SECTIONS}
        sections[src]["findings_and_impression"] = round(
            float((present["findings"] & present["impression"])[mask].mean()), 4
        )
        w = words[mask]
        q = np.quantile(w, _QUANTILES)
        lengths[src] = {
            "count": int(mask.sum()),
            "mean": round(float(w.mean()), 1),
            "min": int(w.min()),
            **{f"p{int(p * 100)}": float(v) for p, v in zip(_QUANTILES, q, strict=True)},
            "max": int(w.max()),
        }
    images = table.column("images")
    per_study = pc.list_value_length(images).to_numpy(zero_copy_only=False)
    flat = pc.list_flatten(images)
    views = (
        Counter(v if v is not None else "(unknown)" for v in pc.struct_field(flat, "view").to_pylist())
        if len(flat)
        else Counter()
    )
    rejects: dict[str, dict[str, int]] = {}
    for r in read_rejects(path):
        rejects.setdefault(r.source, {}).setdefault(r.reason, 0)
        rejects[r.source][r.reason] += 1
    return {
        "manifest": str(path),
        "studies": n,
        "by_split_source": by,
        "sections": sections,
        "images": {
            "total": int(per_study.sum()) if n else 0,
            "studies_without_images": int((per_study == 0).sum()) if n else 0,
            "views": dict(views.most_common()),
        },
        "report_words": lengths,
        "rejects": rejects,
    }
