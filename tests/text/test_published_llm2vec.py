"""LLM2Vec4CXR import: a tiny checkpoint in the published layout, checked against a reference forward.

The reference below is written from the published algorithm (PUBLISHED_SYSTEM.md §1), not from lexray:
split at the separator and glue the halves, left padding with pad = EOS, BOS and no EOS, a Llama with
no causal mask and an additive key-padding mask, pooling over the last n positions (n from a separate
tokenisation of the pooled text, n = 0 -> the whole padded row), latent attention per sample.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from lexray.cli.main import app
from lexray.models import ModelNotAvailableError
from lexray.testing import tiny_tokenizer
from lexray.text import TextEncoder
from lexray.text.published import SEPARATOR, CheckpointError, import_llm2vec4cxr, latent_shapes

HIDDEN = 32
LATENTS = 16
HEADS = 8  # the published pooler's head count
INSTR = "Retrieve the image that best matches the following report.; "

TEXTS = [
    f"findings ; {SEPARATOR}lungs are clear .",
    f"{INSTR}{SEPARATOR}there is mild cardiomegaly with small left pleural effusion",
    "no acute cardiopulmonary process",  # a document: no separator, the whole text is pooled
    f"impression ; {SEPARATOR}",  # n = 0: the whole padded row, pads and BOS included
]


def write_published(directory: Path, seed: int = 0, drop: str = "", reshape: str = "") -> Path:
    """A tiny LLM2Vec4CXR directory: config.json (LlamaBiModel, auto_map), model.safetensors, tokenizer."""
    from transformers import LlamaConfig, LlamaModel

    torch.manual_seed(seed)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = tiny_tokenizer("llama")
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=HIDDEN,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaModel(config)
    with torch.no_grad():  # non-trivial norms, so a skipped final norm would show
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(torch.randn_like(p) * 0.3)
    state = {f"model.{k}": v.contiguous() for k, v in model.state_dict().items()}
    for key, shape in latent_shapes(HIDDEN, LATENTS).items():
        state[f"latent_attn.{key}"] = torch.randn(shape) * 0.3
    if drop:
        del state[drop]
    if reshape:
        state[reshape] = torch.randn(3, 3)
    save_file(state, directory / "model.safetensors")
    config.save_pretrained(directory)
    data = json.loads((directory / "config.json").read_text())
    data["architectures"] = ["LlamaBiModel"]
    data["auto_map"] = {"AutoModel": "modeling_llm2vec4cxr.LlamaBiModel"}  # remote code lexray never runs
    (directory / "config.json").write_text(json.dumps(data))
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def published_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_published(tmp_path_factory.mktemp("llm2vec4cxr"))


def reference_embed(directory: Path, texts: list[str], pooling: str) -> torch.Tensor:
    """The published forward, written independently of lexray (fp32)."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaModel

    state = load_file(directory / "model.safetensors")
    model = LlamaModel(LlamaConfig.from_pretrained(directory))
    model.load_state_dict({k[6:]: v for k, v in state.items() if k.startswith("model.")})
    model.eval()
    for layer in model.layers:
        layer.self_attn.is_causal = False
    tok = AutoTokenizer.from_pretrained(directory)
    tok.pad_token, tok.padding_side = tok.eos_token, "left"
    joined, parts = [], []
    for t in texts:
        pieces = t.split(SEPARATOR)
        joined.append("".join(pieces))
        parts.append(pieces[1] if len(pieces) > 1 else t)
    batch = tok(joined, padding=True, truncation=True, max_length=512, return_tensors="pt")
    counts = [len(tok(p, add_special_tokens=False)["input_ids"]) for p in parts]
    keys = batch["attention_mask"][:, None, None, :].float()  # (B, 1, 1, T)
    seq = batch["input_ids"].shape[1]
    additive = ((1.0 - keys) * torch.finfo(torch.float32).min).expand(-1, 1, seq, seq)
    with torch.no_grad():
        hidden = model(input_ids=batch["input_ids"], attention_mask=additive).last_hidden_state
    lat = {k[12:]: v for k, v in state.items() if k.startswith("latent_attn.")}
    out = []
    for i, n in enumerate(counts):
        h = hidden[i, -n:, :] if n else hidden[i]  # h[i, -0:] is the whole row
        if pooling == "mean":
            out.append(h.mean(0))
            continue
        w, b = lat["multihead_attn.in_proj_weight"], lat["multihead_attn.in_proj_bias"]
        q = h @ w[:HIDDEN].T + b[:HIDDEN]
        k = lat["latents"] @ w[HIDDEN : 2 * HIDDEN].T + b[HIDDEN : 2 * HIDDEN]
        v = lat["latents"] @ w[2 * HIDDEN :].T + b[2 * HIDDEN :]
        hd = HIDDEN // HEADS
        heads = []
        for j in range(HEADS):
            s = slice(j * hd, (j + 1) * hd)
            heads.append(torch.softmax(q[:, s] @ k[:, s].T / math.sqrt(hd), dim=-1) @ v[:, s])
        att = torch.cat(heads, dim=-1) @ lat["multihead_attn.out_proj.weight"].T
        att = att + lat["multihead_attn.out_proj.bias"]
        x = (
            F.gelu(att @ lat["mlp.0.weight"].T + lat["mlp.0.bias"]) @ lat["mlp.2.weight"].T
            + lat["mlp.2.bias"]
        )
        out.append(x.mean(0))
    return torch.stack(out)


