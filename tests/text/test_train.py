"""Training stages on tiny models: MNTP masking and loss, contrastive loss vs a naive reference,
false-negative masking, GradCache equivalence, the full run and the paper config's code path."""

from __future__ import annotations

import dataclasses
import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

from lexray.config import load_config
from lexray.data.study import Study, normalize_report
from lexray.text import LoraSettings, TextEncoder
from lexray.text.config import TextTrainConfig
from lexray.text.contrastive import InfoNCELoss, false_negative_mask, grad_cache_backward
from lexray.text.mntp import IGNORE, MNTPHead, MNTPLoss, mask_batch, mask_token_id
from lexray.text.pairs import batches_without_duplicates, build_examples, stable_hash

REPO = Path(__file__).resolve().parents[2]

REPORTS = [
    ("The lungs are clear. No pleural effusion or pneumothorax.", "No acute cardiopulmonary process."),
    ("Mild cardiomegaly. Small left pleural effusion.", "Cardiomegaly with small left effusion."),
    ("Right lower lobe opacity, concerning for pneumonia.", "Right lower lobe pneumonia."),
    ("Heart size is normal. There is a small right pneumothorax.", "Small right pneumothorax."),
    ("Moderate pulmonary edema. Stable cardiomegaly.", "Pulmonary edema."),
    ("Left lower lobe atelectasis. No pneumothorax.", "Left basilar atelectasis."),
]


def _studies(n: int = 12, split: str = "train", prefix: str = "S") -> list[Study]:
    out = []
    for i in range(n):
        f, imp = REPORTS[i % len(REPORTS)]
        out.append(
            Study(
                study_id=f"{prefix}{i}",
                patient_id=f"{prefix}P{i}",
                source="synthetic",
                split=split,
                findings=f,
                impression=imp,
            )
        )
    return out


# ---------------------------------------------------------------------------------------------- MNTP


def test_mask_batch_only_masks_report_tokens(tiny_llama_dir):
    enc = TextEncoder.from_pretrained(str(tiny_llama_dir), instruction="represent this report : ")
    batch = enc.tokenize(["lungs are clear .", "mild cardiomegaly with small left pleural effusion"])
    gen = torch.Generator().manual_seed(0)
    masked, labels = mask_batch(batch, 0.5, mask_token_id(enc), 50, gen)
    chosen = labels != IGNORE
    assert chosen.any(dim=1).all()  # every row gets at least one mask
    assert not (chosen & ~batch["pool_mask"]).any()  # never the instruction or padding
    assert torch.equal(labels[chosen], batch["input_ids"][chosen])
    assert torch.equal(masked["input_ids"][~chosen], batch["input_ids"][~chosen])


def test_mntp_loss_matches_shifted_cross_entropy(tiny_llama_untied_dir):
    enc = TextEncoder.from_pretrained(str(tiny_llama_untied_dir))
    head = MNTPHead.from_encoder(enc)
    from transformers import AutoModelForCausalLM

    lm = AutoModelForCausalLM.from_pretrained(tiny_llama_untied_dir)
    assert torch.equal(head.weight, lm.lm_head.weight)  # the untied head is read from the files
    hidden = torch.randn(2, 6, enc.dim)
    labels = torch.full((2, 6), IGNORE)
    labels[0, 2], labels[1, 5] = 7, 9
    loss = MNTPLoss(head)(hidden, labels)["mntp"]
    logits = hidden @ head.weight.T
    expected = (
        torch.nn.functional.cross_entropy(logits[0, 1][None], torch.tensor([7]))
        + torch.nn.functional.cross_entropy(logits[1, 4][None], torch.tensor([9]))
    ) / 2
    assert torch.allclose(loss, expected, atol=1e-5)


@pytest.mark.parametrize("final_norm", [True, False])
def test_mntp_head_reproduces_the_lm_logits_with_or_without_the_final_norm(
    tiny_llama_untied_dir, tmp_path, final_norm
):
    from transformers import AutoModelForCausalLM

    lm = AutoModelForCausalLM.from_pretrained(tiny_llama_untied_dir)
    with torch.no_grad():  # gains other than ones, so a skipped or doubled norm shows
        lm.model.norm.weight.uniform_(0.5, 2.0)
    lm.save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(tiny_llama_untied_dir).save_pretrained(tmp_path)
    enc = TextEncoder.from_pretrained(str(tmp_path), bidirectional=False, final_norm=final_norm).eval()
    batch = enc.tokenize(["mild cardiomegaly with small left pleural effusion"])
    with torch.no_grad():
        logits = MNTPHead.from_encoder(enc)(enc(batch, pool=False)[0])
        expected = lm(input_ids=batch["input_ids"]).logits[0]
    assert torch.allclose(logits, expected, atol=1e-4)


