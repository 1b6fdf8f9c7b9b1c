"""Slow: the protocols and report metrics on the real Open-i reports (R2Gen split) with the real labeler."""

from __future__ import annotations

import numpy as np
import pytest

from lexray.evaluate.generation import GenerationConfig, retrieval_as_generation
from lexray.evaluate.protocol import RetrievalConfig, bidirectional_retrieval

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def openi_studies(openi_dir):
    from lexray.data.sources.openi import load_openi

    studies = load_openi(openi_dir / "NLMCXR_reports.tgz", split_file=openi_dir / "r2gen_split.json").studies
    return [s for s in studies if s.report_text]


def test_exact_pair_vs_duplicate_aware_on_real_reports(openi_studies, bow):
    test = [s for s in openi_studies if s.split == "test"]
    texts = [s.report_text for s in test]
    emb = bow.embed_texts(texts)
    # "Images" that embed exactly like their own report: every exact-pair miss is a tie with another
    # report that has the same bag of words (identical normal reports), counted ahead (pessimistic).
    res = bidirectional_retrieval(emb, np.arange(len(test)), emb, texts, RetrievalConfig(levels=("study",)))
    _, inverse, counts = np.unique(emb, axis=0, return_inverse=True, return_counts=True)
    unique_share = 100.0 * np.mean(counts[inverse.ravel()] == 1)
    assert res["study/exact/image_to_text"]["hit@1"] == pytest.approx(unique_share)
    assert res["study/exact/image_to_text"]["hit@1"] < 95.0  # Open-i has many identical reports
    assert res["study/dedup/image_to_text"]["hit@1"] >= res["study/exact/image_to_text"]["hit@1"]
    optimistic = bidirectional_retrieval(
        emb,
        np.arange(len(test)),
        emb,
        texts,
        RetrievalConfig(levels=("study",), modes=("exact",), ties="optimistic"),
    )
    assert optimistic["study/exact/image_to_text"]["hit@1"] == 100.0


def test_retrieval_as_generation_with_the_real_labeler(openi_studies, bow):
    test = [s for s in openi_studies if s.split == "test"][:150]
    train = [s for s in openi_studies if s.split == "train"]
    refs = [s.report_text for s in test]
    corpus = [s.report_text for s in train]
    metrics, generated = retrieval_as_generation(
        bow.embed_texts(refs),
        refs,
        bow.embed_texts(corpus),
        corpus,
        GenerationConfig(),
        query_ids=[s.study_id for s in test],
        corpus_ids=[s.study_id for s in train],
    )
    assert len(generated) == len(test)
    assert 0.0 < metrics["bleu4"] < metrics["bleu1"] < 1.0
    assert 0.0 < metrics["rougeL"] < 1.0
    # Nearest reports by shared words mostly share the findings: label F1 far above chance.
    assert metrics["chexpert"]["f1_micro"] > 0.3
    assert set(metrics["chexpert"]["f1"]) >= {"Cardiomegaly", "Pleural Effusion", "No Finding"}
