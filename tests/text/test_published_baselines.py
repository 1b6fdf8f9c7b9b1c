"""The seed's text baselines as table rows: each row's pooling, padding and special tokens, on tiny models.

References follow the seed's evaluation script (PUBLISHED_SYSTEM.md §3.1): Qwen3-Embedding = causal,
left padding, last position; Bio_ClinicalBERT = mean over the attention mask ([CLS]/[SEP] included);
CXR-BERT = ``last_hidden_state[:, 0]``.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from typer.testing import CliRunner

from lexray.cli.main import app
from lexray.models import ModelNotAvailableError
from lexray.text import TextEncoder
from lexray.text import published as pub

TEXTS = [
    "lungs are clear .",
    "there is mild cardiomegaly with small left pleural effusion",
    "no acute process",
]


@pytest.fixture
def row_on(monkeypatch):
    """Point a published row at a tiny local model directory."""

    def _point(name: str, directory) -> None:
        rows = dict(pub.PUBLISHED_TEXT_MODELS)
        rows[name] = dataclasses.replace(rows[name], hub_id=str(directory))
        monkeypatch.setattr(pub, "PUBLISHED_TEXT_MODELS", rows)

    return _point


def _hf_states(directory, texts, padding_side, causal):
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(directory)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = padding_side
    batch = tok(texts, padding=True, return_tensors="pt")
    model = AutoModel.from_pretrained(directory).eval()
    if not causal:
        raise AssertionError("only causal decoders or BERT encoders here")
    with torch.no_grad():
        return model(**batch).last_hidden_state, batch["attention_mask"]


def test_qwen3_row_is_causal_left_padded_last_token(tiny_llama_dir, row_on):
    row_on("qwen3-embedding-0.6b", tiny_llama_dir)
    encoder = TextEncoder.from_pretrained(
        "qwen3-embedding-0.6b", bidirectional=True
    )  # as `text evaluate` passes
    assert not encoder.config.bidirectional and encoder.config.padding_side == "left"
    with torch.no_grad():
        ours = encoder(encoder.tokenize(TEXTS))
    hidden, _ = _hf_states(tiny_llama_dir, TEXTS, "left", causal=True)
    torch.testing.assert_close(ours, hidden[:, -1], atol=1e-5, rtol=1e-5)


def test_bio_clinicalbert_row_is_attention_mask_mean(tiny_bert_dir, row_on):
    row_on("bio-clinicalbert", tiny_bert_dir)
    encoder = TextEncoder.from_pretrained("bio-clinicalbert")
    with torch.no_grad():
        ours = encoder(encoder.tokenize(TEXTS))
    hidden, mask = _hf_states(tiny_bert_dir, TEXTS, "right", causal=True)
    m = mask.unsqueeze(-1).float()
    torch.testing.assert_close(ours, (hidden * m).sum(1) / m.sum(1), atol=1e-5, rtol=1e-5)


def test_cxr_bert_row_is_cls(tiny_bert_dir, row_on, tmp_path):
    row_on("cxr-bert-specialized", tiny_bert_dir)
    encoder = TextEncoder.from_pretrained("cxr-bert-specialized")
    with torch.no_grad():
        ours = encoder(encoder.tokenize(TEXTS))
    hidden, _ = _hf_states(tiny_bert_dir, TEXTS, "right", causal=True)
    torch.testing.assert_close(ours, hidden[:, 0], atol=1e-5, rtol=1e-5)
    texts = tmp_path / "t.txt"
    texts.write_text("\n".join(TEXTS) + "\n")
    result = CliRunner().invoke(
        app,
        [
            "encode",
            "--model",
            "cxr-bert-specialized",
            "--texts",
            str(texts),
            "--out",
            str(tmp_path / "e.npy"),
        ],
    )
    assert result.exit_code == 0, result.output


def test_rows_offline_name_the_model(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for name, hub_id in (
        ("bio-clinicalbert", "emilyalsentzer/Bio_ClinicalBERT"),
        ("llm2vec4cxr", pub.LLM2VEC4CXR_HUB_ID),
    ):
        with pytest.raises(ModelNotAvailableError, match=f"{hub_id}.*HF_HUB_OFFLINE"):
            TextEncoder.from_pretrained(name)


def test_models_list_shows_published_models_with_licences():
    result = CliRunner().invoke(app, ["models", "list"], env={"COLUMNS": "300"})
    assert result.exit_code == 0
    for name in (
        "llm2vec4cxr",
        "qwen3-embedding-0.6b",
        "bio-clinicalbert",
        "cxr-bert-specialized",
        "llm2clip4cxr",
        "biomedclip",
    ):
        assert name in result.output
    flat = " ".join(result.output.split())  # rich wraps long cells
    assert "Llama 3.2 Community" in flat and "Apache-2.0" in flat