def test_mntp_loss_falls_on_tiny_model(tiny_llama_dir):
    torch.manual_seed(0)
    enc = TextEncoder.from_pretrained(str(tiny_llama_dir))
    enc.unfreeze_backbone()
    loss_fn = MNTPLoss(MNTPHead.from_encoder(enc))
    opt = torch.optim.AdamW([p for p in enc.parameters() if p.requires_grad], lr=1e-2)
    batch = enc.tokenize([f + " " + i for f, i in REPORTS])
    mid = mask_token_id(enc)
    losses = []
    for step in range(30):
        masked, labels = mask_batch(batch, 0.2, mid, 50, torch.Generator().manual_seed(step % 3))
        loss = loss_fn(enc(masked, pool=False), labels)["mntp"]
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert np.mean(losses[-3:]) < 0.85 * np.mean(losses[:3])


# --------------------------------------------------------------------------------------- contrastive


def _naive_infonce(a, p, n, fn_mask, scale):
    total = 0.0
    for i in range(a.shape[0]):
        cos = lambda x, y: float(torch.dot(x, y) / (x.norm() * y.norm()))  # noqa: E731
        scores = [scale * cos(a[i], p[j]) for j in range(p.shape[0]) if j == i or not fn_mask[i, j]]
        scores += [scale * cos(a[i], n[k]) for k in range(n.shape[0])]
        target = scale * cos(a[i], p[i])
        total += -(target - math.log(sum(math.exp(s) for s in scores)))
    return total / a.shape[0]


def test_infonce_equals_naive_reference():
    torch.manual_seed(0)
    a, p, n = torch.randn(5, 8), torch.randn(5, 8), torch.randn(4, 8)
    fn_mask = torch.zeros(5, 5, dtype=torch.bool)
    fn_mask[0, 3] = fn_mask[3, 0] = fn_mask[2, 4] = True
    for scale in (1.0, 20.0):
        got = InfoNCELoss(scale=scale)(a, p, n, fn_mask=fn_mask)["infonce"]
        assert got.item() == pytest.approx(_naive_infonce(a, p, n, fn_mask, scale), rel=1e-5)
    plain = InfoNCELoss(scale=1.0)(a, p)["infonce"]
    assert plain.item() == pytest.approx(
        _naive_infonce(a, p, torch.zeros(0, 8), torch.zeros(5, 5, dtype=torch.bool), 1.0), rel=1e-5
    )


def test_false_negative_mask_keys():
    keys = torch.tensor([[1, 10, 100], [2, 10, 200], [3, 30, 100], [4, 40, -1], [5, 50, -1]])
    mask = false_negative_mask(keys, keys)
    expected = torch.zeros(5, 5, dtype=torch.bool)
    expected[0, 1] = expected[1, 0] = True  # same normalised text
    expected[0, 2] = expected[2, 0] = True  # same labels
    assert torch.equal(mask, expected)  # -1 (unknown labels) never matches; the diagonal is never masked


def test_masked_false_negative_does_not_push_apart():
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    p = torch.tensor([[1.0, 0.0], [1.0, 0.0]])  # identical reports in one batch
    loss = InfoNCELoss(scale=50.0)
    unmasked = loss(a, p)["infonce"].item()
    masked = loss(a, p, fn_mask=torch.tensor([[False, True], [True, False]]))["infonce"].item()
    assert unmasked == pytest.approx(math.log(2), rel=1e-4)
    assert masked == pytest.approx(0.0, abs=1e-6)


