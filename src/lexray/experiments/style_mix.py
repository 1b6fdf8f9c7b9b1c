"""The style-mix experiment: does adding hospital-style reports to CLIP training hurt, and does the text tower matter?

The published study's distinctive claim: adding abbreviation-rich, impression-only hospital reports to a
chest X-ray CLIP's training data plateaus or degrades it, and a domain-adapted LLM text encoder reduces the
harm. This module runs that comparison as a grid:

- text towers (each frozen, or with LoRA): e.g. all-MiniLM-L6-v2, raw SmolLM2 made bidirectional, and the
  lexray-adapted SmolLM2;
- training data: arm (a), the train studies in their own reports; arm (b), (a) plus a second cohort of
  *other* train studies whose reports are rewritten into a hospital's style (rule styles, each rewrite
  accepted only when the finding labeler reads the same findings), with their own images; and the control
  arm (c), (a) plus the same cohort in its own reports, so that b - c is the style's effect at equal data;
- seeds, so a difference can be told from noise;
- evaluation on the test split in its own reports and the same test studies rewritten in the hospital
  style (the "external" reporting style): retrieval both ways (exact, identical-report and, where the
  studies carry a group such as phantom findings, same-findings protocols) and retrieval as report
  generation (CheXpert F1, BLEU, ROUGE-L; GREEN with a judge endpoint in the evaluation recipe).

Every cell writes its own ``metrics.json``; the table (``table.md``, ``table.json``) and the plot
(``degradation.png``) are read from those files. Val and test reports never enter training.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from lexray.config import load_config, save_config
from lexray.data.study import Study
from lexray.errors import LexrayError
from lexray.experiments._table import ARMS, TEST_STYLES, summarize, write_table
from lexray.pipelines.stages import StageRun, content_key, digest_file

log = logging.getLogger(__name__)


class ExperimentError(LexrayError, ValueError):
    """The experiment's configuration or data cannot make the grid."""


@dataclass(frozen=True)
class TowerSpec:
    """One text tower of the grid."""

    name: str = ""  # row label in the table
    encoder: str = ""  # text encoder: alias, hub id, or directory ("" = adapt one with `recipe`)
    recipe: str = ""  # lexray text-train recipe adapting an encoder on the train split (cached by content)
    mode: Literal["frozen", "lora"] = "frozen"  # frozen (cached features) or LoRA on the text tower
    max_length: int = 192  # tokens per report


@dataclass(frozen=True)
class CohortConfig:
    """The second, hospital-style training cohort and the hospital-style test set."""

    share: float = 0.5  # share of the train studies moved into the hospital cohort (arm b adds them)
    styles: tuple[str, ...] = ("brief", "impression_only", "shorthand", "hospital_template")  # rule styles
    seed: int = 0  # which train studies form the cohort, and which style each report is written in


@dataclass(frozen=True)
class StyleMixConfig:
    """The whole grid: data, towers, CLIP recipe, seeds and evaluation."""

    out: str = "runs/style-mix"  # output folder (one subfolder per cell)
    manifest: str = ""  # manifest with images and train/val/test splits ("" = Open-i with phantoms)
    openi: str = ""  # Open-i folder or archive when `manifest` is "" (as `lexray demo --openi`)
    phantom_size: int = 256  # phantom side in pixels when phantoms are rendered
    towers: tuple[TowerSpec, ...] = ()  # the text towers compared
    cohort: CohortConfig = field(default_factory=CohortConfig)  # the hospital-style cohort
    seeds: tuple[int, ...] = (0, 1, 2)  # CLIP training seeds per cell
    clip_config: str = "configs/demo/clip.yaml"  # CLIP recipe every cell trains with
    clip_overrides: tuple[str, ...] = ()  # `a.b=c` overrides of the CLIP recipe (e.g. max_steps=200)
    eval_config: str = "configs/experiments/style-mix-evaluate.yaml"  # what each evaluation computes
    group_key: str = "phantom_findings"  # Study.extra key of the same-findings protocol ("" = off)


# ------------------------------------------------------------------------------------------------ cohorts


