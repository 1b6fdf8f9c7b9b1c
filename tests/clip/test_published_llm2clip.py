"""LLM2CLIP4CXR import: a tiny ``llm2clip4cxr.bin`` in the published layout, checked against a reference.

The checkpoint is written as the published training saves it: EVA-CLIP key names under ``visual.``
(w1/w2/w3, ffn_ln, inner_attn_ln, rope buffers, head), LoRA tensors of adapter ``llm2clip`` (plus the
untrained ``default`` adapter peft creates first) under both ``text.core.*`` and ``text.model.*``,
``text.projection.{0,1}`` and ``logit_scale``, wrapped in ``{"epoch", "state_dict", ...}``.
"""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fastapi.testclient import TestClient
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from lexray.cli.main import app
from lexray.clip import DualEncoder
from lexray.clip.published import import_llm2clip4cxr
from lexray.evaluate.protocol import published_retrieval
from lexray.text.published import SEPARATOR, CheckpointError

_spec = importlib.util.spec_from_file_location(
    "published_llm2vec_helpers", Path(__file__).parents[1] / "text" / "test_published_llm2vec.py"
)
l2v = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(l2v)

VIS_DIM, VIS_DEPTH, PATCH, IMG = 128, 2, 14, 28  # head width 64 as EVA-CLIP; 2x2 patches
EMBED = 24
RANK, ALPHA = 16, 32  # published; alpha is not stored in the file
# The published caption instructions (llm2clip4cxr training/data.py), [FINDINGS] checked first.
CAPTION_INSTRUCTION = "Retrieve the image that best matches the following report.; "
MARKER_INSTRUCTIONS = {
    "[FINDINGS]": "Retrieve the image that best matches the following report for the findings section.; ",
    "[IMPRESSION]": "Retrieve the image that best matches the following report for the impression section.; ",
}
CAPTIONS = [
    "[FINDINGS]{lungs are clear .} [IMPRESSION]{no acute cardiopulmonary process}",
    "[IMPRESSION]{small left pleural effusion}",
    "there is mild cardiomegaly",
]


def _eva_timm(seed: int = 0):
    import timm

    torch.manual_seed(seed)
    model = timm.create_model(
        "eva02_large_patch14_clip_336",
        pretrained=False,
        num_classes=0,
        img_size=IMG,
        embed_dim=VIS_DIM,
        depth=VIS_DEPTH,
        num_heads=VIS_DIM // 64,
    )
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


def _to_eva_clip_names(key: str) -> str:
    for timm_name, eva_name in (
        (".attn.norm.", ".attn.inner_attn_ln."),
        (".mlp.fc1_g.", ".mlp.w1."),
        (".mlp.fc1_x.", ".mlp.w2."),
        (".mlp.norm.", ".mlp.ffn_ln."),
        (".mlp.fc2.", ".mlp.w3."),
    ):
        key = key.replace(timm_name, eva_name)
    return "visual." + key