def test_grad_cache_matches_full_batch_gradient(tiny_llama_dir):
    texts_a = ["lungs are clear .", "mild cardiomegaly", "small left pleural effusion", "no pneumothorax"]
    texts_p = [
        "the lungs are clear",
        "heart size is mild cardiomegaly",
        "left effusion small",
        "pneumothorax no",
    ]

    def grads(chunk):
        torch.manual_seed(0)
        enc = TextEncoder.from_pretrained(
            str(tiny_llama_dir), pooling="latent", lora={"enabled": True, "dropout": 0.0}
        )
        with torch.no_grad():
            for p in enc.parameters():
                if p.requires_grad and not p.any():
                    p.normal_(std=0.05)
        loss_fn = InfoNCELoss(scale=10.0, symmetric=True)

        def embed(texts):
            return enc(enc.tokenize(list(texts)))

        if chunk:
            grad_cache_backward(embed, [texts_a, texts_p], lambda r: loss_fn(r[0], r[1]), chunk)
        else:
            sum(loss_fn(embed(texts_a), embed(texts_p)).values()).backward()
        return {n: p.grad.clone() for n, p in enc.named_parameters() if p.grad is not None}

    full, cached = grads(0), grads(2)
    assert full.keys() == cached.keys() and full
    for name in full:
        assert torch.allclose(full[name], cached[name], atol=1e-5), name


# ----------------------------------------------------------------------------------------- pairs


def test_build_examples_and_duplicate_free_batches():
    studies = _studies(12)
    eq = {s.study_id: [s.report_text.upper(), "variant of " + s.study_id] for s in studies}
    err = {s.study_id: ["error of " + s.study_id] for s in studies}
    labels = {s.study_id: "positive" if i % 2 else "negative" for i, s in enumerate(studies)}
    ex = build_examples(studies, eq, err, labels, 2, 1, True, random.Random(0))
    variant = [e for e in ex if e.task == "variant"]
    assert len(variant) == 24 and len([e for e in ex if e.task == "findings_impression"]) == 12
    assert all(e.negatives and e.negatives[0].startswith("error of") for e in variant)
    first = variant[0]
    assert first.anchor == studies[0].report_text and first.positive != first.anchor
    for batch in batches_without_duplicates(ex, 4, random.Random(1)):
        assert len(batch) == 4
        texts = [normalize_report(e.anchor) for e in batch]
        assert len(set(texts)) == 4  # reports 0 and 6 are identical text: never in one batch
        assert len({e.keys[0] for e in batch}) == 4


def test_relayout_draws_every_layout_and_keeps_the_text():
    from lexray.text.pairs import relayout, relayout_text

    rng = random.Random(0)
    seen = {
        relayout_text("FINDINGS: Heart is normal.\nIMPRESSION: No acute disease.", rng) for _ in range(40)
    }
    assert seen == {
        "Heart is normal. No acute disease.",
        "Heart is normal. IMPRESSION: No acute disease.",
        "FINDINGS: Heart is normal.\nIMPRESSION: No acute disease.",
    }
    # texts in another layout (hospital template, shorthand without headers) are left alone
    assert relayout_text("REPORT: x\nCONCLUSION: y", rng) == "REPORT: x\nCONCLUSION: y"
    assert relayout_text("Heart nl. IMP: NAD.", rng) == "Heart nl. IMP: NAD."
    assert relayout("", "No acute disease.", rng) == "No acute disease."


def test_build_examples_relayout_changes_only_headers():
    studies = _studies(6)
    eq = {s.study_id: [f"FINDINGS: {s.findings}\nIMPRESSION: {s.impression}"] for s in studies}
    err = {s.study_id: [f"FINDINGS: {s.findings} Wrong.\nIMPRESSION: {s.impression}"] for s in studies}
    ex = build_examples(studies, eq, err, {}, 4, 1, False, random.Random(0), relayout_reports=True)
    strip = lambda t: normalize_report(t.replace("FINDINGS:", "").replace("IMPRESSION:", ""))  # noqa: E731
    for e in ex:
        sid = e.keys[0]
        study = next(s for s in studies if stable_hash("study:" + s.study_id) == sid)
        assert strip(e.anchor) == strip(e.positive) == normalize_report(study.report_text)
        assert strip(e.negatives[0]) == normalize_report(study.findings + " wrong " + study.impression)
    layouts = {
        ("FINDINGS:" in t, "IMPRESSION:" in t) for e in ex for t in (e.anchor, e.positive, *e.negatives)
    }
    assert layouts == {(False, False), (False, True), (True, True)}


