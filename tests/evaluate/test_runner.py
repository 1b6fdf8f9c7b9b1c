"""A whole evaluation run on synthetic studies with the bag-of-words embedder; report files and compare."""

from __future__ import annotations

import json

import pytest

from lexray.data.study import Image, Study
from lexray.evaluate.generation import GenerationConfig
from lexray.evaluate.report import compare_runs, load_metrics
from lexray.evaluate.runner import EvaluateConfig, RobustnessConfig, run_evaluation

FINDINGS = [
    "Small left pleural effusion.",
    "Mild pulmonary edema.",
    "The heart is enlarged, cardiomegaly.",
    "Right upper lobe consolidation.",
    "No acute cardiopulmonary process.",
    "Large right pneumothorax.",
]


def _studies(tmp_path, n_test=6, n_train=6):
    studies = []
    for split, n in (("test", n_test), ("train", n_train)):
        for i in range(n):
            sid = f"{split}{i}"
            text = FINDINGS[i % len(FINDINGS)]
            images = []
            for v in range(2 if i % 2 == 0 else 1):
                p = tmp_path / "img" / f"{sid}_{v}.txt"
                p.parent.mkdir(exist_ok=True)
                p.write_text(text)  # the fake model "sees" the caption
                images.append(Image(path=f"img/{sid}_{v}.txt", view="PA"))
            studies.append(
                Study(
                    study_id=sid,
                    patient_id=sid,
                    source="synthetic",
                    split=split,
                    images=tuple(images),
                    findings=text,
                    impression=f"Impression {i}.",
                )
            )
    # bad records: no images, empty text, an unreadable image
    studies.append(
        Study(study_id="noimg", patient_id="x", source="synthetic", split="test", findings="Edema.")
    )
    studies.append(
        Study(
            study_id="notext",
            patient_id="y",
            source="synthetic",
            split="test",
            images=(Image(path="img/test0_0.txt"),),
        )
    )
    studies.append(
        Study(
            study_id="badimg",
            patient_id="z",
            source="synthetic",
            split="test",
            images=(Image(path="img/missing.txt"),),
            findings="Mild edema.",
        )
    )
    return studies


def test_run_writes_every_output_and_skips_bad_records(tmp_path, bow, keyword_labeler):
    studies = _studies(tmp_path)
    cfg = EvaluateConfig(generation=GenerationConfig(), robustness=RobustnessConfig(styles=("shorthand",)))
    m = run_evaluation(
        bow, studies, tmp_path / "run", cfg, image_root=tmp_path, labeler=keyword_labeler, progress=False
    )
    out = tmp_path / "run"
    for name in (
        "metrics.json",
        "metrics.md",
        "config.yaml",
        "recall_at_k.png",
        "chexpert_f1.png",
        "generated.jsonl",
        "skipped.jsonl",
    ):
        assert (out / name).is_file(), name
    skipped = [json.loads(line) for line in (out / "skipped.jsonl").read_text().splitlines()]
    reasons = {s["study_id"]: s["reason"] for s in skipped}
    assert reasons["noimg"] == "no images" and "empty" in reasons["notext"]
    assert "badimg" in reasons
    # badimg's only image failed, so it drops out of retrieval: 6 studies remain with images.
    assert m["retrieval"]["study/exact/image_to_text"]["n_queries"] == 6
    # The fake images carry their report's words, so dedup retrieval is perfect; exact-pair is not
    # (test0 and the identical test... none here: all 6 test reports differ) -> also perfect.
    assert m["retrieval"]["study/dedup/image_to_text"]["hit@1"] == 100.0
    assert m["generation"]["corpus"] == {"split": "train", "n": 6}
    assert m["generation"]["bleu1"] == pytest.approx(1.0)  # train holds the same six reports
    assert "shorthand" in m["robustness"]
    assert "## Retrieval" in (out / "metrics.md").read_text()
    assert load_metrics(out)["n_studies"] == m["n_studies"]


