"""The style-mix table: mean and sd over seeds per tower, test style and arm, read from the cells' metrics
files, the paired degradation (b) - (a), as Markdown, JSON and a plot."""

from __future__ import annotations

import json
import statistics
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lexray.evaluate.report import metric_at

# (a) own reports only; (b) (a) plus the second cohort rewritten in the hospital style; (c) (a) plus the same
# cohort in its own reports. b - a is the study's comparison (more data, in another style); b - c holds the
# amount of data fixed, so it is the effect of the hospital style alone.
ARMS = ("a", "b", "c")
DIFFERENCES = (("b-a", "b", "a"), ("b-c", "b", "c"))  # (name, minuend arm, subtrahend arm)
TEST_STYLES = ("standard", "hospital")

# (column, path into metrics.json); hit@K in %, report metrics in [0, 1].
COLUMNS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("i2t R@1", ("retrieval", "study/exact/image_to_text", "hit@1")),
    ("i2t R@10", ("retrieval", "study/exact/image_to_text", "hit@10")),
    ("t2i R@10", ("retrieval", "study/exact/text_to_image", "hit@10")),
    ("i2t R@10 dedup", ("retrieval", "study/dedup/image_to_text", "hit@10")),
    ("i2t R@1 same-findings", ("retrieval_same_group", "image_to_text", "hit@1")),
    ("CheXpert F1 micro", ("generation", "chexpert", "f1_micro")),
    ("ROUGE-L", ("generation", "rougeL")),
)


def _mean_sd(values: Sequence[float]) -> dict[str, float]:
    return {
        "mean": statistics.fmean(values),
        "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
        "n": float(len(values)),
    }


def summarize(cells: dict[tuple[str, str, int, str], Path]) -> dict[str, Any]:
    """The table, read from the cells' metrics files: per tower, test style and arm, mean and sd over seeds,
    and the degradation (b) - (a), paired by seed."""
    values: dict[tuple[str, str, str, int], dict[str, float | None]] = {}
    for (tower, arm, seed, style), path in cells.items():
        metrics = json.loads(Path(path).read_text(encoding="utf-8"))
        values[(tower, style, arm, seed)] = {name: metric_at(metrics, keys) for name, keys in COLUMNS}
    towers = list(dict.fromkeys(t for t, _, _, _ in values))
    seeds = sorted({s for _, _, _, s in values})
    rows = []
    for tower in towers:
        for style in TEST_STYLES:
            arms = [a for a in ARMS if any(k[0] == tower and k[2] == a for k in values)]
            diffs = [d for d in DIFFERENCES if d[1] in arms and d[2] in arms]
            for arm in (*arms, *(d[0] for d in diffs)):
                row: dict[str, Any] = {"tower": tower, "test": style, "arm": arm}
                diff = next((d for d in diffs if d[0] == arm), None)
                for name, _ in COLUMNS:
                    if diff is not None:  # paired by seed
                        pairs = [
                            (
                                values.get((tower, style, diff[1], s), {}).get(name),
                                values.get((tower, style, diff[2], s), {}).get(name),
                            )
                            for s in seeds
                        ]
                        got = [b - a for b, a in pairs if a is not None and b is not None]
                    else:
                        got = [
                            v
                            for s in seeds
                            if (v := values.get((tower, style, arm, s), {}).get(name)) is not None
                        ]
                    row[name] = _mean_sd(got) if got else None
                rows.append(row)
    return {"columns": [c for c, _ in COLUMNS], "seeds": seeds, "rows": rows}


def _cell_text(value: dict[str, float] | None, signed: bool) -> str:
    if value is None:
        return "n/a"
    mean = f"{value['mean']:+.2f}" if signed else f"{value['mean']:.2f}"
    return f"{mean} ± {value['sd']:.2f}"


def write_table(table: dict[str, Any], folder: Path, synthetic: bool) -> Path:
    """``table.md`` and ``table.json`` in ``folder``, and ``degradation.png`` (matplotlib)."""
    lines = []
    if synthetic:
        lines += [
            "Images are SYNTHETIC phantom radiographs rendered from each report's labelled findings; the "
            "hospital cohort's phantoms come from the same findings as their rewritten reports. These "
            "numbers test the pipeline and the text towers, not real radiographs.",
            "",
        ]
    lines.append(
        f"Mean ± sd over seeds {', '.join(map(str, table['seeds']))}; hit@K in %, report metrics in [0, 1]; "
        "b-a is arm (b) minus arm (a) (adding the hospital-style cohort), b-c is arm (b) minus arm (c) (the same "
        "cohort in the hospital style rather than its own reports: the style alone), paired by seed; negative = hurt."
    )
    lines.append("")
    header = ["tower", "test reports", "training", *table["columns"]]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    arm_name = {
        "a": "(a) own reports",
        "b": "(b) + cohort, hospital style",
        "c": "(c) + cohort, own reports",
        "b-a": "**b - a**",
        "b-c": "**b - c**",
    }
    for row in table["rows"]:
        cells = [_cell_text(row[c], "-" in row["arm"]) for c in table["columns"]]
        lines.append("| " + " | ".join([row["tower"], row["test"], arm_name[row["arm"]], *cells]) + " |")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "table.json").write_text(json.dumps(table, indent=1), encoding="utf-8")
    path = folder / "table.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    _plot(table, folder / "degradation.png")
    return path


def _plot(table: dict[str, Any], path: Path, column: str = "i2t R@10") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [d for d, _, _ in DIFFERENCES if any(r["arm"] == d for r in table["rows"])]
    towers = list(dict.fromkeys(r["tower"] for r in table["rows"]))
    fig, axes = plt.subplots(
        1, len(shown), figsize=(1.2 + 1.6 * len(towers) * len(shown), 3.4), squeeze=False
    )
    width = 0.38
    for ax, diff in zip(axes[0], shown, strict=True):
        rows = [r for r in table["rows"] if r["arm"] == diff and r[column] is not None]
        for j, style in enumerate(TEST_STYLES):
            got = {r["tower"]: r[column] for r in rows if r["test"] == style}
            xs = [i + (j - 0.5) * width for i, t in enumerate(towers) if t in got]
            ax.bar(
                xs,
                [got[t]["mean"] for t in towers if t in got],
                width,
                yerr=[got[t]["sd"] for t in towers if t in got],
                capsize=3,
                label=f"{style} test reports",
            )
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set_xticks(range(len(towers)), [textwrap.fill(t, 16) for t in towers], fontsize=7)
        ax.set_ylabel(f"{column}: ({diff[0]}) - ({diff[2]}), points", fontsize=8)
        ax.set_title(
            {"b-a": "adding the hospital-style cohort", "b-c": "the hospital style alone"}[diff], fontsize=9
        )
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