def test_build_examples_rewords_hard_negatives_on_request():
    studies = _studies(8)
    eq = {s.study_id: [f"FINDINGS: {s.findings}\nIMPRESSION: {s.impression}"] for s in studies}
    err = {
        s.study_id: [f"FINDINGS: {s.findings} A right pleural effusion is seen.\nIMPRESSION: {s.impression}"]
        for s in studies
    }
    originals = {t for ts in err.values() for t in ts}
    plain = build_examples(studies, eq, err, {}, 2, 1, False, random.Random(0))
    assert {e.negatives[0] for e in plain} <= originals  # off by default: the stored error texts
    reworded = build_examples(studies, eq, err, {}, 2, 1, False, random.Random(0), reword_negatives=1.0)
    changed = [e for e in reworded if e.negatives[0] not in originals]
    assert len(changed) > len(reworded) // 2
    # the injected error survives the rewording (in another sentence frame), and no side changes
    by_key = {stable_hash("study:" + s.study_id): err[s.study_id][0] for s in studies}
    sides = lambda t: [w for w in normalize_report(t).split() if w in ("left", "right")]  # noqa: E731
    for e in changed:
        assert "right pleural effusion" in e.negatives[0].lower()
        assert sorted(sides(e.negatives[0])) == sorted(sides(by_key[e.keys[0]]))
    assert any("There is a right pleural effusion." in e.negatives[0] for e in changed)


# ------------------------------------------------------------------------------------- full runs


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    from lexray.data.manifest import write_manifest

    path = tmp_path_factory.mktemp("manifest") / "manifest.parquet"
    write_manifest(_studies(12) + _studies(4, split="test", prefix="T"), path)
    return path


def _cfg(yaml_path: Path, model: Path, manifest: Path, out: Path, extra=()) -> TextTrainConfig:
    return load_config(
        TextTrainConfig,
        yaml_path,
        [
            f"encoder.model={model}",
            f"data.manifest={manifest}",
            "data.openi=''",
            f"output_dir={out}",
            "mntp.steps=2",
            "mntp.batch_size=4",
            "contrastive.steps=2",
            "contrastive.batch_size=4",
            *extra,
        ],
    )


def test_full_run_saves_loadable_encoder(tiny_llama_dir, manifest, tmp_path):
    from lexray.text.train import train

    cfg = _cfg(REPO / "configs/text/tiny-smoke.yaml", tiny_llama_dir, manifest, tmp_path / "run")
    out = train(cfg)
    enc = TextEncoder.from_pretrained(out)
    emb = enc.encode(["lungs are clear", "small left pleural effusion"])
    assert emb.shape == (2, 32) and np.isfinite(emb).all()
    assert (out / "config.yaml").is_file() and (out / "metrics.jsonl").is_file()
    # variants were cached for train studies only
    from lexray.variants import VariantStore

    ids = {r.study_id for r in VariantStore(out / "variants").iter_records()}
    assert ids and all(i.startswith("S") for i in ids)


