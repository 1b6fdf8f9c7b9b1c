"""The demo's results: the headline rows read from ``metrics.json``, the terminal table and the HTML page."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from lexray.config import to_dict
from lexray.evaluate.report import metric_at

console = Console()


def results_rows(metrics: dict[str, Any]) -> list[tuple[str, str, float | None]]:
    """Headline (section, metric, value) rows read from an evaluation's metrics.json.

    Retrieval values are hit@K in percent (what CXR papers call Recall@K); None where absent.
    """

    def get(*keys: str) -> float | None:
        return metric_at(metrics, keys)

    rows: list[tuple[str, str, float | None]] = []
    n = get("n_studies")
    for mode, label in (("exact", "exact pair"), ("dedup", "identical report counts")):
        for direction, arrow in (("image_to_text", "image->text"), ("text_to_image", "text->image")):
            for k in (1, 5, 10):
                rows.append(
                    (
                        f"retrieval, {label}",
                        f"{arrow} R@{k} %",
                        get("retrieval", f"study/{mode}/{direction}", f"hit@{k}"),
                    )
                )
    for k in (1, 5, 10):
        rows.append(
            (
                "retrieval, same phantom findings",
                f"image->text R@{k} %",
                get("retrieval_same_group", "image_to_text", f"hit@{k}"),
            )
        )
    if n:
        rows.append(("retrieval, exact pair", "chance R@10 %", 100.0 * min(10.0, n) / n))
    gen = ("generation",)
    for key, label in (("bleu1", "BLEU-1"), ("bleu4", "BLEU-4"), ("rougeL", "ROUGE-L")):
        rows.append(("report generation (top-1 retrieved)", label, get(*gen, key)))
    for key, label in (("f1_micro", "CheXpert F1 micro"), ("f1_macro", "CheXpert F1 macro")):
        rows.append(("report generation (top-1 retrieved)", label, get(*gen, "chexpert", key)))
    for style in metrics.get("robustness") or {}:
        rows.append(
            (
                "style robustness (R@10 drop, points)",
                style,
                get("robustness", style, "drop", "hit@10"),
            )
        )
    return rows


def write_html_report(
    out: Path, metrics: dict[str, Any], timings: dict[str, float], config: Any
) -> Path:
    """A self-contained HTML page: the results table, the plots (inlined) and how they were made."""
    eval_dir = out / "eval"
    md = (eval_dir / "metrics.md").read_text(encoding="utf-8") if (eval_dir / "metrics.md").is_file() else ""
    plots = sorted(eval_dir.glob("*.png"))
    imgs = "\n".join(
        f'<figure><img alt="{html.escape(p.stem)}" src="data:image/png;base64,'
        f'{base64.b64encode(p.read_bytes()).decode()}"><figcaption>{html.escape(p.stem)}</figcaption></figure>'
        for p in plots
    )
    rows = "\n".join(
        f"<tr><td>{html.escape(sec)}</td><td>{html.escape(k)}</td><td>{_fmt(v)}</td></tr>"
        for sec, k, v in results_rows(metrics)
    )
    stage_rows = "\n".join(
        f"<tr><td>{html.escape(k)}</td><td>{v:.0f} s</td></tr>" for k, v in timings.items()
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>lexray demo report</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.25em .6em;text-align:left}}
figure{{display:inline-block;margin:.5em}}img{{max-width:460px}}.warn{{background:#fff3cd;padding:.6em}}
pre{{background:#f6f6f6;padding:.6em;overflow:auto}}</style></head><body>
<h1>lexray demo report</h1>
<p class="warn">Images are <b>SYNTHETIC phantom radiographs</b> rendered from each Open-i report's labelled
findings; no real chest X-ray images were used. These numbers show the pipeline working end to end and are
not a claim about real radiographs.</p>
<h2>Results on the Open-i test split</h2>
<table><tr><th>protocol</th><th>metric</th><th>value</th></tr>
{rows}
</table>
<h2>Evaluation tables</h2><pre>{html.escape(md)}</pre>
<h2>Plots</h2>{imgs}
<h2>Stage timings</h2><table>{stage_rows}</table>
<h2>Configuration</h2><pre>{html.escape(yaml.safe_dump(to_dict(config), sort_keys=False))}</pre>
</body></html>
"""
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def print_results(metrics: dict[str, Any]) -> None:
    """The headline table on the terminal (values read from metrics.json)."""
    table = Table(
        "protocol",
        "metric",
        "value",
        title=f"lexray demo: Open-i test split, {metrics.get('n_studies')} studies, SYNTHETIC phantom images",
    )
    for section, name, value in results_rows(metrics):
        table.add_row(section, name, _fmt(value))
    console.print(table)
    console.print("Every metric of every protocol: eval/metrics.json and eval/metrics.md")