def test_compare_two_runs(tmp_path, bow):
    studies = _studies(tmp_path)
    cfg = EvaluateConfig(run_generation=False, robustness=RobustnessConfig(styles=()))
    run_evaluation(bow, studies, tmp_path / "a", cfg, image_root=tmp_path, progress=False)
    run_evaluation(type(bow)(dim=4), studies, tmp_path / "b", cfg, image_root=tmp_path, progress=False)
    table = compare_runs([tmp_path / "a", tmp_path / "b"])
    assert table.splitlines()[0] == "| metric | a | b |"
    row = next(line for line in table.splitlines() if line.startswith("| study/exact/image_to_text hit@1 |"))
    assert row.split("|")[2].strip() == "100.0"
    with pytest.raises(FileNotFoundError, match="lexray evaluate run"):
        compare_runs([tmp_path / "nothing"])


def test_unknown_split_is_named(tmp_path, bow):
    with pytest.raises(ValueError, match="splits"):
        run_evaluation(bow, _studies(tmp_path), tmp_path / "x", EvaluateConfig(split="val"), progress=False)


def test_zero_shot_from_a_5x200_file(tmp_path, bow):
    import pandas as pd

    from lexray.evaluate.runner import ZeroShotConfig

    captions = {
        "Edema": "pulmonary edema",
        "Cardiomegaly": "cardiomegaly heart enlarged",
        "Pleural Effusion": "pleural effusion",
    }
    rows = []
    for label, cap in captions.items():
        for j in range(3):
            p = tmp_path / "zs" / f"{label[:4]}{j}.txt"
            p.parent.mkdir(exist_ok=True)
            p.write_text(cap)
            rows.append({"Path": f"zs/{p.name}", "label": label})
    pd.DataFrame(rows).to_csv(tmp_path / "5x3.csv", index=False)
    cfg = EvaluateConfig(
        run_generation=False,
        robustness=RobustnessConfig(styles=()),
        zeroshot=ZeroShotConfig(labels=str(tmp_path / "5x3.csv")),
    )
    m = run_evaluation(bow, _studies(tmp_path), tmp_path / "run", cfg, image_root=tmp_path, progress=False)
    assert m["zeroshot"]["n"] == 9
    assert m["zeroshot"]["accuracy"] == 100.0
    assert "## Zero-shot classification" in (tmp_path / "run" / "metrics.md").read_text()


def test_same_group_retrieval_counts_any_study_of_the_true_group(tmp_path, bow):
    """The same-findings protocol (e.g. phantoms): a report of the query's group is a hit, on the same run."""
    import dataclasses

    def study(sid: str, image_text: str, report: str, group: str | None) -> Study:
        p = tmp_path / "img" / f"{sid}.txt"
        p.parent.mkdir(exist_ok=True)
        p.write_text(image_text)
        extra = {} if group is None else {"phantom_findings": group}
        return Study(
            study_id=sid, patient_id=sid, source="synthetic", split="test",
            images=(Image(path=f"img/{sid}.txt"),), findings=report, extra=extra,
        )

    # b's film reads like a's report, so exact-pair retrieval misses b; a and b share their group.
    studies = [
        study("a", "effusion", "effusion", "g1"),
        study("b", "effusion", "effusion left base", "g1"),
        study("c", "cardiomegaly", "cardiomegaly", "g2"),
    ]
    cfg = EvaluateConfig(run_generation=False, group_key="phantom_findings")
    m = run_evaluation(bow, studies, tmp_path / "run", cfg, image_root=tmp_path, progress=False)
    exact = m["retrieval"]["study/exact/image_to_text"]["hit@1"]
    group = m["retrieval_same_group"]
    assert exact < 100.0 and group["image_to_text"]["hit@1"] == 100.0
    assert group["key"] == "phantom_findings" and group["groups"] == 2
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["retrieval_same_group"] == group

    studies[2] = dataclasses.replace(studies[2], extra={})
    m = run_evaluation(bow, studies, tmp_path / "run2", cfg, image_root=tmp_path, progress=False)
    assert "1 of 3 studies" in m["retrieval_same_group"]["unavailable"]
    assert "retrieval_same_group" not in run_evaluation(
        bow, studies, tmp_path / "run3", EvaluateConfig(run_generation=False), image_root=tmp_path,
        progress=False,
    )
