"""``lexray demo``: the whole pipeline, offline, on CPU, in one command (what ``make demo`` runs).

Stages (each skipped when its output is already there, so a second run only re-reports):

1. Open-i reports -> study manifest (R2Gen split when its file sits beside the archive);
2. SYNTHETIC phantom radiographs rendered from each report's labelled findings;
3. SmolLM2-135M adapted briefly into a bidirectional report encoder (the recipe of
   configs/demo/text.yaml: contrastive on rule variants with error hard negatives) on the train split —
   or a cached / given encoder reused;
4. the phantom CLIP recipe (frozen, cached text tower; small CNN);
5. evaluation on the test split (retrieval both ways, retrieval as report generation, style robustness);
6. a retrieval index over the test and train studies;
7. a results table here and an HTML report with the plots in the output folder.

Every number printed is read back from the files the stages wrote.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import html
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
import yaml
from rich.console import Console
from rich.table import Table

from lexray.config import ConfigError, load_config, save_config, to_dict
from lexray.models import lexray_home

log = logging.getLogger(__name__)
console = Console()

SPLIT_FILE = "r2gen_split.json"
ARCHIVE = "NLMCXR_reports.tgz"


@dataclass(frozen=True)
class DemoConfig:
    """What ``lexray demo`` runs and where it writes."""

    out: str = "runs/demo"  # output folder of every stage
    openi: str = ""  # Open-i folder or archive ("" = $LEXRAY_OPENI, ../shared/data/openi, else NLM download)
    text_config: str = "configs/demo/text.yaml"  # recipe of the brief report-encoder adaptation
    clip_config: str = "configs/demo/clip.yaml"  # recipe of the phantom CLIP run
    eval_config: str = "configs/demo/evaluate.yaml"  # what the evaluation computes
    text_encoder: str = ""  # reuse this trained text-encoder directory instead of adapting one
    phantom_size: int = 256  # phantom side in pixels
    index_splits: tuple[str, ...] = ("test", "train")  # studies put into the retrieval index


# ------------------------------------------------------------------------------------------------ stages


def _stage(title: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Announce a stage and time it."""

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            console.rule(f"[bold]{title}")
            start = time.perf_counter()
            result = fn(*args, **kwargs)
            console.print(f"[dim]{title}: {time.perf_counter() - start:.0f} s[/dim]")
            return result

        return run

    return wrap


def find_openi(given: str) -> Path:
    """The Open-i report archive: the given path, $LEXRAY_OPENI, ../shared/data/openi, else an NLM download."""
    candidates = [given, os.environ.get("LEXRAY_OPENI", ""), "../shared/data/openi"]
    for c in candidates:
        if not c:
            continue
        p = Path(c).expanduser()
        if p.is_file() and p.name.endswith((".tgz", ".tar.gz")):
            return p
        if (p / ARCHIVE).is_file():
            return p / ARCHIVE
        if given and c == given:
            raise FileNotFoundError(f"--openi {given}: no {ARCHIVE} there; give the archive or its folder")
    from lexray.data.download import OPENI_ARTIFACTS, download

    dest = lexray_home() / "data" / "openi"
    artifact = OPENI_ARTIFACTS["reports"]
    console.print(f"Open-i reports not found locally; downloading {artifact.url} to {dest}")
    return download(artifact.url, dest / artifact.name, artifact.sha256, artifact.size)


@_stage("1/7 Open-i reports -> manifest")
def stage_manifest(archive: Path, out: Path) -> Path:
    """Read the Open-i archive into ``out/data/manifest.parquet`` (R2Gen split when available)."""
    from lexray.data.manifest import write_manifest
    from lexray.data.sources.openi import load_openi

    path = out / "data" / "manifest.parquet"
    if path.is_file():
        console.print(f"reusing {path}")
        return path
    split_file = archive.parent / SPLIT_FILE
    result = load_openi(archive, split_file=split_file if split_file.is_file() else None, seed=0)
    write_manifest(result.studies, path, result.rejects)
    console.print(
        f"{len(result.studies)} studies ({_split_counts(result.studies)}), {len(result.rejects)} rejected"
        f" -> {path}" + ("" if split_file.is_file() else " (seeded patient split: no R2Gen split file)")
    )
    return path


@_stage("2/7 SYNTHETIC phantom radiographs")
def stage_phantoms(manifest: Path, out: Path, size: int) -> Path:
    """Render one synthetic frontal phantom per study from its labelled findings."""
    from lexray.data.manifest import read_manifest, write_manifest
    from lexray.data.phantom import PhantomConfig, render_studies

    path = out / "phantoms" / "manifest.parquet"
    if path.is_file():
        console.print(f"reusing {path}")
        return path
    studies = [s for s in read_manifest(manifest) if s.split in ("train", "val", "test")]
    result = render_studies(studies, path.parent, PhantomConfig(size=size))
    write_manifest(result.studies, path)
    console.print(
        f"{len(result.studies)} phantoms ({len(result.skipped)} skipped) -> {path.parent / 'images'}"
    )
    return path