def _in_cohort(study_id: str, share: float, seed: int) -> bool:
    # Seeded by the study id alone, so adding studies to the manifest does not move the others.
    return random.Random(f"cohort|{seed}|{study_id}").random() < share


def hospital_rewrites(
    studies: Sequence[Study], styles: Sequence[str], seed: int, labeler: Any = None
) -> tuple[dict[str, Study], dict[str, int]]:
    """Each study rewritten in one hospital style that the finding labeler reads as equivalent.

    The style is drawn per study (seeded); when the labeler rejects it, the other styles are tried in turn.

    Returns:
        (study id -> the rewritten study, counts per style and of studies with no accepted rewrite).
    """
    from lexray.variants.rules import make_rule_variants_batch

    if not styles:
        raise ExperimentError("cohort.styles is empty: name the rule styles the hospital writes in")
    records = make_rule_variants_batch(list(studies), list(styles), seed, labeler)
    accepted = {(r.study_id, r.style): r.text for r in records if r.accepted and r.text.strip()}
    out: dict[str, Study] = {}
    counts = {s: 0 for s in styles} | {"no_rewrite": 0}
    for st in studies:
        order = list(styles)
        random.Random(f"style|{seed}|{st.study_id}").shuffle(order)
        style = next((s for s in order if (st.study_id, s) in accepted), None)
        if style is None:
            counts["no_rewrite"] += 1
            continue
        counts[style] += 1
        # The hospital report is one block of text: no findings/impression sections of its own.
        out[st.study_id] = dataclasses.replace(
            st,
            findings="",
            impression=accepted[(st.study_id, style)],
            extra={**st.extra, "hospital_style": style, "rewritten_from": "own report"},
        )
    return out, counts


@dataclass(frozen=True)
class Cohorts:
    """The manifests every cell reads, and how many studies each holds."""

    train: dict[str, Path]  # arm -> training manifest
    val: Path | None  # validation studies in their own reports (model selection); None without a val split
    test: dict[str, Path]  # test style -> test manifest
    corpus: Path  # the reports retrieval-as-generation retrieves from (train, own reports)
    image_root: Path  # the folder relative image paths are under (the source manifest's)
    counts: dict[str, Any]


def build_cohorts(
    studies: Sequence[Study], config: CohortConfig, folder: Path, image_root: Path, labeler: Any = None
) -> Cohorts:
    """Arm (a), arm (b), validation, both test styles and the generation corpus, as manifests in ``folder``.

    ``image_root`` is the folder the studies' relative image paths are under.
    """
    from lexray.data.manifest import write_manifest

    if not 0.0 < config.share < 1.0:
        raise ExperimentError(f"cohort.share={config.share}: give a share strictly between 0 and 1")
    train = [s for s in studies if s.split == "train"]
    val = [s for s in studies if s.split == "val"]
    test = [s for s in studies if s.split == "test"]
    if not train or not test:
        raise ExperimentError(
            f"the manifest needs train and test studies (has {len(train)} train, {len(test)} test)"
        )
    own = [s for s in train if not _in_cohort(s.study_id, config.share, config.seed)]
    moved = [s for s in train if _in_cohort(s.study_id, config.share, config.seed)]
    hospital, train_counts = hospital_rewrites(moved, config.styles, config.seed, labeler)
    test_hospital, test_counts = hospital_rewrites(test, config.styles, config.seed, labeler)
    arm_b = [*own, *(hospital[s.study_id] for s in moved if s.study_id in hospital)]
    held_out = {s.study_id for s in (*val, *test)}
    leaked = [s.study_id for s in arm_b if s.study_id in held_out]
    if leaked:  # a study id in two splits: training would see an evaluation report
        raise ExperimentError(f"studies {leaked[:5]} are in train and in val/test; fix the manifest's splits")
    # Both test styles hold the same studies, so their scores differ by the reporting style alone.
    test_std = [s for s in test if s.study_id in test_hospital]
    folder.mkdir(parents=True, exist_ok=True)
    paths = {
        "a": write_manifest(own, folder / "train-a.parquet"),
        "b": write_manifest(arm_b, folder / "train-b.parquet"),
        # The same studies as (b), each in its own report: only the reporting style differs.
        "c": write_manifest([*own, *(s for s in moved if s.study_id in hospital)], folder / "train-c.parquet"),
        "standard": write_manifest(test_std, folder / "test-standard.parquet"),
        "hospital": write_manifest(
            [test_hospital[s.study_id] for s in test_std], folder / "test-hospital.parquet"
        ),
        "corpus": write_manifest(train, folder / "corpus.parquet"),
    }
    counts = {
        "train_own": len(own),
        "hospital_cohort": len(hospital),
        "hospital_cohort_styles": train_counts,
        "test": len(test_std),
        "test_styles": test_counts,
        "val": len(val),
    }
    (folder / "cohorts.json").write_text(json.dumps(counts, indent=1), encoding="utf-8")
    return Cohorts(
        {a: Path(paths[a]) for a in ARMS},
        write_manifest(val, folder / "val.parquet") if val else None,
        {t: Path(paths[t]) for t in TEST_STYLES},
        Path(paths["corpus"]),
        image_root,
        counts,
    )


