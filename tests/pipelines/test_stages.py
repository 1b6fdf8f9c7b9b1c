"""The one "already done" rule of pipeline stages, and the demo redoing exactly the stages a change affects."""

from __future__ import annotations

import json
import shutil
import types
from pathlib import Path

import pytest

from lexray.pipelines.stages import StageRun, content_key, digest_tree

ROOT = Path(__file__).resolve().parents[2]


def test_a_stage_is_done_only_with_its_own_key_and_after_it_finished(tmp_path: Path) -> None:
    folder = tmp_path / "clip"
    stage = StageRun("clip", folder, "k1")
    assert not stage.done()
    assert stage.begin() is False and folder.is_dir()
    (folder / "checkpoint").write_text("half")
    assert not stage.done()  # interrupted: begun, never finished
    assert stage.begin() is True and (folder / "checkpoint").is_file()  # same key: kept, to resume
    stage.finish()
    assert stage.done()
    changed = StageRun("clip", folder, "k2")
    assert not changed.done()
    assert changed.begin() is False and not (folder / "checkpoint").exists()  # another key: cleared


def test_a_folder_without_a_stamp_is_redone(tmp_path: Path) -> None:
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "metrics.json").write_text("{}")  # made by a lexray that wrote no stamp
    stage = StageRun("evaluate", tmp_path / "eval", "k")
    assert not stage.done()
    stage.begin()
    assert not (tmp_path / "eval" / "metrics.json").exists()


def test_content_key_and_tree_digest_follow_content() -> None:
    from lexray.evaluate.runner import EvaluateConfig

    assert content_key("x", EvaluateConfig()) == content_key("x", EvaluateConfig())
    assert content_key("x", EvaluateConfig()) != content_key("x", EvaluateConfig(batch_size=7))


def test_tree_digest_ignores_the_stamp(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a")
    before = digest_tree(tmp_path)
    StageRun("s", tmp_path, "k").finish()
    assert digest_tree(tmp_path) == before
    (tmp_path / "a.txt").write_text("b")
    assert digest_tree(tmp_path) != before


@pytest.fixture()
def fake_demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[list[str], object]:
    """The demo's wiring for real, with each stage's heavy work replaced by a recorder that writes its files."""
    import lexray.clip.train
    import lexray.data.manifest
    import lexray.data.sources.openi
    import lexray.evaluate.runner
    import lexray.index.model
    import lexray.index.store
    import lexray.phantoms
    import lexray.pipelines.demo as demo
    import lexray.text.encoder

    ran: list[str] = []

    def write_manifest(studies: list, path: Path, rejects: object = None) -> Path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text("manifest")
        return Path(path)

    def run_evaluation(model: object, studies: list, out_dir: Path, config: object, **kw: object) -> dict:
        ran.append("evaluate")
        assert config.group_key == "phantom_findings"  # same-findings retrieval is scored in this one run
        Path(out_dir, "metrics.json").write_text(json.dumps({"n_studies": 3}))
        return {}

    def train_clip(recipe: object) -> None:
        ran.append("clip")
        Path(recipe.output_dir, "final").mkdir(parents=True)

    def build_index(*args: object, **kw: object) -> object:
        ran.append("index")
        return types.SimpleNamespace(studies=0, vectors={}, rejects=[])

    def load_openi(*args: object, **kw: object) -> object:
        ran.append("manifest")
        return types.SimpleNamespace(studies=[], rejects=[])

    def render_studies(studies: list, out: Path, config: object) -> object:
        ran.append("phantoms")
        return types.SimpleNamespace(studies=[], skipped=[])

    monkeypatch.setattr(lexray.data.sources.openi, "load_openi", load_openi)
    monkeypatch.setattr(lexray.data.manifest, "write_manifest", write_manifest)
    monkeypatch.setattr(lexray.data.manifest, "read_manifest", lambda path: [])
    monkeypatch.setattr(lexray.phantoms, "render_studies", render_studies)
    monkeypatch.setattr(lexray.text.encoder, "is_encoder_dir", lambda path: True)
    monkeypatch.setattr(lexray.clip.train, "train", train_clip)
    monkeypatch.setattr(lexray.evaluate.runner, "run_evaluation", run_evaluation)
    monkeypatch.setattr(lexray.index.store, "build_index", build_index)
    monkeypatch.setattr(lexray.index.model, "make_ref", lambda path: None)
    monkeypatch.setattr(demo, "load_dual_encoder", lambda path: None)

    archive = tmp_path / "openi" / "NLMCXR_reports.tgz"
    archive.parent.mkdir()
    archive.write_bytes(b"reports")
    encoder = tmp_path / "encoder"
    encoder.mkdir()
    (encoder / "weights").write_bytes(b"w")
    recipes = tmp_path / "recipes"
    shutil.copytree(ROOT / "configs" / "demo", recipes)
    cfg = demo.DemoConfig(
        out=str(tmp_path / "out"),
        openi=str(archive),
        text_config=str(recipes / "text.yaml"),
        clip_config=str(recipes / "clip.yaml"),
        eval_config=str(recipes / "evaluate.yaml"),
        text_encoder=str(encoder),
    )
    return ran, cfg


def test_the_demo_redoes_exactly_the_stages_a_change_affects(fake_demo: tuple[list[str], object]) -> None:
    import dataclasses

    from lexray.pipelines.demo import run_demo

    ran, cfg = fake_demo
    run_demo(cfg)
    assert ran == ["manifest", "phantoms", "clip", "evaluate", "index"]  # the test split evaluated once

    ran.clear()
    run_demo(cfg)
    assert ran == []  # nothing changed: everything reused

    clip_recipe = Path(cfg.clip_config)
    clip_recipe.write_text(clip_recipe.read_text().replace("max_steps: 400", "max_steps: 401"))
    run_demo(cfg)
    assert ran == ["clip", "evaluate", "index"]  # a changed CLIP recipe is never silently reused

    ran.clear()
    eval_recipe = Path(cfg.eval_config)
    eval_recipe.write_text(eval_recipe.read_text().replace("batch_size: 32", "batch_size: 16"))
    run_demo(cfg)
    assert ran == ["evaluate"]

    ran.clear()
    run_demo(dataclasses.replace(cfg, index_splits=("test",)))
    assert ran == ["index"]

    ran.clear()
    Path(cfg.text_encoder, "weights").write_bytes(b"other weights")
    run_demo(cfg)
    assert ran == ["clip", "evaluate", "index"]

    ran.clear()
    Path(cfg.openi).write_bytes(b"other reports")
    run_demo(cfg)
    assert ran == ["manifest", "phantoms", "clip", "evaluate", "index"]