def _recipe_hash(*parts: Any) -> str:
    blob = json.dumps([to_dict(p) for p in parts], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


@_stage("3/7 report encoder: SmolLM2-135M -> bidirectional, contrastive on report variants")
def stage_text(cfg: DemoConfig, manifest: Path) -> Path:
    """Adapt the report encoder briefly (cached under $LEXRAY_HOME by recipe), or reuse a given one."""
    from lexray.text.config import TextTrainConfig
    from lexray.text.encoder import is_encoder_dir
    from lexray.text.train import train

    if cfg.text_encoder:
        if not is_encoder_dir(cfg.text_encoder):
            raise FileNotFoundError(
                f"--text-encoder {cfg.text_encoder} is not a lexray text-encoder directory"
            )
        console.print(f"reusing the given encoder {cfg.text_encoder}")
        return Path(cfg.text_encoder)
    recipe = load_config(TextTrainConfig, cfg.text_config, [f"data.manifest={manifest}", "data.openi="])
    run_dir = lexray_home() / "runs" / f"demo-text-{text_cache_key(recipe, manifest)}"
    if is_encoder_dir(run_dir):
        console.print(f"reusing the cached encoder {run_dir}")
        return run_dir
    return Path(train(dataclasses.replace(recipe, output_dir=str(run_dir))))


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def text_cache_key(recipe: Any, manifest: Path) -> str:
    """Cache key of an adapted encoder: the recipe without its paths, plus the manifest's content.

    Paths are left out so the same recipe on the same data is reused from any output folder.
    """
    portable = dataclasses.replace(recipe, output_dir="", data=dataclasses.replace(recipe.data, manifest=""))
    return _recipe_hash(portable, _file_digest(manifest))


@_stage("4/7 phantom CLIP: small CNN + cached frozen report tower")
def stage_clip(cfg: DemoConfig, phantoms: Path, text_encoder: Path, out: Path) -> Path:
    """Train the phantom CLIP recipe with the adapted encoder as the frozen text tower."""
    from lexray.clip.data import SourceConfig
    from lexray.clip.train import ClipTrainConfig, train

    run_dir = out / "clip"
    base = load_config(
        ClipTrainConfig, cfg.clip_config, [f"output_dir={run_dir}", f"model.text.encoder={text_encoder}"]
    )
    recipe = dataclasses.replace(
        base,
        data=dataclasses.replace(
            base.data,
            sources=(SourceConfig(manifest=str(phantoms), split="train"),),
            val=SourceConfig(manifest=str(phantoms), split="val"),
        ),
    )
    if (run_dir / "final").is_dir():
        console.print(f"reusing {run_dir}")
    else:
        train(recipe)
    return Path(run_dir)


def _load_model(clip_run: Path) -> Any:
    """The trained dual encoder; a frozen text tower reads the feature cache training filled."""
    from lexray.clip.model import DualEncoder

    model = DualEncoder.from_pretrained(clip_run)
    if model.text_frozen:
        model.attach_text_cache()
    return model


@_stage("5/7 evaluation on the test split")
def stage_evaluate(cfg: DemoConfig, clip_run: Path, phantoms: Path, out: Path) -> dict[str, Any]:
    """Retrieval both ways, retrieval as report generation and style robustness on the test split.

    Beside the evaluation's own protocols, ``phantom_retrieval`` counts a retrieved report as a hit
    when its rendered phantom findings equal the true report's (the phantom's own ground truth).
    """
    from lexray.clip.validate import evaluate_split
    from lexray.data.manifest import read_manifest
    from lexray.evaluate.runner import EvaluateConfig, run_evaluation

    eval_dir = out / "eval"
    path = eval_dir / "metrics.json"
    if path.is_file():
        metrics = json.loads(path.read_text())
        if "phantom_retrieval" in metrics:
            console.print(f"reusing {path}")
            return metrics
    config = load_config(EvaluateConfig, cfg.eval_config)
    studies = read_manifest(phantoms)
    model = _load_model(clip_run)
    metrics = run_evaluation(
        model, studies, eval_dir, config, image_root=phantoms.parent, model_name="lexray demo (phantom CLIP)"
    )
    metrics["phantom_retrieval"] = evaluate_split(model, str(phantoms), config.split)
    path.write_text(json.dumps(metrics, indent=1))
    return metrics


@_stage("6/7 retrieval index")
def stage_index(cfg: DemoConfig, clip_run: Path, phantoms: Path, out: Path) -> Path:
    """Embed the chosen splits' images and reports into a FAISS index with their metadata."""
    from lexray.data.manifest import read_manifest
    from lexray.index.config import IndexConfig
    from lexray.index.model import make_ref
    from lexray.index.store import build_index

    index_dir = out / "index"
    if index_dir.is_dir() and any(index_dir.iterdir()):
        console.print(f"reusing {index_dir}")
        return index_dir
    studies = [s for s in read_manifest(phantoms) if s.split in cfg.index_splits]
    ref = make_ref(clip_run)
    model = _load_model(clip_run)
    report = build_index(studies, model, ref, index_dir, IndexConfig(), image_root=phantoms.parent)
    console.print(
        f"index of {report.studies} studies ({', '.join(f'{v} {k} vectors' for k, v in report.vectors.items())}, "
        f"{len(report.rejects)} skipped) -> {index_dir}"
    )
    return index_dir


# ------------------------------------------------------------------------------------------------ report


def _split_counts(studies: list[Any]) -> str:
    counts: dict[str, int] = {}
    for s in studies:
        counts[s.split or "unassigned"] = counts.get(s.split or "unassigned", 0) + 1
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))