def test_bench_monitor_scores_during_training(tiny_llama_dir, manifest, tmp_path):
    from lexray.text.train import train

    bench = tmp_path / "bench.jsonl"
    with open(bench, "w") as f:
        for i, (fi, imp) in enumerate(REPORTS[:4]):
            errs = [{"type": "negation", "text": f"{fi} error {k}"} for k in range(3)]
            row = {"id": str(i), "findings": fi, "impression": imp, "shorthand": fi, "impression_only": imp}
            f.write(json.dumps({**row, "restyled": f"{imp} {fi}", "errors": errs}) + "\n")
    cfg = _cfg(
        REPO / "configs/text/tiny-smoke.yaml",
        tiny_llama_dir,
        manifest,
        tmp_path / "run",
        ["mntp.enabled=false", "contrastive.steps=3", f"eval_bench={bench}", "eval_every=2"],
    )
    out = train(cfg)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    scored = [r for r in records if r["stage"] == "bench"]
    assert [r["step"] for r in scored] == [2, 3]  # every 2 steps and after the last
    assert all(0.0 <= r["errdisc_orig_acc"] <= 1.0 and "shorthand_R@1" in r for r in scored)

    # WiSE-FT: the kept fraction of the update is scored once more and is what gets saved
    half = train(
        dataclasses.replace(
            cfg,
            output_dir=str(tmp_path / "half"),
            contrastive=dataclasses.replace(cfg.contrastive, weight_interpolation=0.5),
        )
    )
    records = [json.loads(line) for line in (half / "metrics.jsonl").read_text().splitlines()]
    scored = [r for r in records if r["stage"] == "bench"]
    assert [(r["step"], r.get("weight_interpolation")) for r in scored] == [(2, None), (3, None), (3, 0.5)]
    texts = ["lungs are clear", "small left pleural effusion"]
    base = TextEncoder.from_pretrained(str(tiny_llama_dir), pooling=cfg.encoder.pooling).encode(texts)
    e_full, e_half = (TextEncoder.from_pretrained(d).encode(texts) for d in (out, half))
    assert not np.allclose(e_full, e_half) and not np.allclose(e_half, base)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\xffnot utf-8\n", "is not UTF-8 JSON lines"),
        (b"[1, 2]\n", "is not a text bench (one JSON object per line): line 1 is a JSON list"),
        (b'{"id": "x", "findings": "a"}\n', "bench.jsonl:1: missing field"),
    ],
)
def test_a_bad_eval_bench_fails_before_any_training_step(
    tiny_llama_dir, manifest, tmp_path, monkeypatch, content, message
):
    import lexray.text.train as text_train
    from lexray.errors import LexrayError

    def no_training(*args, **kwargs):
        raise AssertionError("a training loop ran before the bench was checked")

    monkeypatch.setattr(text_train, "run_mntp", no_training)
    monkeypatch.setattr(text_train, "run_contrastive", no_training)
    bench = tmp_path / "bench.jsonl"
    bench.write_bytes(content)
    extra = ["mntp.enabled=true", f"eval_bench={bench}", "eval_every=2"]
    cfg = _cfg(REPO / "configs/text/tiny-smoke.yaml", tiny_llama_dir, manifest, tmp_path / "run", extra)
    with pytest.raises(LexrayError) as caught:
        text_train.train(cfg)
    assert str(bench) in str(caught.value) and message in str(caught.value)
    assert not (tmp_path / "run").exists()  # nothing written, no step run


def test_weight_interpolation_and_fabricated_share_are_checked(tiny_llama_dir, manifest, tmp_path):
    from lexray.text.train import train

    for extra in (
        ["contrastive.weight_interpolation=1.5"],
        ["contrastive.weight_interpolation=0.5", "contrastive.lora.enabled=false"],
    ):
        cfg = _cfg(REPO / "configs/text/tiny-smoke.yaml", tiny_llama_dir, manifest, tmp_path / "r", extra)
        with pytest.raises(ValueError, match="weight_interpolation"):
            train(cfg)
    cfg = _cfg(
        REPO / "configs/text/tiny-smoke.yaml",
        tiny_llama_dir,
        manifest,
        tmp_path / "r",
        ["data.fabricated_studies=2"],
    )
    with pytest.raises(ValueError, match="fabricated_studies"):
        train(cfg)


def test_cli_train_runs_the_stages_the_config_enables(tiny_llama_dir, manifest, tmp_path):
    from typer.testing import CliRunner

    from lexray.cli.main import app

    def stages(*args: str) -> set[str]:
        out = tmp_path / f"cli{len(list(tmp_path.iterdir()))}"
        sets = [f"encoder.model={tiny_llama_dir}", f"data.manifest={manifest}", "mntp.steps=2"]
        sets += ["contrastive.steps=2", "contrastive.batch_size=4", "mntp.enabled=false"]
        cmd = ["text", "train", "-c", str(REPO / "configs/text/tiny-smoke.yaml"), "-o", str(out), *args]
        result = CliRunner().invoke(app, cmd + [x for s in sets for x in ("--set", s)])
        assert result.exit_code == 0, result.output
        records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        return {r["stage"] for r in records} & {"mntp", "contrastive"}

    assert stages() == {"contrastive"}  # the config switched MNTP off; no flag turns it back on
    assert stages("--stages", "mntp,contrastive") == {"mntp", "contrastive"}
    assert stages("--stages", "mntp") == {"mntp"}


def test_refuses_val_or_test_split(tiny_llama_dir, manifest, tmp_path):
    from lexray.text.train import train

    cfg = _cfg(
        REPO / "configs/text/tiny-smoke.yaml", tiny_llama_dir, manifest, tmp_path / "r", ["data.split=test"]
    )
    with pytest.raises(ValueError, match="never trains on val or test"):
        train(cfg)


