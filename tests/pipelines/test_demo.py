from __future__ import annotations

import json
from pathlib import Path

import pytest

from lexray.pipelines.demo import DemoConfig, find_openi
from lexray.pipelines.demo_report import results_rows, write_html_report


def _metrics() -> dict:
    hit = {"hit@1": 1.0, "hit@5": 5.0, "hit@10": 10.0}
    return {
        "n_studies": 200,
        "retrieval": {
            f"study/{m}/{d}": hit for m in ("exact", "dedup") for d in ("image_to_text", "text_to_image")
        },
        "retrieval_same_group": {"image_to_text": {"hit@1": 40.0, "hit@5": 70.0, "hit@10": 80.0}},
        "generation": {
            "bleu1": 0.4,
            "bleu4": 0.1,
            "rougeL": 0.3,
            "chexpert": {"f1_micro": 0.5, "f1_macro": 0.2},
        },
        "robustness": {"shorthand": {"drop": {"hit@10": 2.5}}},
    }


def test_results_rows_read_the_metrics_file_values() -> None:
    rows = {(sec, name): v for sec, name, v in results_rows(_metrics())}
    assert rows[("retrieval, exact pair", "image->text R@10 %")] == 10.0
    assert rows[("retrieval, same phantom findings", "image->text R@10 %")] == 80.0
    assert rows[("retrieval, exact pair", "chance R@10 %")] == pytest.approx(5.0)  # 10 of 200
    assert rows[("report generation (top-1 retrieved)", "CheXpert F1 macro")] == 0.2
    assert rows[("style robustness (R@10 drop, points)", "shorthand")] == 2.5


def test_missing_metrics_are_reported_as_absent_not_invented() -> None:
    rows = results_rows({"n_studies": 10})
    assert all(v is None for sec, name, v in rows if "chance" not in name)


def test_html_report_is_self_contained(tmp_path: Path) -> None:
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "metrics.md").write_text("# table <b>")
    (tmp_path / "eval" / "curve.png").write_bytes(b"\x89PNG\r\n\x1a\nfake")
    page = write_html_report(tmp_path, _metrics(), {"clip": 12.0}, DemoConfig()).read_text()
    assert "SYNTHETIC phantom radiographs" in page
    assert "data:image/png;base64," in page and "# table &lt;b&gt;" in page
    assert "<td>80</td>" in page and "12 s" in page


def test_find_openi_prefers_the_given_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "NLMCXR_reports.tgz").write_bytes(b"")
    assert find_openi(str(tmp_path)) == tmp_path / "NLMCXR_reports.tgz"
    monkeypatch.setenv("LEXRAY_OPENI", str(tmp_path))
    assert find_openi("") == tmp_path / "NLMCXR_reports.tgz"
    with pytest.raises(FileNotFoundError, match="no NLMCXR_reports.tgz there"):
        find_openi(str(tmp_path / "elsewhere"))


def test_demo_config_recipes_parse() -> None:
    from lexray.clip.train import ClipTrainConfig
    from lexray.config import load_config
    from lexray.evaluate.runner import EvaluateConfig
    from lexray.text.config import TextTrainConfig

    cfg = DemoConfig()
    root = Path(__file__).resolve().parents[2]
    text = load_config(TextTrainConfig, root / cfg.text_config)
    assert text.contrastive.enabled and text.contrastive.hard_negatives and text.data.split == "train"
    assert load_config(ClipTrainConfig, root / cfg.clip_config).model.text.mode == "frozen"
    assert load_config(EvaluateConfig, root / cfg.eval_config).split == "test"
    assert json.dumps(results_rows(_metrics()))


def test_text_cache_key_ignores_paths_but_not_content(tmp_path: Path) -> None:
    import dataclasses

    from lexray.config import load_config
    from lexray.pipelines.demo import text_cache_key
    from lexray.text.config import TextTrainConfig

    root = Path(__file__).resolve().parents[2]
    recipe = load_config(TextTrainConfig, root / DemoConfig().text_config)
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    a.write_bytes(b"same")
    b.write_bytes(b"same")
    here = dataclasses.replace(recipe, output_dir="x", data=dataclasses.replace(recipe.data, manifest=str(a)))
    there = dataclasses.replace(
        recipe, output_dir="y", data=dataclasses.replace(recipe.data, manifest=str(b))
    )
    assert text_cache_key(here, a) == text_cache_key(there, b)
    b.write_bytes(b"other")
    assert text_cache_key(here, a) != text_cache_key(there, b)
    longer = dataclasses.replace(here, mntp=dataclasses.replace(here.mntp, steps=here.mntp.steps + 1))
    assert text_cache_key(longer, a) != text_cache_key(here, a)


def test_text_cache_key_follows_the_variant_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """New variant rules make new training data: the cached encoder of the old rules is not reused."""
    from lexray.config import load_config
    from lexray.pipelines.demo import text_cache_key
    from lexray.text.config import TextTrainConfig
    from lexray.variants import rules

    root = Path(__file__).resolve().parents[2]
    recipe = load_config(TextTrainConfig, root / DemoConfig().text_config)
    manifest = tmp_path / "m.parquet"
    manifest.write_bytes(b"same")
    before = text_cache_key(recipe, manifest)
    assert text_cache_key(recipe, manifest) == before
    monkeypatch.setattr(rules, "rules_version", lambda: "rules-00000000")
    assert text_cache_key(recipe, manifest) != before