def write_llm2clip(
    directory: Path, text_base: Path, drop: str = "", adapters=("default", "llm2clip")
) -> dict:
    """Write ``llm2clip4cxr.bin`` and return the tensors the reference needs."""
    from transformers import LlamaConfig

    torch.manual_seed(1)
    directory.mkdir(parents=True, exist_ok=True)
    eva = _eva_timm()
    state = {_to_eva_clip_names(k): v.clone() for k, v in eva.state_dict().items()}
    state["visual.rope.freqs_cos"] = torch.randn(4, 64)  # buffers the published model saves; recomputed
    state["visual.head.weight"] = torch.randn(EMBED, VIS_DIM) * 0.1
    state["visual.head.bias"] = torch.randn(EMBED) * 0.1
    cfg = LlamaConfig.from_pretrained(text_base)
    kv = cfg.num_key_value_heads * (cfg.hidden_size // cfg.num_attention_heads)
    outs = {"q": cfg.hidden_size, "k": kv, "v": kv, "o": cfg.hidden_size}
    lora = {}
    for adapter in adapters:
        for i in range(cfg.num_hidden_layers):
            for p, out_dim in outs.items():
                a = torch.randn(RANK, cfg.hidden_size) * 0.2
                b = torch.randn(out_dim, RANK) * 0.2 if adapter == "llm2clip" else torch.zeros(out_dim, RANK)
                if adapter == "llm2clip":
                    lora[(i, p)] = (a, b)
                for root in ("text.core", "text.model"):
                    stem = f"{root}.model.base_model.model.layers.{i}.self_attn.{p}_proj"
                    state[f"{stem}.lora_A.{adapter}.weight"] = a
                    state[f"{stem}.lora_B.{adapter}.weight"] = b
                    state[f"{stem}.base_layer.weight"] = torch.randn(out_dim, cfg.hidden_size)  # ignored
    state["text.projection.0.weight"] = 1 + torch.randn(cfg.hidden_size) * 0.1
    state["text.projection.0.bias"] = torch.randn(cfg.hidden_size) * 0.1
    state["text.projection.1.weight"] = torch.randn(EMBED, cfg.hidden_size) * 0.2
    state["text.projection.1.bias"] = torch.randn(EMBED) * 0.1
    state["logit_scale"] = torch.tensor(math.log(1 / 0.03))
    if drop:
        state = {k: v for k, v in state.items() if not (k == drop or (drop.endswith("*") and drop[:-1] in k))}
    torch.save({"epoch": 20, "name": "tiny", "state_dict": state}, directory / "llm2clip4cxr.bin")
    return {"eva": eva, "state": state, "lora": lora}


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("llm2clip")
    text_base = l2v.write_published(root / "llm2vec4cxr")
    info = write_llm2clip(root / "ckpt", text_base)
    out = import_llm2clip4cxr(
        root / "ckpt" / "llm2clip4cxr.bin", text_base, root / "imported", dtype="float32"
    )
    return {"root": root, "text_base": text_base, "out": out, **info}


def _reference_text(published, captions: list[str]) -> torch.Tensor:
    """Merged LoRA (W + alpha/r B A) into a copy of the text base, published pooling, then the projection."""
    merged = published["root"] / "merged-base"
    if not merged.exists():
        shutil.copytree(published["text_base"], merged)
        weights = load_file(merged / "model.safetensors")
        for (i, p), (a, b) in published["lora"].items():
            key = f"model.layers.{i}.self_attn.{p}_proj.weight"
            weights[key] = weights[key] + (ALPHA / RANK) * b @ a
        save_file(weights, merged / "model.safetensors")
    texts = []
    for c in captions:
        instruction = next((v for k, v in MARKER_INSTRUCTIONS.items() if k in c), CAPTION_INSTRUCTION)
        texts.append(instruction + SEPARATOR + c)
    pooled = l2v.reference_embed(merged, texts, "latent")
    s = published["state"]
    normed = F.layer_norm(
        pooled, (pooled.shape[-1],), s["text.projection.0.weight"], s["text.projection.0.bias"]
    )
    return normed @ s["text.projection.1.weight"].T + s["text.projection.1.bias"]


def _smooth_grey(h: int, w: int) -> np.ndarray:
    """An 8-bit image as smooth as a radiograph (no pixel-level noise)."""
    rows, cols = np.sin(np.linspace(0, 3, h))[:, None], np.cos(np.linspace(0, 2, w))[None, :]
    return (127.5 + 100 * rows * cols).astype(np.uint8)


def test_import_reproduces_both_towers(published):
    model = DualEncoder.from_pretrained(published["out"])
    # Text: instruction by marker, separator rule, LoRA merged, latent pooling, LayerNorm + Linear.
    with torch.no_grad():
        ours = model.encode_text(model.text_tower.tokenize(CAPTIONS), normalize=False)
    torch.testing.assert_close(ours, _reference_text(published, CAPTIONS), atol=1e-5, rtol=1e-5)
    # Image: EVA trunk -> CLS after the final norm -> visual.head.
    pixels = torch.randn(2, 3, IMG, IMG)
    with torch.no_grad():
        cls = published["eva"].forward_features(pixels)[:, 0]
        expected = cls @ published["state"]["visual.head.weight"].T + published["state"]["visual.head.bias"]
        torch.testing.assert_close(
            model.encode_image(pixels, normalize=False), expected, atol=1e-5, rtol=1e-5
        )
    assert model.scale().item() == pytest.approx(1 / 0.03, rel=1e-5)


def test_evaluation_preprocessing_is_clips(published):
    """Bicubic shorter-side resize, centre crop, OpenAI mean/std, as torchvision does it on the PIL image."""
    from PIL import Image
    from torchvision import transforms as T

    pre = DualEncoder.from_pretrained(published["out"]).image_tower.preprocess
    grey = _smooth_grey(61, 47)  # PIL's 8-bit passes clip overshoots that a float image keeps
    published_transform = T.Compose(
        [
            T.Resize(IMG, interpolation=T.InterpolationMode.BICUBIC),
            T.CenterCrop(IMG),
            T.ToTensor(),
            T.Normalize((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
        ]
    )
    expected = published_transform(Image.fromarray(grey).convert("RGB"))
    got = pre(grey.astype(np.float32) / 255.0)
    assert got.shape == expected.shape == (3, IMG, IMG)
    # PIL resamples 8-bit pixels; lexray float ones: within two grey levels.
    assert (got - expected).abs().max().item() < 1.6 / 255 / 0.26  # two 8-bit roundings in PIL


@pytest.mark.parametrize(
    ("drop", "adapters", "message"),
    [
        ("lora_*", ("llm2clip",), "no LoRA tensors"),
        ("text.projection.1.weight", ("llm2clip",), r"text\.projection\.1\.weight"),
        ("visual.head.weight", ("llm2clip",), r"visual\.head\.weight"),
        ("visual.blocks.1.mlp.w3.weight", ("llm2clip",), r"mlp\.fc2\.weight"),
        ("", ("default", "other"), "none is 'llm2clip'"),
    ],
)
def test_bad_checkpoints_name_the_problem(published, tmp_path, drop, adapters, message):
    write_llm2clip(tmp_path / "bad", published["text_base"], drop=drop, adapters=adapters)
    with pytest.raises(CheckpointError, match=message):
        import_llm2clip4cxr(tmp_path / "bad", published["text_base"], tmp_path / "out")


def test_deepspeed_truncated_and_pickled_files(published, tmp_path):
    shard = tmp_path / "ds" / "global_step10" / "mp_rank_00_model_states.pt"
    shard.parent.mkdir(parents=True)
    shard.write_bytes(b"x")
    for target in (shard, shard.parent.parent):
        with pytest.raises(CheckpointError, match="zero_to_fp32"):
            import_llm2clip4cxr(target, published["text_base"], tmp_path / "out")
    data = (published["root"] / "ckpt" / "llm2clip4cxr.bin").read_bytes()
    (tmp_path / "trunc.bin").write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match="truncated"):
        import_llm2clip4cxr(tmp_path / "trunc.bin", published["text_base"], tmp_path / "out")
    state = torch.load(published["root"] / "ckpt" / "llm2clip4cxr.bin", weights_only=True)
    state["args"] = Path("not/a/tensor")  # an object weights_only=True refuses
    torch.save(state, tmp_path / "pickled.bin")
    with pytest.raises(CheckpointError, match="--allow-pickle"):
        import_llm2clip4cxr(tmp_path / "pickled.bin", published["text_base"], tmp_path / "out")
    out = import_llm2clip4cxr(
        tmp_path / "pickled.bin", published["text_base"], tmp_path / "out", dtype="float32", allow_pickle=True
    )
    assert (out / "model.safetensors").is_file()


def test_imported_model_runs_through_evaluate_index_search_serve(published, tmp_path):
    from lexray.data.manifest import write_manifest
    from lexray.data.study import Image, Study
    from lexray.index import Searcher
    from lexray.phantoms import PhantomFindings, render_phantom, save_phantom_png
    from lexray.serve import create_app

    runner = CliRunner()
    out = tmp_path / "cli-import"
    result = runner.invoke(
        app,
        ["models", "import", "llm2clip4cxr", str(published["root"] / "ckpt" / "llm2clip4cxr.bin"),
         "--text-base", str(published["text_base"]), "--out", str(out), "--dtype", "float32"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    reports = ["lungs are clear .", "small left pleural effusion", "mild cardiomegaly", "right pneumothorax"]
    findings = [PhantomFindings(), PhantomFindings(effusion=(("left", 1),)), PhantomFindings(cardiomegaly=True),
                PhantomFindings(pneumothorax=("right",))]  # fmt: skip
    studies = []
    for i in range(6):
        sid = f"ph{i}"
        save_phantom_png(
            tmp_path / "img" / f"{sid}.png", render_phantom(findings[i % 4], sid, 64), sid, findings[i % 4]
        )
        split = "train" if i >= 4 else "test"
        studies.append(
            Study(sid, sid, "phantom", split, (Image(f"img/{sid}.png", "PA"),), findings=reports[i % 4])
        )
    write_manifest(studies, tmp_path / "manifest.parquet")
    manifest = str(tmp_path / "manifest.parquet")
    result = runner.invoke(app, ["evaluate", "--model", str(out), "--manifest", manifest, "--out", str(tmp_path / "ev"),
                                 "--set", "retrieval.published=[cosine,clip,dot]",
                                 "--no-progress"])  # fmt: skip
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    ret = metrics["retrieval"]  # the published protocol beside lexray's
    assert ret["published/cosine/image_to_text"]["n_queries"] == 4
    assert ret["published/clip/text_to_image"] == ret["published/dot/text_to_image"]  # same ranking
    model = DualEncoder.from_pretrained(out)
    test_imgs = [tmp_path / "img" / f"ph{i}.png" for i in range(4)]
    raw = published_retrieval(
        model.embed_images(test_imgs, normalize=False), model.embed_texts(reports, normalize=False), "dot"
    )
    for direction, key in (("image_to_text", "image_to_report"), ("text_to_image", "report_to_image")):
        assert ret[f"published/dot/{direction}"]["hit@1"] == raw[key]["R@1"]
    assert "study/exact/image_to_text" in metrics["retrieval"]
    result = runner.invoke(app, ["index", "build", "--model", str(out), "--manifest", manifest,
                                 "--out", str(tmp_path / "index"), "--no-progress"])  # fmt: skip
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        app, ["search", "--index", str(tmp_path / "index"), "--text", "pleural effusion", "-k", "2"]
    )
    assert result.exit_code == 0, result.output
    searcher = Searcher.open(tmp_path / "index")
    expected = F.normalize(_reference_text(published, ["pleural effusion"]), dim=-1).numpy()
    np.testing.assert_allclose(searcher.model.embed_texts(["pleural effusion"]), expected, atol=1e-5)
    client = TestClient(create_app(searcher))
    body = client.post("/v1/search/image", files={"file": ("ph1.png", (tmp_path / "img" / "ph1.png").read_bytes(),
                                                          "image/png")}).json()  # fmt: skip
    assert body["results"]


def test_real_size_eva_is_inferred_as_timms_eva02_clip_l14_at_448():
    """The published shapes (EVA02-CLIP-L/14, 448 px) give timm's own model, on the meta device (no memory)."""
    import timm

    from lexray.clip.published import _vision_config

    meta = {"device": "meta"}
    visual = {
        "pos_embed": torch.empty(1, 1025, 1024, **meta),
        "patch_embed.proj.weight": torch.empty(1024, 3, 14, 14, **meta),
        "norm.weight": torch.empty(1024, **meta),
        "head.weight": torch.empty(1280, 1024, **meta),
        **{f"blocks.{i}.mlp.w1.weight": torch.empty(2730, 1024, **meta) for i in range(24)},
    }
    vision = _vision_config(visual, "llm2clip4cxr.bin")
    assert vision.image_size == 448 and vision.resize == "shorter_crop" and vision.interpolation == "bicubic"
    with torch.device("meta"):
        ours = timm.create_model(vision.model, num_classes=0, img_size=448, **vision.timm_kwargs)
        reference = timm.create_model("eva02_large_patch14_clip_336", num_classes=0, img_size=448)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in reference.state_dict().items()
    }