@pytest.mark.parametrize("pooling", ["latent", "mean"])
def test_import_reproduces_the_published_forward(published_dir, tmp_path, pooling):
    out = import_llm2vec4cxr(published_dir, tmp_path / "enc", pooling=pooling, dtype="float32")
    encoder = TextEncoder.from_pretrained(out)
    with torch.no_grad():
        ours = encoder(encoder.tokenize(TEXTS))  # one batch, as the reference pads it
    expected = reference_embed(published_dir, TEXTS, pooling)
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)
    # The n = 0 row really pools padding: it changes when the batch is padded differently.
    alone = encoder(encoder.tokenize(TEXTS[3:]))
    assert not torch.allclose(alone[0], ours[3], atol=1e-4)
    # Saved and reloaded, the directory alone embeds identically.
    np.testing.assert_allclose(
        TextEncoder.from_pretrained(out).encode(TEXTS[:3], normalize=False),
        encoder.encode(TEXTS[:3], normalize=False),
        atol=1e-6,
    )


def test_default_is_bf16_with_the_published_settings(published_dir, tmp_path):
    encoder = TextEncoder.from_pretrained(import_llm2vec4cxr(published_dir, tmp_path / "enc"))
    assert next(encoder.backbone.parameters()).dtype == torch.bfloat16
    cfg = encoder.config
    assert (cfg.padding_side, cfg.max_length, cfg.separator, cfg.append_eos) == (
        "left",
        512,
        SEPARATOR,
        False,
    )
    assert encoder.tokenizer.pad_token == encoder.tokenizer.eos_token
    ids = encoder.tokenize(["lungs are clear"])["input_ids"][0].tolist()
    assert ids[0] == encoder.tokenizer.bos_token_id and encoder.tokenizer.eos_token_id not in ids
    expected = reference_embed(published_dir, TEXTS[:3], "latent")
    got = torch.from_numpy(encoder.encode(TEXTS[:3], normalize=False))
    torch.testing.assert_close(got, expected, atol=0.1, rtol=0.1)  # bf16 weights


@pytest.mark.parametrize(
    ("drop", "reshape", "named"),
    [
        ("latent_attn.latents", "", "latent_attn.latents"),
        ("latent_attn.mlp.2.bias", "", "latent_attn.mlp.2.bias"),
        ("", "latent_attn.multihead_attn.in_proj_weight", "latent_attn.multihead_attn.in_proj_weight"),
        ("model.layers.1.mlp.up_proj.weight", "", "model.layers.1.mlp.up_proj.weight"),
    ],
)
def test_bad_checkpoints_name_the_tensor(tmp_path, drop, reshape, named):
    src = write_published(tmp_path / "bad", drop=drop, reshape=reshape)
    with pytest.raises(CheckpointError, match=named.replace(".", r"\.")):
        import_llm2vec4cxr(src, tmp_path / "enc")


def test_mean_pooling_needs_no_latents(tmp_path):
    src = write_published(tmp_path / "nolatent", drop="latent_attn.latents")
    out = import_llm2vec4cxr(src, tmp_path / "enc", pooling="mean", dtype="float32")
    assert TextEncoder.from_pretrained(out).encode(["lungs are clear"]).shape == (1, HIDDEN)


def test_truncated_and_foreign_files(published_dir, tmp_path):
    import shutil

    src = tmp_path / "trunc"
    shutil.copytree(published_dir, src)
    data = (src / "model.safetensors").read_bytes()
    (src / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        import_llm2vec4cxr(src, tmp_path / "enc")
    state = load_file(published_dir / "model.safetensors")
    save_file({k.removeprefix("model."): v for k, v in state.items()}, src / "model.safetensors")
    with pytest.raises(CheckpointError, match="published layout"):
        import_llm2vec4cxr(src, tmp_path / "enc")
    (src / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        import_llm2vec4cxr(src, tmp_path / "enc")
    shutil.copy(published_dir / "model.safetensors", src / "model.safetensors")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (src / name).unlink()
    with pytest.raises(CheckpointError, match="tokenizer"):
        import_llm2vec4cxr(src, tmp_path / "enc")


def test_offline_hub_id_gives_the_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotAvailableError, match="lukeingawesome/llm2vec4cxr.*HF_HUB_OFFLINE"):
        import_llm2vec4cxr("lukeingawesome/llm2vec4cxr", tmp_path / "enc")
    result = CliRunner().invoke(
        app, ["models", "import", "llm2vec4cxr", "lukeingawesome/llm2vec4cxr", "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 2
    assert result.output.strip().startswith("error:") and "HF_HUB_OFFLINE" in result.output
    assert "Traceback" not in result.output


def test_cli_import_then_encode(published_dir, tmp_path):
    runner = CliRunner()
    out = tmp_path / "enc"
    args = ["models", "import", "llm2vec4cxr", str(published_dir), "--out", str(out), "--dtype", "float32"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    texts = tmp_path / "t.txt"
    texts.write_text("\n".join(TEXTS[:3]) + "\n")
    result = runner.invoke(
        app, ["encode", "--model", str(out), "--texts", str(texts), "--out", str(tmp_path / "e.npy")]
    )
    assert result.exit_code == 0, result.output
    emb = np.load(tmp_path / "e.npy")
    expected = F.normalize(reference_embed(published_dir, TEXTS[:3], "latent"), dim=-1).numpy()
    np.testing.assert_allclose(emb, expected, atol=1e-5)
    bad = runner.invoke(app, [*args[:-2], "--dtype", "float64"])
    assert bad.exit_code == 2 and "float64" in bad.output