def test_paper_config_code_path_on_tiny_llama(tiny_llama_dir, manifest, tmp_path):
    """configs/text/llama-3.2-1b-paper.yaml with only the model, data and step counts swapped."""
    from lexray.text.train import train

    cfg = _cfg(
        REPO / "configs/text/llama-3.2-1b-paper.yaml",
        tiny_llama_dir,
        manifest,
        tmp_path / "paper",
        [
            "data.variant_store=''",
            "contrastive.chunk_size=3",
            "mixed_precision='no'",
            "encoder.dtype=float32",
            "encoder.latent.num_latents=16",
            "encoder.latent.num_heads=4",
        ],
    )
    assert cfg.encoder.pooling == "latent" and cfg.contrastive.scale == 50.0 and cfg.mntp.mask_prob == 0.2
    out = train(cfg)
    enc = TextEncoder.from_pretrained(out)
    assert enc.config.instruction == cfg.encoder.instruction
    assert enc.encode(["lungs are clear"]).shape == (1, 32)
    assert LoraSettings().r == 16


def test_smollm2_real_weights_bidirectional_and_trainable(smollm2_dir):
    enc = TextEncoder.from_pretrained(
        str(smollm2_dir), max_length=64, lora={"enabled": True, "last_n_layers": 2}
    )
    assert all(not layer.self_attn.is_causal for layer in enc.base_model().layers)
    a = enc.tokenize(["Lungs are clear.", "No pneumothorax or pleural effusion is seen today."])
    b = enc.tokenize(["Lungs are normal.", "No pneumothorax or pleural effusion is seen today."])
    with torch.no_grad():
        ha, hb = enc.token_states(a), enc.token_states(b)
    assert not torch.allclose(ha[0, 0], hb[0, 0], atol=1e-5)  # a later token changed the first output
    out = enc(a)
    out.sum().backward()
    assert all("lora_" in n for n, p in enc.named_parameters() if p.grad is not None)


def test_prepare_variants_fills_gaps_and_uses_only_the_configured_kinds(tmp_path):
    from lexray.text.config import TextDataConfig
    from lexray.text.train import prepare_variants
    from lexray.variants import VariantStore

    studies = _studies(4)
    cache = tmp_path / "variants"
    first = TextDataConfig(styles=("reordered",), error_types=("negation",), use_labeler=False)
    pool = prepare_variants(studies, first, 0, cache)
    made = {(r.style, r.error_type) for r in VariantStore(cache).iter_records()}
    assert made == {("reordered", None), ("error", "negation")}
    # a second run with one more style makes only that style; the old records are reused
    second = TextDataConfig(styles=("reordered", "headerless"), error_types=("negation",), use_labeler=False)
    before = len(list(VariantStore(cache).iter_records()))
    pool2 = prepare_variants(studies, second, 0, cache)
    records = list(VariantStore(cache).iter_records())
    assert len(records) == before + len(studies)
    assert {r.style for r in records[before:]} == {"headerless"}
    assert sum(map(len, pool2.equivalents.values())) > sum(map(len, pool.equivalents.values()))
    # a run asking for fewer kinds than the cache holds sees only those
    third = TextDataConfig(styles=("headerless",), error_types=("laterality",), use_labeler=False)
    pool3 = prepare_variants(studies, third, 0, cache)
    headerless = {r.text for r in records if r.style == "headerless" and r.accepted}
    assert {t for ts in pool3.equivalents.values() for t in ts} <= headerless
    laterality = {
        r.text for r in VariantStore(cache).iter_records() if r.error_type == "laterality" and r.accepted
    }
    assert {t for ts in pool3.errors.values() for t in ts} == laterality


