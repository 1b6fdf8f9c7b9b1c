"""5x200 builders on generated label files; zero-shot classification and AUROC."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lexray.evaluate.embedder import EmbeddingModel
from lexray.evaluate.fivex200 import FIVE_CLASSES, build_chexpert_5x200, build_mimic_5x200, select_5x200
from lexray.evaluate.protocol import normalize_report
from lexray.evaluate.zeroshot import _auroc_ranks, binary_auroc, zero_shot_classify, zero_shot_metrics

OTHER = ["No Finding", "Pneumonia"]


def _labels(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    vals = rng.choice(["1", "0", "-1", ""], p=[0.25, 0.3, 0.1, 0.35], size=(n, len(FIVE_CLASSES) + 2))
    df = pd.DataFrame(vals, columns=[*FIVE_CLASSES, *OTHER])
    df.insert(0, "Path", [f"CheXpert-v1.0/train/patient{i:05d}/study1/view1_frontal.jpg" for i in range(n)])
    df.insert(1, "Frontal/Lateral", rng.choice(["Frontal", "Lateral"], p=[0.8, 0.2], size=n))
    return df


def test_chexpert_5x200_rules_and_determinism(tmp_path):
    csv = tmp_path / "train.csv"
    _labels(3000).to_csv(csv, index=False)
    a = build_chexpert_5x200(csv, n_per_class=20, seed=3)
    b = build_chexpert_5x200(csv, n_per_class=20, seed=3)
    c = build_chexpert_5x200(csv, n_per_class=20, seed=4)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)
    assert a["label"].value_counts().to_dict() == dict.fromkeys(FIVE_CLASSES, 20)
    assert a["Path"].is_unique
    src = pd.read_csv(csv).set_index("Path")
    for path, label in zip(a["Path"], a["label"], strict=True):
        row = src.loc[path]
        assert row["Frontal/Lateral"] == "Frontal"
        assert row[label] == 1
        others = [c for c in FIVE_CLASSES if c != label]
        assert not row[others].isin([1, -1]).any()  # not positive, not uncertain on the other four
    # Shuffling the file's rows does not change the selection (candidates are sorted by id first).
    _labels(3000).sample(frac=1, random_state=1).to_csv(tmp_path / "shuffled.csv", index=False)
    pd.testing.assert_frame_equal(a, build_chexpert_5x200(tmp_path / "shuffled.csv", n_per_class=20, seed=3))


def test_uncertain_others_allow_widens_the_pool():
    df = _labels(2000)
    strict = select_5x200(df, ["Path"], n_per_class=40, uncertain_others="exclude")
    loose = select_5x200(df, ["Path"], n_per_class=40, uncertain_others="allow")
    assert len(strict) == len(loose) == 200

    def uncertain_elsewhere(sel):
        rows = df.set_index("Path").loc[sel["Path"]]
        return sum(
            (rows.iloc[i][[c for c in FIVE_CLASSES if c != lab]] == "-1").any()
            for i, lab in enumerate(sel["label"])
        )

    assert uncertain_elsewhere(strict) == 0
    assert uncertain_elsewhere(loose) > 0
    with pytest.raises(ValueError, match="has only"):
        select_5x200(df, ["Path"], n_per_class=10_000)


def test_bad_label_values_name_row_and_column():
    df = _labels(10)
    df.loc[4, "Edema"] = "yes"
    with pytest.raises(ValueError, match="row 4 column 'Edema'"):
        select_5x200(df, ["Path"], n_per_class=1)
    with pytest.raises(ValueError, match="missing"):
        select_5x200(df.drop(columns=["Edema"]), ["Path"], n_per_class=1)


def test_mimic_5x200_with_metadata_and_split(tmp_path):
    n = 1500
    lab = _labels(n, seed=5).drop(columns=["Path", "Frontal/Lateral"])
    lab.insert(0, "subject_id", 10_000_000 + np.arange(n) // 3)
    lab.insert(1, "study_id", 50_000_000 + np.arange(n))
    lab.to_csv(tmp_path / "chexpert.csv", index=False)
    meta = pd.DataFrame(
        {
            "dicom_id": [f"d{i:06d}{v}" for i in range(n) for v in "ab"],
            "subject_id": np.repeat(lab["subject_id"], 2).to_numpy(),
            "study_id": np.repeat(lab["study_id"], 2).to_numpy(),
            "ViewPosition": ["LATERAL", "PA"] * n,
        }
    )
    meta.to_csv(tmp_path / "meta.csv", index=False)
    split = pd.DataFrame({"study_id": lab["study_id"], "split": np.where(np.arange(n) % 2, "train", "test")})
    split.to_csv(tmp_path / "split.csv", index=False)
    out = build_mimic_5x200(
        tmp_path / "chexpert.csv",
        tmp_path / "meta.csv",
        tmp_path / "split.csv",
        "test",
        n_per_class=10,
        seed=0,
    )
    assert list(out.columns) == ["subject_id", "study_id", "dicom_id", "label"]
    assert len(out) == 50
    assert out["dicom_id"].str.endswith("b").all()  # the frontal (PA) image of each study
    assert ((out["study_id"] - 50_000_000) % 2 == 0).all()  # only test-split studies


def test_auroc_fallback_matches_sklearn_with_ties():
    sklearn = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300).astype(bool)
    s = rng.integers(0, 7, 300).astype(float)  # many ties
    assert _auroc_ranks(y, s, int(y.sum()), int((~y).sum())) == pytest.approx(sklearn.roc_auc_score(y, s))
    assert binary_auroc(y, s) == pytest.approx(sklearn.roc_auc_score(y, s))


def test_auroc_hand_cases():
    assert _auroc_ranks(np.array([1, 1, 0, 0], bool), np.array([0.9, 0.8, 0.1, 0.2]), 2, 2) == 1.0
    assert _auroc_ranks(np.array([1, 0], bool), np.array([0.5, 0.5]), 1, 1) == 0.5
    # positives 0.9, 0.3; negatives 0.5, 0.1 -> pairs won: (0.9>0.5, 0.9>0.1, 0.3>0.1) = 3/4
    assert _auroc_ranks(np.array([1, 1, 0, 0], bool), np.array([0.9, 0.3, 0.5, 0.1]), 2, 2) == 0.75
    with pytest.raises(ValueError, match="both classes"):
        binary_auroc([1, 1], [0.1, 0.2])


def test_zero_shot_metrics_by_hand():
    scores = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    m = zero_shot_metrics(scores, [0, 1, 1], ["a", "b"])
    assert m["accuracy"] == pytest.approx(200 / 3)
    assert m["auroc"]["a"] == 1.0  # class a: positive 0.9 vs negatives 0.2, 0.6


def test_zero_shot_with_prompt_ensembles(bow):
    assert isinstance(bow, EmbeddingModel)
    prompts = {
        "Edema": ["pulmonary edema", "interstitial edema"],
        "Cardiomegaly": ["cardiomegaly", "enlarged heart"],
    }
    images = ["mild pulmonary edema", "edema", "enlarged heart", "cardiomegaly noted"]
    m = zero_shot_classify(bow, images, ["Edema", "Edema", "Cardiomegaly", "Cardiomegaly"], prompts)
    assert m["accuracy"] == 100.0 and m["auroc_macro"] == 1.0
    with pytest.raises(ValueError, match="no prompts"):
        zero_shot_classify(bow, images[:1], ["Atelectasis"], prompts)
    assert normalize_report("x") == "x"
