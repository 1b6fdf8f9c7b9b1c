"""Retrieval as report generation and report metrics on hand-checked pairs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lexray.evaluate.generation import (
    GenerationConfig,
    MetricUnavailable,
    bertscore,
    bleu_scores,
    chexpert_f1,
    fuse_reports,
    green_model_scores,
    radgraph_f1,
    report_metrics,
    retrieval_as_generation,
    retrieve_top_k,
    rouge_l,
)


def test_bleu_hand_checked():
    # One pair: every unigram of the hypothesis matches; brevity penalty exp(1 - 6/3).
    b = bleu_scores(["the heart is"], ["the heart is normal in size"])
    assert b["bleu1"] == pytest.approx(math.exp(1 - 6 / 3), rel=1e-4)
    same = bleu_scores(["no acute disease .", "small effusion ."], ["no acute disease .", "small effusion ."])
    assert all(v == pytest.approx(1.0) for v in same.values())
    assert bleu_scores(["Heart Normal"], ["heart normal"])["bleu2"] == pytest.approx(1.0)  # lower-cased


def test_rouge_l_hand_checked():
    # LCS("heart lungs clear normal", "heart clear normal size") = 3 -> P = R = 3/4.
    assert rouge_l(["heart lungs clear normal"], ["heart clear normal size"]) == pytest.approx(0.75)
    assert rouge_l(["a b", "x"], ["a b", "y"]) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="2 hypotheses but 1"):
        rouge_l(["a", "b"], ["a"])


def test_chexpert_f1_hand_checked(keyword_labeler):
    lab = keyword_labeler
    hyps = ["edema and cardiomegaly", "no edema. effusion", "possible effusion"]
    refs = ["edema", "edema. effusion", "effusion"]
    out = chexpert_f1(hyps, refs, lab, observations=list(lab.TERMS))
    # Edema: tp 1 (pair 0), fn 1 (pair 1) -> F1 2/3. Cardiomegaly: fp 1 -> F1 0.
    # Effusion: tp 1 (pair 1), fn 1 (pair 2, uncertain not positive) -> 2/3.
    assert out["f1"]["Edema"] == pytest.approx(2 / 3)
    assert out["f1"]["Cardiomegaly"] == 0.0
    assert out["f1"]["Pleural Effusion"] == pytest.approx(2 / 3)
    assert out["f1_macro"] == pytest.approx((2 / 3 + 0 + 2 / 3) / 3)
    # micro: tp 2, fp 1, fn 2 -> 4 / 7
    assert out["f1_micro"] == pytest.approx(4 / 7)
    loose = chexpert_f1(hyps, refs, lab, uncertain_as_positive=True, observations=list(lab.TERMS))
    assert loose["f1"]["Pleural Effusion"] == 1.0
    none = chexpert_f1(["clear"], ["clear"], lab, observations=["Edema"])
    assert none["f1"]["Edema"] is None and none["f1_macro"] == 0.0


def test_retrieve_top_k_excludes_own_study_and_breaks_ties_by_index():
    q = np.array([[1.0, 0.0]], dtype=np.float32)
    c = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.6, 0.8]], dtype=np.float32)
    idx, sc = retrieve_top_k(q, c, 2)
    assert idx.tolist() == [[0, 2]]
    idx, sc = retrieve_top_k(q, c, 2, query_ids=["s0"], corpus_ids=["s0", "s1", "s2", "s3"])
    assert idx.tolist() == [[2, 3]]
    np.testing.assert_allclose(sc, [[1.0, 0.6]])


def test_fusion_modes():
    texts = ["Heart normal. No effusion.", "Heart normal. Small effusion.", "Pneumothorax."]
    emb = np.array([[1, 0], [0.9, 0.436], [0, 1]], dtype=np.float32)
    idx = np.array([[2, 0, 1]])
    sc = np.array([[0.9, 0.85, 0.8]], dtype=np.float32)
    assert fuse_reports(idx, sc, texts, emb, "top1") == ["Pneumothorax."]
    # Reports 0 and 1 agree with each other; 2 agrees with neither.
    assert fuse_reports(idx, sc, texts, emb, "consensus")[0] in (texts[0], texts[1])
    assert fuse_reports(idx, sc, texts, emb, "concat") == [
        "Pneumothorax. Heart normal. No effusion. Small effusion."
    ]


def test_retrieval_as_generation_end_to_end(bow, keyword_labeler):
    corpus = ["mild pulmonary edema", "large right pleural effusion", "cardiomegaly with edema"]
    refs = ["pulmonary edema mild", "right pleural effusion large"]
    q = bow.embed_images(["edema pulmonary", "effusion pleural right"])
    metrics, generated = retrieval_as_generation(
        q, refs, bow.embed_texts(corpus), corpus, GenerationConfig(), labeler=keyword_labeler
    )
    assert generated == corpus[:2]
    assert metrics["bleu1"] == pytest.approx(1.0)  # same words, other order
    assert metrics["chexpert"]["f1_micro"] == 1.0
    assert metrics["n"] == 2


def test_optional_metrics_degrade_with_a_reason(monkeypatch, keyword_labeler):
    import builtins

    real_import = builtins.__import__

    def no_bert_score(name, *args, **kwargs):
        if name == "bert_score":
            raise ImportError("blocked for the test")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_bert_score)
    with pytest.raises(MetricUnavailable, match="report-metrics"):
        bertscore(["a"], ["a"], "distilbert-base-uncased")
    out = report_metrics(["edema"], ["edema"], GenerationConfig(bertscore=True), keyword_labeler)
    assert "unavailable" in out["bertscore"] and out["bleu1"] > 0


def test_an_installed_metric_package_without_its_entry_point_is_unavailable(monkeypatch):
    import sys
    import types

    for module in ("bert_score", "radgraph", "green_score"):  # installed, but a release without the API
        monkeypatch.setitem(sys.modules, module, types.ModuleType(module))
    with pytest.raises(MetricUnavailable, match=r"bert_score\.score, which the installed bert-score lacks"):
        bertscore(["a"], ["a"], "distilbert-base-uncased")
    with pytest.raises(MetricUnavailable, match=r"radgraph\.F1RadGraph"):
        radgraph_f1(["a"], ["a"])
    with pytest.raises(MetricUnavailable, match=r"green_score\.GREEN.*report-metrics"):
        green_model_scores(["a"], ["a"], "some/model")