def results_rows(metrics: dict[str, Any]) -> list[tuple[str, str, float | None]]:
    """Headline (section, metric, value) rows read from an evaluation's metrics.json.

    Retrieval values are hit@K in percent (what CXR papers call Recall@K); None where absent.
    """

    def get(*keys: str) -> float | None:
        node: Any = metrics
        for k in keys:
            if not isinstance(node, dict) or k not in node:
                return None
            node = node[k]
        return float(node) if isinstance(node, (int, float)) else None

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
                get("phantom_retrieval", f"group/i2t/R@{k}"),
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
    out: Path, metrics: dict[str, Any], timings: dict[str, float], config: DemoConfig
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


# ------------------------------------------------------------------------------------------------ command


def run_demo(cfg: DemoConfig) -> dict[str, Any]:
    """Run every stage (reusing finished ones) and return the evaluation metrics."""
    out = Path(cfg.out)
    save_config(cfg, out, "demo-config.yaml")
    timings: dict[str, float] = {}

    def timed(name: str, fn: Callable[..., Any], *args: Any) -> Any:
        start = time.perf_counter()
        value = fn(*args)
        timings[name] = time.perf_counter() - start
        return value

    archive = find_openi(cfg.openi)
    manifest = timed("manifest", stage_manifest, archive, out)
    phantoms = timed("phantoms", stage_phantoms, manifest, out, cfg.phantom_size)
    text_dir = timed("text encoder", stage_text, cfg, manifest)
    clip_run = timed("clip", stage_clip, cfg, phantoms, text_dir, out)
    metrics = timed("evaluate", stage_evaluate, cfg, clip_run, phantoms, out)
    timed("index", stage_index, cfg, clip_run, phantoms, out)
    console.rule("[bold]7/7 results")
    print_results(metrics)
    report = write_html_report(out, metrics, timings, cfg)
    (out / "timings.json").write_text(json.dumps(timings, indent=1))
    console.print(f"total {sum(timings.values()):.0f} s; HTML report: {report}")
    return metrics


def demo(
    config: Path | None = typer.Option(None, "--config", help="YAML with DemoConfig fields."),
    overrides: list[str] = typer.Option(
        [], "--set", help="Override a field, e.g. out=runs/demo2 (repeatable)."
    ),
    openi: str | None = typer.Option(None, "--openi", help="Open-i folder or NLMCXR_reports.tgz."),
    out: str | None = typer.Option(None, "--out", help="Output folder (default runs/demo)."),
    text_encoder: str | None = typer.Option(None, "--text-encoder", help="Reuse a trained text-encoder dir."),
    serve: bool = typer.Option(False, "--serve", help="Then serve the web page on 127.0.0.1."),
    port: int = typer.Option(8000, help="Port for --serve."),
) -> None:
    """Run the whole pipeline offline on CPU: data, phantoms, report encoder, CLIP, evaluation, index."""
    extra = [f"{k}={v}" for k, v in (("openi", openi), ("out", out), ("text_encoder", text_encoder)) if v]
    try:
        cfg = load_config(DemoConfig, config, [*overrides, *extra])
        run_demo(cfg)
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from exc
    if serve:
        import uvicorn

        from lexray.index import Searcher
        from lexray.serve import ServeConfig, create_app

        console.print(f"serving http://127.0.0.1:{port}/ (Ctrl-C stops)")
        app = create_app(Searcher.open(Path(cfg.out) / "index"), ServeConfig(host="127.0.0.1", port=port))
        uvicorn.run(app, host="127.0.0.1", port=port)