def test_prepare_variants_remakes_what_other_rules_made(tmp_path, monkeypatch, caplog):
    import lexray.variants.errors
    import lexray.variants.rules
    from lexray.text.config import TextDataConfig
    from lexray.text.train import prepare_variants
    from lexray.variants import VariantStore

    studies = _studies(4)
    cache = tmp_path / "variants"
    config = TextDataConfig(styles=("reordered",), error_types=("negation",), use_labeler=False)
    first = prepare_variants(studies, config, 0, cache)
    old = {r.prompt_version for r in VariantStore(cache).iter_records()}
    assert old == {lexray.variants.rules.rules_version()} and old.pop().startswith("rules-")
    # An edited lexicon or labeler gives another version: the cached records are remade, not reused.
    for module in (lexray.variants.rules, lexray.variants.errors):
        monkeypatch.setattr(module, "rules_version", lambda: "rules-edited")
    with caplog.at_level("INFO", logger="lexray.text.train"):
        second = prepare_variants(studies, config, 0, cache)
    assert "remaking variants: 8 cached records" in caplog.text
    records = list(VariantStore(cache).iter_records())
    assert len(records) == 16 and {r.prompt_version for r in records[8:]} == {"rules-edited"}
    assert second.equivalents == first.equivalents and second.errors == first.errors


def test_distinct_equivalents_drop_variants_that_other_reports_share():
    from lexray.text.pairs import distinct_equivalents

    a, b, same_as_a = _studies(1, prefix="A")[0], _studies(2, prefix="B")[1], _studies(1, prefix="C")[0]
    equivalents = {
        "A0": ["No acute disease.", "Lungs clear. No acute dz."],
        "B1": ["no acute disease", "Mild cardiomegaly, small Lt effusion."],
        "C0": ["No acute disease.", "Lungs clear. No acute dz."],
    }
    kept = distinct_equivalents([a, b, same_as_a], equivalents)
    # shared with B's different report (up to case and punctuation): dropped for all three
    assert kept == {
        "A0": ["Lungs clear. No acute dz."],
        "B1": ["Mild cardiomegaly, small Lt effusion."],
        "C0": ["Lungs clear. No acute dz."],  # C's report is A's, so they may share
    }
    # a variant that is another study's whole report is not a positive either
    kept = distinct_equivalents([a, b], {"A0": [b.report_text.upper()], "B1": ["Lt effusion."]})
    assert kept == {"B1": ["Lt effusion."]}


def test_fabricated_studies_are_sided_train_reports_with_their_source_as_negative(tmp_path):
    from lexray.text.config import TextDataConfig
    from lexray.text.train import fabricated_studies, prepare_variants
    from lexray.variants import SIDED_FABRICATIONS, VariantStore

    studies = _studies(12)
    cache = tmp_path / "variants"
    prepare_variants(studies, TextDataConfig(styles=("reordered",), error_types=("fabricated",)), 0, cache)
    made = [r for r in VariantStore(cache).iter_records() if r.accepted]
    sided = [r for r in made if r.target in SIDED_FABRICATIONS]
    assert sided and len(sided) < len(made)  # some fabrications (cardiomegaly, edema) name no side

    synthetic, sources = fabricated_studies(studies, cache, 1.0, 0)
    assert len(synthetic) == len(sided) == len(sources)
    parents = {s.study_id: s for s in studies}
    for study in synthetic:
        parent_id, target = study.study_id.split("+")
        assert target in SIDED_FABRICATIONS and study.split == "train"
        assert study.extra["synthetic"] == "fabricated"
        # the synthetic report is the source report plus one sentence that names a side
        parent = parents[parent_id]
        assert parent.impression == study.impression or not parent.impression
        assert len(study.findings) > len(parent.findings)
        assert " right " in f" {study.findings} " or " left " in f" {study.findings} "
        assert "FINDINGS:" in sources[study.study_id] and parent.findings[:20] in sources[study.study_id]
    half, _ = fabricated_studies(studies, cache, 0.5, 0)
    assert len(half) == round(0.5 * len(sided))
    assert {s.study_id for s in half} == {s.study_id for s in fabricated_studies(studies, cache, 0.5, 0)[0]}


