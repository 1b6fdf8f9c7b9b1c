"""The published text-evaluation files (retrieval and error discrimination) read and scored as the scripts do."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from lexray.cli.main import app
from lexray.text.bench import (
    SeedErrorItem,
    SeedRetrievalItem,
    evaluate_bench,
    load_bench,
    text_id,
)
from lexray.text.published import SEPARATOR, query_format_for

VOCAB = "lungs clear effusion left right small cardiomegaly pneumothorax edema normal".split()


def bow(texts: list[str]) -> np.ndarray:
    """Bag of words over VOCAB (+1 so no row is zero): a deterministic stand-in encoder."""
    out = np.ones((len(texts), len(VOCAB)))
    for i, t in enumerate(texts):
        for w in t.lower().split():
            if w in VOCAB:
                out[i, VOCAB.index(w)] += 3
    return out / np.linalg.norm(out, axis=1, keepdims=True)


RETRIEVAL = [
    SeedRetrievalItem("find it", "small left effusion", "small left effusion"),
    SeedRetrievalItem("find it", "lungs clear", "normal  lungs"),  # same canonical text as the next answer
    SeedRetrievalItem("find it", "normal", " normal lungs "),
    SeedRetrievalItem("find it", "right pneumothorax", "cardiomegaly edema"),
]


def _naive_recall(items, k):
    docs = list(dict.fromkeys(" ".join(it.answer.split()) for it in items))
    q = bow([f"{it.instruction}\n{it.query}" for it in items])
    d = bow(docs)
    hits = 0
    for i, it in enumerate(items):
        scores = q[i] @ d.T
        top = sorted(range(len(docs)), key=lambda j: (-scores[j], j))[:k]
        hits += any(docs[j] == " ".join(it.answer.split()) for j in top)
    return hits / len(items)


def test_retrieval_is_duplicate_aware_with_clipped_k():
    got = evaluate_bench(bow, RETRIEVAL)
    assert got["n_docs"] == 3 and got["n_queries"] == 4
    assert set(got) == {"n_queries", "n_docs", "recall@1", "recall@3"}  # 5 and 10 clip to 3 documents
    for k in (1, 3):
        assert got[f"recall@{k}"] == pytest.approx(_naive_recall(RETRIEVAL, k))
    assert got["recall@1"] == 0.75  # "lungs clear" and "normal" both hit the one "normal lungs" document
    assert text_id("normal  lungs") == text_id(" normal lungs ") != text_id("normal lung")


def test_error_discrimination_strict_and_tie_aware():
    items = [
        SeedErrorItem("", "left effusion", ("left effusion", "right effusion", "edema", "normal")),
        SeedErrorItem("", "cardiomegaly", ("normal", "cardiomegaly", "edema", "lungs")),  # wrong: rank 2
        SeedErrorItem("", "edema", ("lungs", "lungs", "clear", "normal")),  # all tie with candidate0
    ]
    got = evaluate_bench(bow, items)
    sims = [[float(bow([it.query])[0] @ bow([c])[0]) for c in it.candidates] for it in items]
    assert got["accuracy_top1_strict"] == pytest.approx(2 / 3)  # a tie goes to the first index
    assert got["accuracy_top1_tie_aware"] == pytest.approx(2 / 3)
    assert got["mean_rank_candidate0"] == pytest.approx((1 + 2 + 1) / 3)
    assert got["mean_margin"] == pytest.approx(np.mean([s[0] - max(s[1:]) for s in sims]))
    assert got["recall@2_within4"] == 1.0 and got["chance_level"] == 0.25 and got["n_total"] == 3


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_files_in_every_format_and_query_formats(tmp_path, suffix):
    rows = [{"instruction": it.instruction, "query": it.query, "answer": it.answer} for it in RETRIEVAL]
    path = tmp_path / f"bench{suffix}"
    frame = pd.DataFrame(rows)
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix == ".parquet":
        frame.to_parquet(path)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    items = load_bench(path)
    assert items[1] == RETRIEVAL[1] if suffix != ".csv" else items[1].answer == "normal  lungs"
    seen: list[str] = []
    evaluate_bench(
        lambda t: (seen.extend(t), bow(t))[1], items, query_format="{instruction}; " + SEPARATOR + " {query}"
    )
    assert f"find it; {SEPARATOR} small left effusion" in seen and "small left effusion" in seen


def test_query_format_follows_the_model_row(tiny_llama_dir):
    from lexray.text import TextEncoder

    assert query_format_for(TextEncoder.from_pretrained(str(tiny_llama_dir))) == "{instruction}\n{query}"
    enc = TextEncoder.from_pretrained(str(tiny_llama_dir), separator=SEPARATOR)
    assert query_format_for(enc) == "{instruction}; " + SEPARATOR + " {query}"


def test_text_evaluate_cli_reads_the_published_format(tiny_llama_dir, tmp_path):
    path = tmp_path / "errors.csv"
    pd.DataFrame(
        [{"instruction": "pick", "query": it.query, **{f"candidate{i}": c for i, c in enumerate(it.candidates)}}
         for it in [SeedErrorItem("", "left effusion", ("left effusion", "right effusion", "edema", "normal"))] * 3]
    ).to_csv(path, index=False)  # fmt: skip
    out = tmp_path / "m.json"
    r = CliRunner().invoke(
        app, ["text", "evaluate", "--model", str(tiny_llama_dir), "--bench", str(path), "--out", str(out)]
    )
    assert r.exit_code == 0, r.output
    assert "accuracy_top1_tie_aware" in json.loads(out.read_text())["metrics"]