# ------------------------------------------------------------------------------------------------ cells


def _tower_encoder(tower: TowerSpec, train_manifest: Path) -> tuple[str, str]:
    """(encoder reference, key) of a tower; a recipe tower is adapted once and cached by content."""
    if tower.encoder:
        return tower.encoder, content_key("encoder", tower.encoder)
    if not tower.recipe:
        raise ExperimentError(f"tower {tower.name!r}: give an encoder or a text-train recipe")
    from lexray.models import lexray_home
    from lexray.pipelines.demo import text_cache_key
    from lexray.text.config import TextTrainConfig
    from lexray.text.encoder import is_encoder_dir

    recipe = load_config(
        TextTrainConfig, tower.recipe, [f"data.manifest={train_manifest}", "data.openi=", "data.split=train"]
    )
    key = text_cache_key(recipe, train_manifest)
    run_dir = lexray_home() / "runs" / f"style-mix-text-{key}"
    if not is_encoder_dir(run_dir):
        from lexray.text.train import train

        log.info("adapting the %s text tower (%s) into %s", tower.name, tower.recipe, run_dir)
        run_dir = Path(train(dataclasses.replace(recipe, output_dir=str(run_dir))))
    return str(run_dir), key


def _clip_recipe(
    config: StyleMixConfig, tower: TowerSpec, encoder: str, arm: str, cohorts: Cohorts, seed: int, out: Path
) -> Any:
    from lexray.clip.data import SourceConfig
    from lexray.clip.train import ClipTrainConfig

    base = load_config(ClipTrainConfig, config.clip_config, list(config.clip_overrides))
    text = dataclasses.replace(base.model.text, encoder=encoder, mode=tower.mode, max_length=tower.max_length)
    return dataclasses.replace(
        base,
        seed=seed,
        output_dir=str(out),
        model=dataclasses.replace(base.model, text=text),
        data=dataclasses.replace(
            base.data,
            sources=(SourceConfig(str(cohorts.train[arm]), "train", image_root=str(cohorts.image_root)),),
            val=None
            if cohorts.val is None
            else SourceConfig(str(cohorts.val), "val", image_root=str(cohorts.image_root)),
        ),
    )


