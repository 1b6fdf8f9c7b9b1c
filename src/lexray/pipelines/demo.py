"""The demo pipeline: the whole of lexray, offline, on CPU (what ``lexray demo`` and ``make demo`` run).

Stages, each in its own folder under ``DemoConfig.out`` and reused only when its key (a content hash of
its inputs and configuration, :mod:`lexray.pipelines.stages`) is unchanged:

1. Open-i reports -> study manifest (R2Gen split when its file sits beside the archive);
2. SYNTHETIC phantom radiographs rendered from each report's labelled findings;
3. SmolLM2-135M adapted briefly into a bidirectional report encoder (the recipe of
   configs/demo/text.yaml: contrastive on rule variants with error hard negatives) on the train split —
   cached under $LEXRAY_HOME by its recipe and data, or a given encoder reused;
4. the phantom CLIP recipe (frozen, cached text tower; small CNN);
5. evaluation on the test split, once (retrieval both ways under the exact, identical-report and
   same-phantom-findings protocols, retrieval as report generation, style robustness);
6. a retrieval index over the test and train studies;
7. a results table and an HTML report with the plots in the output folder.

Every number printed is read back from the files the stages wrote.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lexray.config import load_config, save_config
from lexray.models import lexray_home
from lexray.pipelines.demo_report import console, print_results, write_html_report
from lexray.pipelines.stages import StageRun, content_key, digest_file, digest_tree

log = logging.getLogger(__name__)

SPLIT_FILE = "r2gen_split.json"
ARCHIVE = "NLMCXR_reports.tgz"
PHANTOM_GROUP_KEY = "phantom_findings"  # Study.extra key of a phantom's drawn findings


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


@dataclass(frozen=True)
class StageOutput:
    """What a stage made and the key it was made with (downstream keys include it)."""

    path: Path
    key: str


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


def _run_stage(title: str, stage: StageRun, output: Path, make: Callable[[], object]) -> StageOutput:
    """Reuse ``stage``'s folder when it is done with this key, else (re)run ``make`` into it."""
    console.rule(f"[bold]{title}")
    if stage.done():
        console.print(f"reusing {output} (stage key {stage.key})")
    else:
        if stage.begin():
            console.print(f"continuing the interrupted {stage.name} run in {stage.folder}")
        start = time.perf_counter()
        make()
        stage.finish()
        console.print(f"[dim]{title}: {time.perf_counter() - start:.0f} s[/dim]")
    return StageOutput(output, stage.key)


def _split_counts(studies: list[Any]) -> str:
    counts: dict[str, int] = {}
    for s in studies:
        counts[s.split or "unassigned"] = counts.get(s.split or "unassigned", 0) + 1
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))


def stage_manifest(archive: Path, out: Path) -> StageOutput:
    """Read the Open-i archive into ``out/data/manifest.parquet`` (R2Gen split when available)."""
    split_file = archive.parent / SPLIT_FILE
    has_split = split_file.is_file()
    path = out / "data" / "manifest.parquet"
    key = content_key("manifest", digest_file(archive), digest_file(split_file) if has_split else "", 0)

    def make() -> None:
        from lexray.data.manifest import write_manifest
        from lexray.data.sources.openi import load_openi

        result = load_openi(archive, split_file=split_file if has_split else None, seed=0)
        write_manifest(result.studies, path, result.rejects)
        console.print(
            f"{len(result.studies)} studies ({_split_counts(result.studies)}), {len(result.rejects)} rejected"
            f" -> {path}" + ("" if has_split else " (seeded patient split: no R2Gen split file)")
        )

    return _run_stage("1/7 Open-i reports -> manifest", StageRun("manifest", path.parent, key), path, make)


def stage_phantoms(manifest: StageOutput, out: Path, size: int) -> StageOutput:
    """Render one synthetic frontal phantom per study from its labelled findings."""
    from lexray.phantoms import PhantomConfig

    config = PhantomConfig(size=size)
    path = out / "phantoms" / "manifest.parquet"

    def make() -> None:
        from lexray.data.manifest import read_manifest, write_manifest
        from lexray.phantoms import render_studies

        studies = [s for s in read_manifest(manifest.path) if s.split in ("train", "val", "test")]
        result = render_studies(studies, path.parent, config)
        write_manifest(result.studies, path)
        console.print(
            f"{len(result.studies)} phantoms ({len(result.skipped)} skipped) -> {path.parent / 'images'}"
        )

    stage = StageRun("phantoms", path.parent, content_key("phantoms", manifest.key, config))
    return _run_stage("2/7 SYNTHETIC phantom radiographs", stage, path, make)


def text_cache_key(recipe: Any, manifest: Path) -> str:
    """Cache key of an adapted encoder: its recipe without paths, its manifest's content, its data code.

    The data code is the version of the variant rules and of the labeler, so that new rules retrain the
    encoder instead of reusing one trained on the old. Paths are left out so the same recipe on the same
    data is reused from any output folder.
    """
    from lexray.text.train.data import labels_version
    from lexray.variants.rules import rules_version

    portable = dataclasses.replace(recipe, output_dir="", data=dataclasses.replace(recipe.data, manifest=""))
    return content_key(portable, digest_file(manifest), rules_version(), labels_version())


