"""Run outputs: metrics.json, a Markdown summary, PNG plots, and side-by-side comparison of runs."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

METRICS_JSON = "metrics.json"  # an evaluation's metrics (the training log is lexray.training.METRICS_FILE, metrics.jsonl)
TABLE_FILE = "metrics.md"


def _fmt(v: Any, digits: int = 1) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def markdown_report(metrics: dict[str, Any]) -> str:
    """A Markdown summary of one run's metrics (retrieval, generation, robustness, zero-shot)."""
    lines = [f"# Evaluation: {metrics.get('model') or 'model'} on split {metrics.get('split')}", ""]
    lines.append(
        f"{metrics.get('n_studies')} studies, {metrics.get('n_images')} images, {metrics.get('n_skipped')} skipped. "
        f"Ties: {metrics.get('protocol', {}).get('ties')}. hit@K is what CXR papers call Recall@K."
    )
    ret = metrics.get("retrieval", {})
    if ret:
        ks = sorted(int(k.split("@")[1]) for k in next(iter(ret.values())) if k.startswith("hit@"))
        rks = sorted({int(k.split("@")[1]) for m in ret.values() for k in m if k.startswith("recall@")})
        head = [
            "protocol",
            *[f"hit@{k}" for k in ks],
            *[f"recall@{k}" for k in rks],
            "median rank",
            "MRR",
            "queries",
        ]
        lines += ["", "## Retrieval", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for name, m in ret.items():
            row = [name, *[_fmt(m.get(f"hit@{k}")) for k in ks], *[_fmt(m.get(f"recall@{k}")) for k in rks]]
            row += [_fmt(m.get("median_rank")), _fmt(m.get("mrr"), 3), str(int(m.get("n_queries", 0)))]
            lines.append("| " + " | ".join(row) + " |")
    gen = metrics.get("generation")
    if gen and "unavailable" not in gen:
        lines += [
            "",
            f"## Retrieval as report generation (corpus: {gen.get('corpus', {}).get('split')}, "
            f"{gen.get('corpus', {}).get('n')} reports; fusion {gen.get('fusion')}, top-{gen.get('top_k')})",
            "",
        ]
        cols = {f"BLEU-{n}": gen.get(f"bleu{n}") for n in range(1, 5)}
        cols["ROUGE-L"] = gen.get("rougeL")
        cols["CheXpert F1 micro"] = gen.get("chexpert", {}).get("f1_micro")
        cols["CheXpert F1 macro"] = gen.get("chexpert", {}).get("f1_macro")
        for opt, key in (
            ("BERTScore", ("bertscore", "bertscore_f1")),
            ("RadGraph F1", ("radgraph", "radgraph_f1")),
            ("GREEN", ("green", "green")),
        ):
            block = gen.get(key[0])
            if isinstance(block, dict):
                cols[opt] = block.get(key[1], "unavailable")
        lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines.append("| " + " | ".join(_fmt(v, 3) for v in cols.values()) + " |")
    rob = metrics.get("robustness")
    if rob:
        lines += [
            "",
            "## Style robustness (text->image, study level, exact)",
            "",
            "| style | queries | hit@1 original | hit@1 variant | drop hit@1 | drop hit@10 | drop MRR |",
            "|---|---|---|---|---|---|---|",
        ]
        for style, r in rob.items():
            if not r.get("n"):
                lines.append(f"| {style} | 0 | – | – | – | – | – |")
                continue
            lines.append(
                f"| {style} | {r['n']} | {_fmt(r['original']['hit@1'])} | {_fmt(r['variant']['hit@1'])} | "
                f"{_fmt(r['drop']['hit@1'])} | {_fmt(r['drop'].get('hit@10'))} | {_fmt(r['drop']['mrr'], 3)} |"
            )
    zs = metrics.get("zeroshot")
    if zs:
        lines += [
            "",
            "## Zero-shot classification",
            "",
            "| accuracy % | AUROC macro | " + " | ".join(zs["auroc"]) + " |",
            "|" + "---|" * (2 + len(zs["auroc"])),
        ]
        lines.append(
            f"| {_fmt(zs['accuracy'])} | {_fmt(zs['auroc_macro'], 3)} | "
            + " | ".join(_fmt(v, 3) for v in zs["auroc"].values())
            + " |"
        )
    return "\n".join(lines) + "\n"


def write_plots(metrics: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """Recall@K (hit@K) curves per protocol and per-observation CheXpert F1 bars, as PNG files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    written = []
    ret = metrics.get("retrieval", {})
    if ret:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for name, m in ret.items():
            curve = m.get("hit_curve")
            if curve:
                ax.plot(
                    range(1, len(curve) + 1), curve, label=name, linestyle="-" if "exact" in name else "--"
                )
        ax.set_xscale("log")
        ax.set_xlabel("K")
        ax.set_ylabel("hit@K (Recall@K) %")
        ax.set_title("Retrieval: hit@K by protocol")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = out_dir / "recall_at_k.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    f1 = (
        metrics.get("generation", {}).get("chexpert", {}).get("f1")
        if isinstance(metrics.get("generation"), dict)
        else None
    )
    if f1:
        names = list(f1)
        fig, ax = plt.subplots(figsize=(7, 4.5))
        ax.barh(names, [v if v is not None else 0.0 for v in f1.values()], color="#4477aa")
        ax.set_xlim(0, 1)
        ax.set_xlabel("F1 (retrieved vs true report)")
        ax.set_title("CheXpert-label F1 per observation")
        ax.invert_yaxis()
        fig.tight_layout()
        path = out_dir / "chexpert_f1.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written


def write_report(metrics: dict[str, Any], out_dir: str | Path) -> None:
    """Write metrics.json, metrics.md and the plots into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / METRICS_JSON).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    (out_dir / TABLE_FILE).write_text(markdown_report(metrics), encoding="utf-8")
    write_plots(metrics, out_dir)


def load_metrics(run_dir: str | Path) -> dict[str, Any]:
    """metrics.json of a run directory; a clear error when it is not one."""
    path = Path(run_dir) / METRICS_JSON
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: is {run_dir} an output directory of `lexray evaluate run`?"
        )
    return json.loads(path.read_text(encoding="utf-8"))