def run_cell(
    config: StyleMixConfig,
    tower: TowerSpec,
    encoder: tuple[str, str],
    arm: str,
    seed: int,
    cohorts: Cohorts,
    folder: Path,
    labeler: Callable[[str], Any] | None = None,
) -> dict[str, Path]:
    """Train one CLIP cell and evaluate it on both test styles; returns test style -> metrics.json."""
    from lexray.data.manifest import read_manifest
    from lexray.evaluate.runner import EvaluateConfig, run_evaluation
    from lexray.pipelines.demo import load_dual_encoder

    recipe = _clip_recipe(config, tower, encoder[0], arm, cohorts, seed, folder / "clip")
    # The key holds what the cell learns from: the tower, the arm's data and the recipe without its paths.
    portable = dataclasses.replace(
        recipe, output_dir="", data=dataclasses.replace(recipe.data, sources=(), val=None)
    )
    key = content_key("clip", encoder[1], digest_file(cohorts.train[arm]), portable)
    clip_stage = StageRun("clip", folder / "clip", key)
    if not clip_stage.done():
        from lexray.clip.train import train

        clip_stage.begin()
        train(recipe)
        clip_stage.finish()
    eval_config = dataclasses.replace(
        load_config(EvaluateConfig, config.eval_config), group_key=config.group_key
    )
    corpus = read_manifest(cohorts.corpus)
    out: dict[str, Path] = {}
    model = None
    for style in TEST_STYLES:
        eval_dir = folder / f"eval-{style}"
        key = content_key("evaluate", clip_stage.key, digest_file(cohorts.test[style]), eval_config)
        stage = StageRun("evaluate", eval_dir, key)
        if not stage.done():
            stage.begin()
            if model is None:  # loaded once, for whichever test style still needs it
                model = load_dual_encoder(folder / "clip")
            run_evaluation(
                model,
                read_manifest(cohorts.test[style]),
                eval_dir,
                dataclasses.replace(eval_config, split="test", corpus_split="train"),
                corpus=corpus,
                image_root=cohorts.image_root,
                labeler=labeler,
                progress=False,
                model_name=f"style-mix {tower.name} arm {arm} seed {seed}",
            )
            stage.finish()
        out[style] = eval_dir / "metrics.json"
    return out


# ------------------------------------------------------------------------------------------------ run


def _source_manifest(config: StyleMixConfig) -> tuple[Path, bool]:
    """The manifest with images the grid uses, and whether its images are synthetic phantoms."""
    if config.manifest:
        path = Path(config.manifest)
        if not path.is_file():
            raise ExperimentError(
                f"manifest {path} does not exist; give a manifest from `lexray data prepare`"
            )
        return path, False
    from lexray.pipelines.demo import find_openi, stage_manifest, stage_phantoms

    out = Path(config.out)
    manifest = stage_manifest(find_openi(config.openi), out)
    return stage_phantoms(manifest, out, config.phantom_size).path, True


def run_style_mix(config: StyleMixConfig, labeler: Callable[[str], Any] | None = None) -> Path:
    """Run (or resume) the grid and write its table; returns ``table.md``.

    Args:
        config: the grid.
        labeler: finding labeler for the equivalence check and the report metrics (default: lexray's).
    """
    from lexray.data.manifest import read_manifest

    if not config.towers:
        raise ExperimentError("no towers: name at least one text tower (towers: [{name, encoder}])")
    if not config.seeds:
        raise ExperimentError("no seeds: give at least one (three or more tell a difference from noise)")
    out = Path(config.out)
    save_config(config, out, "style-mix-config.yaml")
    source, synthetic = _source_manifest(config)
    cohorts = build_cohorts(read_manifest(source), config.cohort, out / "cohorts", source.parent, labeler)
    log.info("cohorts: %s", json.dumps(cohorts.counts))
    cells: dict[tuple[str, str, int, str], Path] = {}
    names = [t.name or t.encoder or t.recipe for t in config.towers]
    if len(set(names)) != len(names):
        raise ExperimentError(f"tower names must differ: {names}")
    from tqdm.auto import tqdm

    grid = [
        (t, n, a, s) for t, n in zip(config.towers, names, strict=True) for a in ARMS for s in config.seeds
    ]
    encoders: dict[str, tuple[str, str]] = {}
    for tower, name, arm, seed in tqdm(grid, desc="style-mix cells"):
        if name not in encoders:
            encoders[name] = _tower_encoder(tower, cohorts.train["a"])
        metrics = run_cell(
            config,
            tower,
            encoders[name],
            arm,
            seed,
            cohorts,
            out / "cells" / name / f"{arm}-seed{seed}",
            labeler,
        )
        for style, path in metrics.items():
            cells[(name, arm, seed, style)] = path
    return write_table(summarize(cells), out, synthetic)