def stage_text(cfg: DemoConfig, manifest: StageOutput) -> StageOutput:
    """Adapt the report encoder briefly (cached under $LEXRAY_HOME by recipe and data), or reuse a given one."""
    from lexray.text.config import TextTrainConfig
    from lexray.text.encoder import is_encoder_dir

    console.rule("[bold]3/7 report encoder: SmolLM2-135M -> bidirectional, contrastive on report variants")
    if cfg.text_encoder:
        if not is_encoder_dir(cfg.text_encoder):
            raise FileNotFoundError(f"--text-encoder {cfg.text_encoder} is not a lexray text-encoder directory")
        console.print(f"reusing the given encoder {cfg.text_encoder}")
        return StageOutput(Path(cfg.text_encoder), content_key("text", digest_tree(cfg.text_encoder)))
    recipe = load_config(TextTrainConfig, cfg.text_config, [f"data.manifest={manifest.path}", "data.openi="])
    key = text_cache_key(recipe, manifest.path)
    run_dir = lexray_home() / "runs" / f"demo-text-{key}"
    if is_encoder_dir(run_dir):
        console.print(f"reusing the cached encoder {run_dir}")
        return StageOutput(run_dir, key)
    from lexray.text.train import train

    start = time.perf_counter()
    trained = Path(train(dataclasses.replace(recipe, output_dir=str(run_dir))))
    console.print(f"[dim]report encoder: {time.perf_counter() - start:.0f} s[/dim]")
    return StageOutput(trained, key)


def stage_clip(cfg: DemoConfig, phantoms: StageOutput, text: StageOutput, out: Path) -> StageOutput:
    """Train the phantom CLIP recipe with the adapted encoder as the frozen text tower."""
    from lexray.clip.data import SourceConfig
    from lexray.clip.train import ClipTrainConfig

    run_dir = out / "clip"
    base = load_config(ClipTrainConfig, cfg.clip_config)
    recipe = dataclasses.replace(
        base,
        output_dir=str(run_dir),
        model=dataclasses.replace(base.model, text=dataclasses.replace(base.model.text, encoder=str(text.path))),
        data=dataclasses.replace(
            base.data,
            sources=(SourceConfig(manifest=str(phantoms.path), split="train"),),
            val=SourceConfig(manifest=str(phantoms.path), split="val"),
        ),
    )

    def make() -> None:
        from lexray.clip.train import train

        train(recipe)

    # The key holds the recipe as the file gives it: its paths are the stage's own and the upstream keys.
    stage = StageRun("clip", run_dir, content_key("clip", phantoms.key, text.key, base))
    return _run_stage("4/7 phantom CLIP: small CNN + cached frozen report tower", stage, run_dir, make)


def load_dual_encoder(clip_run: Path) -> Any:
    """The trained dual encoder; a frozen text tower reads the feature cache training filled."""
    from lexray.clip.model import DualEncoder

    model = DualEncoder.from_pretrained(clip_run)
    if model.text_frozen:
        model.attach_text_cache()
    return model


def stage_evaluate(cfg: DemoConfig, clip: StageOutput, phantoms: StageOutput, out: Path) -> dict[str, Any]:
    """Evaluate once on the test split; same-phantom-findings retrieval is one of its protocols.

    Beside the exact and identical-report protocols, ``retrieval_same_group`` counts a retrieved report as
    a hit when its rendered phantom findings equal the true report's (the phantom's own ground truth).
    """
    from lexray.evaluate.runner import EvaluateConfig

    eval_dir = out / "eval"
    config = dataclasses.replace(load_config(EvaluateConfig, cfg.eval_config), group_key=PHANTOM_GROUP_KEY)

    def make() -> None:
        from lexray.data.manifest import read_manifest
        from lexray.evaluate.runner import run_evaluation

        run_evaluation(
            load_dual_encoder(clip.path),
            read_manifest(phantoms.path),
            eval_dir,
            config,
            image_root=phantoms.path.parent,
            model_name="lexray demo (phantom CLIP)",
        )

    stage = StageRun("evaluate", eval_dir, content_key("evaluate", clip.key, config))
    _run_stage("5/7 evaluation on the test split", stage, eval_dir, make)
    return json.loads((eval_dir / "metrics.json").read_text(encoding="utf-8"))


def stage_index(cfg: DemoConfig, clip: StageOutput, phantoms: StageOutput, out: Path) -> StageOutput:
    """Embed the chosen splits' images and reports into a FAISS index with their metadata."""
    from lexray.index.config import IndexConfig

    index_dir = out / "index"
    config = IndexConfig()

    def make() -> None:
        from lexray.data.manifest import read_manifest
        from lexray.index.model import make_ref
        from lexray.index.store import build_index

        studies = [s for s in read_manifest(phantoms.path) if s.split in cfg.index_splits]
        report = build_index(
            studies, load_dual_encoder(clip.path), make_ref(clip.path), index_dir, config, image_root=phantoms.path.parent
        )
        console.print(
            f"index of {report.studies} studies "
            f"({', '.join(f'{v} {k} vectors' for k, v in report.vectors.items())}, "
            f"{len(report.rejects)} skipped) -> {index_dir}"
        )

    stage = StageRun("index", index_dir, content_key("index", clip.key, list(cfg.index_splits), config))
    return _run_stage("6/7 retrieval index", stage, index_dir, make)


def run_demo(cfg: DemoConfig) -> dict[str, Any]:
    """Run every stage (reusing those whose key is unchanged) and return the evaluation metrics."""
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
    text = timed("text encoder", stage_text, cfg, manifest)
    clip = timed("clip", stage_clip, cfg, phantoms, text, out)
    metrics = timed("evaluate", stage_evaluate, cfg, clip, phantoms, out)
    timed("index", stage_index, cfg, clip, phantoms, out)
    console.rule("[bold]7/7 results")
    print_results(metrics)
    report = write_html_report(out, metrics, timings, cfg)
    (out / "timings.json").write_text(json.dumps(timings, indent=1))
    console.print(f"total {sum(timings.values()):.0f} s; HTML report: {report}")
    return metrics