def metric_at(metrics: dict[str, Any], keys: Sequence[str]) -> float | None:
    """The number at ``metrics[k1][k2]...``, or None where a key is absent or the value is not a number."""
    node: Any = metrics
    for k in keys:
        if not isinstance(node, dict) or k not in node:
            return None
        node = node[k]
    return float(node) if isinstance(node, (int, float)) else None


def headline_metrics(metrics: dict[str, Any]) -> dict[str, float | None]:
    """The flat metrics shown by ``compare``: retrieval hit@K/MRR, generation scores, robustness drops."""
    row: dict[str, float | None] = {}
    for name, m in metrics.get("retrieval", {}).items():
        for key in [k for k in m if k.startswith(("hit@", "recall@"))]:
            row[f"{name} {key}"] = m[key]
        row[f"{name} mrr"] = m.get("mrr")
    gen = metrics.get("generation", {})
    if isinstance(gen, dict) and "unavailable" not in gen:
        for n in range(1, 5):
            row[f"generation bleu{n}"] = gen.get(f"bleu{n}")
        row["generation rougeL"] = gen.get("rougeL")
        row["generation chexpert f1 micro"] = gen.get("chexpert", {}).get("f1_micro")
        row["generation chexpert f1 macro"] = gen.get("chexpert", {}).get("f1_macro")
        if isinstance(gen.get("green"), dict) and gen["green"].get("green") is not None:
            row["generation green"] = gen["green"]["green"]
    for style, r in metrics.get("robustness", {}).items():
        if r.get("n"):
            row[f"robustness {style} drop hit@1"] = r["drop"]["hit@1"]
    zs = metrics.get("zeroshot")
    if zs:
        row["zeroshot accuracy"] = zs["accuracy"]
        row["zeroshot auroc macro"] = zs["auroc_macro"]
    return row


def compare_runs(run_dirs: Sequence[str | Path]) -> str:
    """A Markdown table with one column per run and one row per headline metric (union over runs)."""
    if not run_dirs:
        raise ValueError("give at least one run directory")
    rows = [headline_metrics(load_metrics(d)) for d in run_dirs]
    keys = list(dict.fromkeys(k for r in rows for k in r))
    names = [Path(d).name or str(d) for d in run_dirs]
    lines = ["| metric | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for k in keys:
        digits = 3 if ("mrr" in k or "generation" in k or "auroc" in k) else 1
        lines.append(f"| {k} | " + " | ".join(_fmt(r.get(k), digits) for r in rows) + " |")
    return "\n".join(lines) + "\n"
