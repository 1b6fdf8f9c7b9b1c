"""TextEncoder: bidirectionality, pooling masks, LoRA gradients, save/load, fingerprint."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from lexray.text import TextEncoder
from lexray.text.config import LatentPoolingConfig
from lexray.text.encoder import plan_batches
from lexray.text.pooling import LastTokenPooling, LatentAttentionPooling, MeanPooling, masked_mean

INSTR = "represent this report for retrieval : "


def _first_token_state(enc: TextEncoder, texts: list[str]) -> torch.Tensor:
    batch = enc.tokenize(texts)
    with torch.no_grad():
        hidden = enc.token_states(batch)  # (B, T, D)
    first = batch["attention_mask"].argmax(dim=1)  # index of the first real token per row
    return hidden[torch.arange(len(texts)), first]


@pytest.mark.parametrize("side", ["right", "left"])
def test_later_token_changes_first_token_output(tiny_llama_dir, side):
    enc = TextEncoder.from_pretrained(str(tiny_llama_dir), padding_side=side).eval()
    a, b = "lungs are clear", "lungs are normal"
    # batch size 1
    assert not torch.allclose(_first_token_state(enc, [a]), _first_token_state(enc, [b]), atol=1e-6)
    # padded batch: a long text shares the batch so the short texts are padded
    long = "there is mild cardiomegaly with small left pleural effusion and right lower lobe opacity"
    s1 = _first_token_state(enc, [a, long])[0]
    s2 = _first_token_state(enc, [b, long])[0]
    assert not torch.allclose(s1, s2, atol=1e-6)
    # padding must not change the real tokens: padded equals unpadded
    assert torch.allclose(s1, _first_token_state(enc, [a])[0], atol=1e-5)


def test_causal_mode_keeps_first_token_fixed(tiny_llama_dir):
    enc = TextEncoder.from_pretrained(str(tiny_llama_dir), bidirectional=False).eval()
    s1 = _first_token_state(enc, ["lungs are clear"])
    s2 = _first_token_state(enc, ["lungs are normal"])
    assert torch.allclose(s1, s2, atol=1e-6)


def test_every_attention_layer_is_bidirectional(tiny_llama_dir):
    enc = TextEncoder.from_pretrained(str(tiny_llama_dir))
    flags = [m.self_attn.is_causal for m in enc.backbone.layers]
    assert flags == [False, False]


@pytest.mark.parametrize("pooling", ["mean", "last", "latent"])
def test_left_and_right_padding_embed_identically(tiny_llama_dir, pooling):
    texts = ["lungs are clear .", "there is mild cardiomegaly with small left pleural effusion"]
    right = TextEncoder.from_pretrained(str(tiny_llama_dir), pooling=pooling, instruction=INSTR)
    left = TextEncoder.from_pretrained(
        str(tiny_llama_dir), pooling=pooling, instruction=INSTR, padding_side="left"
    )
    left.pooling.load_state_dict(right.pooling.state_dict())
    np.testing.assert_allclose(right.encode(texts), left.encode(texts), atol=1e-5)


def test_pool_mask_excludes_instruction_and_padding(tiny_llama_dir):
    enc = TextEncoder.from_pretrained(str(tiny_llama_dir), instruction=INSTR)
    batch = enc.tokenize(["lungs are clear .", "no pleural effusion with heart size normal"])
    n_instr = len(INSTR.split())
    pool = batch["pool_mask"]
    # BOS + instruction words are never pooled; report words and the appended EOS are
    assert not pool[:, : 1 + n_instr].any()
    assert pool[0].sum().item() == 4 + 1  # 4 words + EOS
    assert not pool[batch["attention_mask"] == 0].any()


def test_pooled_output_ignores_instruction_and_padding_tokens():
    hidden = torch.randn(2, 5, 4)
    mask = torch.tensor([[0, 1, 1, 0, 0], [1, 1, 1, 1, 0]], dtype=torch.bool)
    changed = hidden.clone()
    changed[0, 0] += 100.0  # an instruction position
    changed[0, 3:] -= 50.0  # padding positions
    for pool in (MeanPooling(), LastTokenPooling()):
        assert torch.allclose(pool(hidden, mask)[0], pool(changed, mask)[0])
    assert torch.allclose(MeanPooling()(hidden, mask)[0], hidden[0, 1:3].mean(0))
    assert torch.allclose(LastTokenPooling()(hidden, mask)[1], hidden[1, 3])
    # latent pooling mixes tokens only through the latents (queries are tokens), so masked tokens drop out
    lat = LatentAttentionPooling(4, LatentPoolingConfig(num_latents=3, num_heads=2, mlp_ratio=2))
    torch.nn.init.normal_(lat.mlp[-1].weight)
    assert torch.allclose(lat(hidden, mask)[0], lat(changed, mask)[0], atol=1e-6)


def test_masked_mean_matches_loop():
    hidden = torch.randn(3, 6, 5)
    mask = torch.rand(3, 6) > 0.4
    mask[:, 0] = True
    expected = torch.stack([hidden[i][mask[i]].mean(0) for i in range(3)])
    assert torch.allclose(masked_mean(hidden, mask), expected, atol=1e-6)


def test_only_lora_and_pooling_params_get_grads(tiny_llama_dir):
    enc = TextEncoder.from_pretrained(str(tiny_llama_dir), pooling="latent", lora={"enabled": True, "r": 4})
    enc.train()
    # lora_B and the pooler's output projections start at zero (identity start); move them off zero as
    # one optimizer step would, so every trainable tensor is on the gradient path
    with torch.no_grad():
        for _n, p in enc.named_parameters():
            if p.requires_grad and not p.any():
                p.normal_(std=0.02)
    out = enc(enc.tokenize(["lungs are clear .", "mild cardiomegaly"]))
    out.pow(2).sum().backward()
    with_grad = {n for n, p in enc.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    trainable = {n for n, p in enc.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or n.startswith("pooling.") for n in trainable)
    assert trainable == with_grad
    assert not any(p.grad is not None for n, p in enc.named_parameters() if not p.requires_grad)


def test_lora_last_n_layers(tiny_llama_dir):
    enc = TextEncoder.from_pretrained(str(tiny_llama_dir), lora={"enabled": True, "r": 2, "last_n_layers": 1})
    names = [n for n, _ in enc.named_parameters() if "lora_" in n]
    assert names and all(".layers.1." in n for n in names)


def test_scale_lora_interpolates_merged_weights(tiny_llama_dir):
    def merged_q(factor: float | None) -> torch.Tensor:
        enc = TextEncoder.from_pretrained(str(tiny_llama_dir), lora={"enabled": True, "r": 4})
        torch.manual_seed(0)
        with torch.no_grad():
            for n, p in enc.named_parameters():
                if "lora_" in n:
                    p.normal_(std=0.1)
        if factor is not None:
            enc.scale_lora(factor)
        enc.merge_lora()
        return enc.base_model().layers[0].self_attn.q_proj.weight.detach().clone()

    base = TextEncoder.from_pretrained(str(tiny_llama_dir)).base_model().layers[0].self_attn.q_proj.weight
    full, half = merged_q(None), merged_q(0.5)
    assert not torch.allclose(full, base)
    torch.testing.assert_close(half, base + 0.5 * (full - base))
    plain = TextEncoder.from_pretrained(str(tiny_llama_dir))
    with pytest.raises(ValueError, match="needs LoRA adapters"):
        plain.scale_lora(0.5)


@pytest.mark.parametrize("pooling", ["mean", "latent"])
def test_save_load_identical_embeddings_adapter(tiny_llama_dir, tmp_path, pooling):
    texts = ["lungs are clear .", "small left pleural effusion", ""]
    enc = TextEncoder.from_pretrained(
        str(tiny_llama_dir), pooling=pooling, instruction=INSTR, lora={"enabled": True}
    )
    with torch.no_grad():  # make adapters and pooler non-trivial
        for _n, p in enc.named_parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    before = enc.encode(texts)
    enc.save_pretrained(tmp_path / "enc")
    assert not list((tmp_path / "enc").rglob("*.bin")) and not list((tmp_path / "enc").rglob("*.pt"))
    loaded = TextEncoder.from_pretrained(tmp_path / "enc")
    np.testing.assert_array_equal(before, loaded.encode(texts))
    assert loaded.fingerprint == enc.fingerprint
    assert loaded.config.instruction == INSTR


def test_save_load_merged_and_fingerprint(tiny_llama_dir, tmp_path):
    texts = ["lungs are clear .", "mild cardiomegaly"]
    base = TextEncoder.from_pretrained(str(tiny_llama_dir))
    enc = TextEncoder.from_pretrained(str(tiny_llama_dir), lora={"enabled": True})
    fresh = enc.fingerprint
    with torch.no_grad():
        for n, p in enc.named_parameters():
            if "lora_B" in n:
                p.add_(0.1)
    assert enc.fingerprint not in (base.fingerprint, fresh)  # any trained change gives a new key
    enc.merge_lora()
    before = enc.encode(texts)
    enc.save_pretrained(tmp_path / "m")
    loaded = TextEncoder.from_pretrained(tmp_path / "m")
    np.testing.assert_allclose(before, loaded.encode(texts), atol=1e-6)
    assert loaded.fingerprint == enc.fingerprint
    assert TextEncoder.from_pretrained(str(tiny_llama_dir), max_length=8).fingerprint != base.fingerprint
    assert TextEncoder.from_pretrained(str(tiny_llama_dir), instruction=INSTR).fingerprint != base.fingerprint


def test_encode_restores_order_and_normalises(tiny_llama_dir):
    enc = TextEncoder.from_pretrained(str(tiny_llama_dir))
    texts = [
        "lungs",
        "there is mild cardiomegaly with small left pleural effusion",
        "heart size is normal",
        "heart size is stable",
        "no pleural effusion",
    ]
    lengths = [len(ids) for ids, _ in enc._encode_ids(texts)]
    assert any(len(b) > 1 for b in plan_batches(lengths, 2))  # padded batches are really exercised
    out = enc.encode(texts, batch_size=2)
    assert out.dtype == np.float32 and out.shape == (len(texts), enc.dim)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    one_by_one = np.concatenate([enc.encode([t]) for t in texts])
    np.testing.assert_allclose(out, one_by_one, atol=1e-5)


def _batch_cost(lengths: list[int], batches: list[list[int]], overhead: int) -> int:
    return sum(len(b) * max(lengths[i] for i in b) + overhead for b in batches)


def test_plan_batches_finds_the_cheapest_cut():
    rng = np.random.default_rng(0)
    for _ in range(20):
        lengths = [int(x) for x in rng.integers(1, 300, size=int(rng.integers(1, 10)))]
        plan = plan_batches(lengths, max_batch=3, overhead=16)
        assert sorted(i for b in plan for i in b) == list(range(len(lengths)))
        assert all(1 <= len(b) <= 3 for b in plan)
        # Brute force: every way to cut the longest-first order into runs of at most 3.
        order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
        best = None
        for mask in itertools.product([False, True], repeat=len(order) - 1):
            cuts = [0] + [k + 1 for k, c in enumerate(mask) if c] + [len(order)]
            runs = [order[a:b] for a, b in itertools.pairwise(cuts)]
            if all(len(r) <= 3 for r in runs):
                cost = _batch_cost(lengths, runs, 16)
                best = cost if best is None else min(best, cost)
        assert _batch_cost(lengths, plan, 16) == best


def test_plan_batches_gives_an_outlier_its_own_batch():
    lengths = [40] * 31 + [256]
    plan = plan_batches(lengths, max_batch=32)
    assert [31] in plan  # fixed slices would pad 31 short reports to 256 tokens
    assert _batch_cost(lengths, plan, 16) < _batch_cost(lengths, [list(range(32))], 16)
    with pytest.raises(ValueError, match="max_batch"):
        plan_batches(lengths, max_batch=0)
    assert plan_batches([], max_batch=4) == []


def test_bert_encoder_same_interface(tiny_bert_dir):
    enc = TextEncoder.from_pretrained(str(tiny_bert_dir), instruction=INSTR)
    batch = enc.tokenize(["lungs are clear ."])
    assert batch["pool_mask"][0].sum().item() == 4  # [CLS], instruction, [SEP] excluded
    out = enc.encode(["lungs are clear .", "mild cardiomegaly"])
    assert out.shape == (2, 32)


def test_unsupported_architecture_error(tmp_path):
    from lexray.text._arch import arch_spec

    with pytest.raises(ValueError, match="not supported"):
        arch_spec("t5")


def test_num_layers_keeps_the_first_blocks(tiny_llama_dir, tmp_path):
    full = TextEncoder.from_pretrained(str(tiny_llama_dir)).eval()
    short = TextEncoder.from_pretrained(str(tiny_llama_dir), num_layers=1).eval()
    assert len(short.backbone.layers) == 1 and short.backbone.config.num_hidden_layers == 1
    # The kept block carries the file's weights, not a fresh initialisation.
    torch.testing.assert_close(
        short.backbone.layers[0].self_attn.q_proj.weight, full.backbone.layers[0].self_attn.q_proj.weight
    )
    assert short.fingerprint != full.fingerprint
    texts = ["lungs are clear .", "small left pleural effusion"]
    assert not np.allclose(short.encode(texts), full.encode(texts), atol=1e-4)
    # still bidirectional
    assert not torch.allclose(
        _first_token_state(short, ["lungs are clear"]),
        _first_token_state(short, ["lungs are normal"]),
        atol=1e-6,
    )
    short.save_pretrained(tmp_path / "s")
    loaded = TextEncoder.from_pretrained(tmp_path / "s")
    assert len(loaded.backbone.layers) == 1
    np.testing.assert_allclose(short.encode(texts), loaded.encode(texts), atol=1e-6)


def test_num_layers_beyond_the_model_is_an_error(tiny_llama_dir):
    with pytest.raises(ValueError, match="num_layers=5.*has 2 layers"):
        TextEncoder.from_pretrained(str(tiny_llama_dir), num_layers=5)


def test_final_norm_off_pools_the_raw_states_of_the_last_kept_layer(tiny_llama_dir, tmp_path):
    from lexray.text.encoder import _position_ids, bidirectional_mask

    full = TextEncoder.from_pretrained(str(tiny_llama_dir)).eval()
    raw = TextEncoder.from_pretrained(str(tiny_llama_dir), num_layers=1, final_norm=False).eval()
    batch = full.tokenize(["lungs are clear .", "small left pleural effusion"])
    att = batch["attention_mask"]
    with torch.no_grad():
        states = full.backbone(
            input_ids=batch["input_ids"],
            attention_mask=bidirectional_mask(att),
            position_ids=_position_ids(att),
            output_hidden_states=True,
        ).hidden_states
        torch.testing.assert_close(raw.token_states(batch), states[1])  # after block 1, no norm
    assert raw.fingerprint != TextEncoder.from_pretrained(str(tiny_llama_dir), num_layers=1).fingerprint
    enc = TextEncoder.from_pretrained(
        str(tiny_llama_dir), num_layers=1, final_norm=False, lora={"enabled": True}
    )
    with torch.no_grad():
        for n, p in enc.named_parameters():
            if "lora_B" in n:
                p.add_(0.1)
    texts = ["lungs are clear .", "mild cardiomegaly"]
    before = enc.encode(texts)
    enc.merge_lora()
    with torch.no_grad():  # trained gains, so a norm lost or re-initialised on the way shows
        enc.dropped_final_norm().weight.uniform_(0.5, 2.0)
    gains = enc.dropped_final_norm().weight.clone()
    enc.save_pretrained(tmp_path / "m")
    loaded = TextEncoder.from_pretrained(tmp_path / "m")
    np.testing.assert_allclose(before, loaded.encode(texts), atol=1e-5)
    # model/ keeps the dropped norm: a complete directory, and MNTP on the loaded encoder reads it
    assert isinstance(enc.backbone.norm, torch.nn.Identity)
    torch.testing.assert_close(loaded.dropped_final_norm().weight, gains)
