"""The published CXR dual tower (LLM2CLIP4CXR, ``llm2clip4cxr.bin``) as a lexray ``DualEncoder``.

The checkpoint holds what training changed: ``visual.*`` (EVA02-CLIP-L/14 at 448 px, CLS -> norm ->
head 1024 -> 1280), LoRA deltas on the text core's q/k/v/o (adapter ``llm2clip``, under ``text.core.*``
and/or ``text.model.*``), ``text.projection`` (LayerNorm(2048) + Linear(2048 -> 1280)) and
``logit_scale``. The text core and its latent pooler come from LLM2Vec4CXR (``--text-base``).
:func:`import_llm2clip4cxr` checks each of these (the published script only warns when LoRA tensors are
missing), merges the LoRA deltas into the text core with peft, and writes an ordinary, self-describing
lexray dual-encoder directory in safetensors.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from pathlib import Path
from typing import Any

import torch

from lexray.text.published import load_llm2vec4cxr
from lexray.text.weight_files import CheckpointError, load_pickle

log = logging.getLogger(__name__)

CAPTION_INSTRUCTION = "Retrieve the image that best matches the following report.; "
# A caption holding the key gets that instruction (the published dataset checks [FINDINGS] first).
MARKER_INSTRUCTIONS = {
    "[FINDINGS]": "Retrieve the image that best matches the following report for the findings section.; ",
    "[IMPRESSION]": "Retrieve the image that best matches the following report for the impression section.; ",
}
# Names resolve_ckpt of the published retrieval script tries inside a directory, in order.
CHECKPOINT_NAMES = (
    "llm2clip4cxr.bin",
    "pytorch_model.bin",
    "consolidated.pth",
    "consolidated.pt",
    "weights.pth",
    "weights.pt",
    "model.pt",
)
# Published dual encoders lexray imports: name -> (where the weights are, licence, import command).
PUBLISHED_DUAL_MODELS: dict[str, tuple[str, str, str]] = {
    "llm2clip4cxr": (
        "llm2clip4cxr.bin (Google Drive, see github.com/lukeingawesome/llm2clip4cxr)",
        "MIT + Llama 3.2 Community License (Llama-derived text tower)",
        "lexray models import llm2clip4cxr FILE --text-base lukeingawesome/llm2vec4cxr --out DIR",
    ),
    "biomedclip": (
        "microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224",
        "MIT",
        "lexray models import open_clip hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224 --out DIR",
    ),
}
WRAPPER_KEYS = ("state_dict", "module", "model_state_dict", "model", "sd", "weights")
PUBLISHED_FILE = "published.json"  # provenance of an imported model
_LORA_KEY = re.compile(
    r"^text\.(?:core|model)\..*?layers\.(\d+)\.self_attn\.([qkvo])_proj\.lora_([AB])\.([^.]+)\.weight$"
)
_DEEPSPEED = re.compile(r"(^|/)(zero_pp_rank_\d+_)?mp_rank_\d+_(model|optim)_states\.pt$")


def resolve_checkpoint(path: str | Path) -> Path:
    """The checkpoint file: ``path`` itself, or the first published file name inside a directory.

    Raises:
        CheckpointError: nothing there, or a DeepSpeed shard (which needs ``zero_to_fp32.py`` first).
    """
    p = Path(path).expanduser()
    if p.is_dir():
        found = [p / n for n in CHECKPOINT_NAMES if (p / n).is_file()]
        if not found:
            # DeepSpeed keeps its shards in global_step*/ below the checkpoint folder.
            shards = sorted(x for x in p.rglob("*") if _DEEPSPEED.search(x.name))
            if shards:
                _refuse_deepspeed(shards[0])
            raise CheckpointError(
                f"{p} holds none of {', '.join(CHECKPOINT_NAMES)}; give the llm2clip4cxr.bin file itself"
            )
        p = found[0]
    if not p.is_file():
        raise CheckpointError(
            f"checkpoint {p} does not exist; download llm2clip4cxr.bin (see the README) and give its path"
        )
    if _DEEPSPEED.search(p.name):
        _refuse_deepspeed(p)
    return p


def _refuse_deepspeed(p: Path) -> None:
    raise CheckpointError(
        f"{p} is one DeepSpeed shard, not a whole model; consolidate the run first "
        "(`python zero_to_fp32.py CHECKPOINT_DIR pytorch_model.bin`) and import that file"
    )


def unwrap_state_dict(obj: Any, origin: str) -> dict[str, torch.Tensor]:
    """The tensor dict inside a checkpoint (``state_dict``/``module``/... wrappers, ``module.`` prefixes).

    Raises:
        CheckpointError: no tensor dict, or a DeepSpeed engine checkpoint.
    """
    if isinstance(obj, dict) and ("ds_version" in obj or "ds_config" in obj):
        _refuse_deepspeed(Path(origin))
    if isinstance(obj, dict):
        for key in WRAPPER_KEYS:
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(
            f"{origin} holds no state dict of tensors (looked under {', '.join(WRAPPER_KEYS)})"
        )
    # DistributedDataParallel saves keys as module.<name>.
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k.removeprefix("module."): v for k, v in obj.items()}
    return obj


def lora_deltas(
    state: dict[str, torch.Tensor], adapter: str, origin: str
) -> dict[tuple[int, str, str], torch.Tensor]:
    """(layer, q|k|v|o, A|B) -> tensor of one LoRA adapter (``adapter``, else the only one stored).

    ``text.core.*`` and ``text.model.*`` are the same module registered twice; both copies must agree.

    Raises:
        CheckpointError: no LoRA tensors, several adapters without ``adapter``, or disagreeing copies.
    """
    by_adapter: dict[str, dict[tuple[int, str, str], torch.Tensor]] = {}
    for key, value in state.items():
        m = _LORA_KEY.match(key)
        if not m:
            continue
        slot = (int(m.group(1)), m.group(2), m.group(3))
        held = by_adapter.setdefault(m.group(4), {})
        if slot in held and not torch.equal(held[slot], value):
            raise CheckpointError(f"{origin}: the text.core and text.model copies of {key} differ")
        held[slot] = value
    if not by_adapter:
        raise CheckpointError(
            f"{origin} has no LoRA tensors (text.core.*/text.model.* ...lora_A/lora_B); it is not an "
            "LLM2CLIP4CXR checkpoint, or it was saved without the text adapters (the published script "
            "would silently evaluate the untuned text model)"
        )
    if adapter in by_adapter:
        return by_adapter[adapter]
    if len(by_adapter) == 1:
        name = next(iter(by_adapter))
        log.info("%s: LoRA adapter %r used as %r", origin, name, adapter)
        return by_adapter[name]
    raise CheckpointError(
        f"{origin} holds LoRA adapters {sorted(by_adapter)} and none is {adapter!r}; choose one with --adapter-name"
    )


def _require(state: dict[str, torch.Tensor], keys: list[str], origin: str, what: str) -> None:
    missing = [k for k in keys if k not in state]
    if missing:
        raise CheckpointError(
            f"{origin}: {what} is missing ({', '.join(missing)}); the checkpoint is incomplete"
        )


def _vision_config(visual: dict[str, torch.Tensor], origin: str) -> Any:
    """The EVA02-CLIP row of ``PUBLISHED_VISION``, sized from the stored tensors (width, depth, image size)."""
    from lexray.vision.towers import PUBLISHED_VISION

    _require(
        {f"visual.{k}": v for k, v in visual.items()},
        ["visual.pos_embed", "visual.patch_embed.proj.weight", "visual.norm.weight", "visual.head.weight"],
        origin,
        "the EVA image tower",
    )
    dim = int(visual["pos_embed"].shape[-1])
    patch = int(visual["patch_embed.proj.weight"].shape[-1])
    grid = int(round((visual["pos_embed"].shape[1] - 1) ** 0.5))
    depth = 1 + max(int(m.group(1)) for k in visual if (m := re.match(r"blocks\.(\d+)\.", k)))
    hidden = (
        int(visual["blocks.0.mlp.w1.weight"].shape[0]) if "blocks.0.mlp.w1.weight" in visual else dim * 8 // 3
    )
    base = PUBLISHED_VISION["eva02-clip-l14-448"]
    kwargs = {
        "embed_dim": dim,
        "depth": depth,
        "num_heads": dim // 64,  # EVA-CLIP's head width is 64
        "patch_size": patch,
        "mlp_ratio": hidden / dim,
    }
    return dataclasses.replace(base, image_size=grid * patch, timm_kwargs=kwargs)


def import_llm2clip4cxr(
    checkpoint: str | Path,
    text_base: str | Path,
    out: str | Path,
    dtype: str = "bfloat16",
    allow_pickle: bool = False,
    adapter_name: str = "llm2clip",
    lora_alpha: int = 32,
) -> Path:
    """Convert ``llm2clip4cxr.bin`` (+ the LLM2Vec4CXR text base) into a lexray dual-encoder directory.

    Args:
        checkpoint: the ``.bin`` file, or a directory holding it under a published name.
        text_base: ``lukeingawesome/llm2vec4cxr`` or a directory with its files.
        out: the directory to write (``lexray evaluate/index build --model OUT`` take it).
        dtype: text-core weights, ``bfloat16`` (published) or ``float32``.
        allow_pickle: unpickle arbitrary objects when ``weights_only=True`` cannot load the file.
        adapter_name: the LoRA adapter to merge (published ``llm2clip``).
        lora_alpha: LoRA alpha used in training (published 32; not stored in the file).

    Raises:
        CheckpointError: a missing, truncated or foreign file, or missing/mis-shaped tensors.
    """
    from lexray.clip.config import DualEncoderConfig, TextTowerConfig
    from lexray.clip.model import DualEncoder
    from lexray.text.config import LoraSettings
    from lexray.vision.towers import build_image_tower, load_timm_checkpoint

    if dtype not in ("bfloat16", "float32"):
        raise CheckpointError(f"dtype {dtype!r}: use bfloat16 (published) or float32")
    file = resolve_checkpoint(checkpoint)
    origin = str(file)
    state = unwrap_state_dict(load_pickle(file, allow_pickle=allow_pickle), origin)
    proj_keys = [f"text.projection.{i}.{p}" for i in (0, 1) for p in ("weight", "bias")]
    _require(state, [*proj_keys, "logit_scale"], origin, "the text projection or logit scale")
    visual = {k.removeprefix("visual."): v for k, v in state.items() if k.startswith("visual.")}
    vision = _vision_config(visual, origin)
    deltas = lora_deltas(state, adapter_name, origin)

    text = load_llm2vec4cxr(text_base, pooling="latent", dtype="float32")
    n_layers = int(text.backbone.config.num_hidden_layers)
    wanted = [(i, p, ab) for i in range(n_layers) for p in "qkvo" for ab in "AB"]
    absent = [f"layers.{i}.self_attn.{p}_proj.lora_{ab}" for i, p, ab in wanted if (i, p, ab) not in deltas]
    if absent:
        raise CheckpointError(f"{origin}: LoRA tensors are missing for {', '.join(absent[:4])}")
    rank = int(deltas[(0, "q", "A")].shape[0])
    text.apply_lora(
        LoraSettings(
            enabled=True,
            r=rank,
            alpha=lora_alpha,
            dropout=0.0,
            target_modules=("q_proj", "k_proj", "v_proj", "o_proj"),
        )
    )
    params = dict(text.backbone.named_parameters())
    with torch.no_grad():
        for (i, p, ab), value in deltas.items():
            name = f"base_model.model.layers.{i}.self_attn.{p}_proj.lora_{ab}.default.weight"
            if name not in params or params[name].shape != value.shape:
                got = tuple(params[name].shape) if name in params else "absent"
                raise CheckpointError(
                    f"{origin}: LoRA tensor layers.{i}.{p}_proj.lora_{ab} has shape {tuple(value.shape)}, the "
                    f"text base needs {got}; --text-base is not the model this checkpoint was trained on"
                )
            params[name].copy_(value)
    text.merge_lora()  # W <- W + (alpha / r) * B @ A, then a plain Llama again
    if dtype == "bfloat16":
        text.backbone.to(torch.bfloat16)
    text.config = dataclasses.replace(
        text.config,
        dtype=dtype,
        instruction=CAPTION_INSTRUCTION,
        marker_instructions=dict(MARKER_INSTRUCTIONS),
    )

    embed_dim = int(state["text.projection.1.weight"].shape[0])
    config = DualEncoderConfig(
        vision=vision,
        # The tower's settings are those of the text encoder just built (the llm2vec4cxr row, the caption
        # instruction), read back rather than restated.
        text=TextTowerConfig(
            encoder=str(text_base),
            mode="frozen",
            pooling=text.config.pooling,
            max_length=text.config.max_length,
            instruction=text.config.instruction,
        ),
        embed_dim=embed_dim,
        projection="linear",
        image_projection="head",
        learn_temperature=False,
    )
    image_tower = build_image_tower(vision, load_weights=False)
    head = {k.removeprefix("head."): visual.pop(k) for k in ("head.weight", "head.bias") if k in visual}
    try:
        load_timm_checkpoint(image_tower, {f"visual.{k}": v for k, v in visual.items()}, origin)
    except ValueError as exc:
        raise CheckpointError(str(exc)) from exc
    model = DualEncoder(config, image_tower, text)
    tensors = {
        "image_proj.0.weight": head.get("weight"),
        "image_proj.0.bias": head.get("bias"),
        "text_proj.0.weight": state["text.projection.0.weight"],
        "text_proj.0.bias": state["text.projection.0.bias"],
        "text_proj.1.weight": state["text.projection.1.weight"],
        "text_proj.1.bias": state["text.projection.1.bias"],
        "logit_scale": state["logit_scale"].reshape(()),
    }
    own = model.state_dict()
    for name, value in tensors.items():
        if value is None or value.shape != own[name].shape:
            got = "absent" if value is None else tuple(value.shape)
            raise CheckpointError(
                f"{origin}: {name} is {got}, expected {tuple(own[name].shape)} (visual.head / text.projection "
                "must map the towers' widths onto one embedding size)"
            )
    model.load_state_dict({k: v.float() for k, v in tensors.items()}, strict=False)
    model.requires_grad_(False)
    out = model.save_pretrained(out)
    record = {
        "model": "llm2clip4cxr",
        "checkpoint": file.name,
        "text_base": str(text_base),
        "adapter": adapter_name,
        "lora_r": rank,
        "lora_alpha": lora_alpha,
        "logit_scale": float(state["logit_scale"].float().reshape(())),
        "license": "MIT (LLM2CLIP4CXR) + Llama 3.2 Community License (Llama-derived text tower)",
    }
    (Path(out) / PUBLISHED_FILE).write_text(json.dumps(record, indent=1))
    return Path(out)