def test_a_warm_data_phase_reads_its_caches_and_gives_the_same_texts_and_labels(tmp_path, monkeypatch):
    import lexray.text.train.data as data
    import lexray.variants.checks
    from lexray.text.config import TextDataConfig
    from lexray.variants import source_text

    studies = _studies(12)
    config = TextDataConfig(
        styles=("reordered", "shorthand"), error_types=("fabricated", "laterality"), fabricated_studies=1.0
    )
    cache = tmp_path / "variants"
    cold_studies, cold = data.contrastive_data(studies, config, 0, cache)
    assert len(cold_studies) > len(studies)  # fabricated studies were added, with their own labels
    # the label keys are the labeler's own, as before the cache: "|".join of each source report's vector
    labeler = lexray.variants.checks.get_default_labeler()
    expected = ["|".join(lab.vector()) for lab in labeler.pipe([source_text(s) for s in cold_studies])]
    assert [cold.label_keys[s.study_id] for s in cold_studies] == expected
    assert len(set(expected)) > 1

    def no_labeler() -> None:
        raise AssertionError("a warm data phase must not build the labeler")

    monkeypatch.setattr(lexray.variants.checks, "get_default_labeler", no_labeler)
    warm_studies, warm = data.contrastive_data(studies, config, 0, cache)
    assert warm_studies == cold_studies
    for name in ("equivalents", "errors", "label_keys"):  # same texts in the same order
        assert list(getattr(warm, name).items()) == list(getattr(cold, name).items())
    # labels made by other labeler code are not reused: they are made again (and agree here)
    monkeypatch.setattr(data, "labels_version", lambda: "labels-edited")
    with pytest.raises(AssertionError, match="must not build the labeler"):
        data.contrastive_data(studies, config, 0, cache)
    monkeypatch.undo()
    monkeypatch.setattr(data, "labels_version", lambda: "labels-edited")
    relabelled = data.prepare_variants(studies, config, 0, cache)
    rows = [json.loads(line) for line in (cache / data.LABELS_FILE).read_text().splitlines()]
    assert sum(r["version"] == "labels-edited" for r in rows) == len({source_text(s) for s in studies})
    assert relabelled.label_keys == {s.study_id: cold.label_keys[s.study_id] for s in studies}
    assert all(set(r) == {"version", "sha256", "key"} for r in rows)
    # a crash tore the last row: the next rows start on a line of their own and all read back
    labels = cache / data.LABELS_FILE
    torn = labels.read_text()[:-10]
    labels.write_text(torn)
    monkeypatch.setattr(data, "labels_version", lambda: "labels-after-crash")
    data.prepare_variants(studies, config, 0, cache)
    lines = labels.read_text().splitlines()
    assert lines[: len(torn.splitlines())] == torn.splitlines()
    rows = [json.loads(line) for line in lines[len(torn.splitlines()) :]]
    assert len(rows) == len({source_text(s) for s in studies})
    assert all(r["version"] == "labels-after-crash" for r in rows)


def test_full_run_trains_on_fabricated_studies(tiny_llama_dir, manifest, tmp_path):
    from lexray.text.train import train
    from lexray.variants import VariantStore

    cfg = _cfg(
        REPO / "configs/text/tiny-smoke.yaml",
        tiny_llama_dir,
        manifest,
        tmp_path / "run",
        ["data.fabricated_studies=1.0", 'data.error_types=["fabricated","laterality"]'],
    )
    out = train(cfg)
    records = list(VariantStore(out / "variants" / "fabricated").iter_records())
    assert records and all("+" in r.study_id for r in records)
    # the synthetic studies got their own errors, e.g. the inserted finding on the other side
    assert any(r.error_type == "laterality" and r.accepted for r in records)


def test_full_run_drops_positives_that_different_reports_share(tiny_llama_dir, tmp_path, caplog):
    from lexray.data.manifest import write_manifest
    from lexray.text.train import train

    normal = [
        "The lungs are clear.",
        "Heart size is normal. No effusion.",
        "No pneumothorax.",
        "Clear lungs.",
    ]
    studies = [
        Study(
            f"N{i}", f"P{i}", "synthetic", "train", findings=f, impression="No acute cardiopulmonary process."
        )
        for i, f in enumerate(normal)
    ]
    path = tmp_path / "manifest.parquet"
    write_manifest(studies, path)
    cfg = _cfg(
        REPO / "configs/text/tiny-smoke.yaml",
        tiny_llama_dir,
        path,
        tmp_path / "run",
        ["mntp.enabled=false", 'data.styles=["impression_only","shorthand"]', "data.distinct_positives=true"],
    )
    with caplog.at_level("INFO", logger="lexray.text.train"):
        train(cfg)
    # the four reports differ and share one impression: its variant is no positive for any of them
    assert "dropped 4 equivalent variants" in caplog.text
