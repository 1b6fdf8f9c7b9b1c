"""Image towers: transformers vision backbones, timm models and a small CNN behind one interface.

An :class:`ImageTower` maps a batch of preprocessed images ``(B, C, H, W)`` to features ``(B, D)``
and knows the depth of each parameter (for layer-wise learning-rate decay). Per-architecture
differences live in :data:`HF_VISION_TABLE` (how to pool, where the blocks are, which parameters a
plain forward never uses), not in branches on model names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from lexray.vision.preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
    ImagePreprocess,
)


@dataclass(frozen=True)
class VisionConfig:
    """Which image tower to build and how its inputs are prepared."""

    kind: Literal["hf", "timm", "small_cnn"] = (
        "small_cnn"  # backbone family: transformers, timm or the small CNN
    )
    model: str = (
        ""  # hf: alias/dir/hub id; timm: model name (e.g. eva02_large_patch14_448); small_cnn: unused
    )
    pretrained: bool = False  # load pretrained weights (hf: from `model`; timm: timm's own weights)
    image_size: int = 224  # square input side in pixels
    channels: int | None = None  # input channels; None = 1 for small_cnn, 3 otherwise (grey repeated)
    mean: tuple[float, ...] | None = (
        None  # normalisation mean; None = 0.5 (small_cnn) or ImageNet / the checkpoint's
    )
    std: tuple[float, ...] | None = None  # normalisation std; None like `mean`
    resize: Literal["letterbox", "shorter_crop"] = (
        "letterbox"  # letterbox (pad to square) or CLIP's shorter-side resize + centre crop
    )
    interpolation: Literal["bilinear", "bicubic"] = "bilinear"  # resampling filter of the resize
    hf_config: dict[str, Any] = field(
        default_factory=dict
    )  # hf: config fields (with model_type) to build from scratch
    timm_kwargs: dict[str, Any] = field(
        default_factory=dict
    )  # timm: extra create_model arguments (depth, embed_dim...)
    cnn_widths: tuple[int, ...] = (16, 32, 64, 128, 128)  # small_cnn: channels of each stride-2 block
    cnn_out_dim: int = 256  # small_cnn: feature size
    gradient_checkpointing: bool = False  # trade compute for memory in large towers


@dataclass(frozen=True)
class HFVisionSpec:
    """How one transformers vision architecture is pooled and where its blocks are."""

    pooling: Literal["pooler", "cls", "mean"]  # pooler_output, first token, or mean of tokens / spatial map
    block_pattern: str  # regex whose group 1 is the block index
    num_blocks: str  # config attribute holding the block count (a list means stages: its length)
    stem_pattern: str = r"^embeddings\."  # parameters before the first block (layer id 0)
    unused: tuple[str, ...] = ()  # parameters a plain forward never touches (frozen so none dangle)


# model_type (as in the transformers config) -> how to use it.
HF_VISION_TABLE: dict[str, HFVisionSpec] = {
    "vit": HFVisionSpec(
        "pooler", r"^(?:encoder\.)?layers?\.(\d+)\.", "num_hidden_layers", unused=("embeddings.mask_token",)
    ),
    "dinov2": HFVisionSpec(
        "pooler", r"^encoder\.layer\.(\d+)\.", "num_hidden_layers", unused=("embeddings.mask_token",)
    ),
    "dinov2_with_registers": HFVisionSpec(
        "pooler", r"^encoder\.layer\.(\d+)\.", "num_hidden_layers", unused=("embeddings.mask_token",)
    ),
    "swin": HFVisionSpec("pooler", r"^encoder\.layers\.(\d+)\.", "depths", unused=("embeddings.mask_token",)),
    "convnext": HFVisionSpec("pooler", r"^encoder\.stages\.(\d+)\.", "depths"),
    "clip_vision_model": HFVisionSpec(
        "pooler",
        r"^encoder\.layers\.(\d+)\.",
        "num_hidden_layers",
        stem_pattern=r"^(embeddings|pre_layrnorm)\.",
    ),
    "siglip_vision_model": HFVisionSpec("pooler", r"^encoder\.layers\.(\d+)\.", "num_hidden_layers"),
}

# Composite checkpoints (a whole CLIP/SigLIP model) -> the vision sub-config used from them.
_HF_COMPOSITE_VISION = {"clip": "clip_vision_model", "siglip": "siglip_vision_model"}


class ImageTower(nn.Module):
    """Base class: ``forward(pixels (B, C, H, W)) -> (B, out_dim)`` plus depth bookkeeping."""

    out_dim: int
    num_layers: int  # blocks between the stem (id 0) and the head (id num_layers + 1)
    preprocess: ImagePreprocess

    def layer_id(self, name: str) -> int:
        """Depth of parameter ``name``: 0 for the stem, block index + 1, ``num_layers + 1`` for the head."""
        raise NotImplementedError

    def backbone_state(self) -> dict[str, Any]:
        """What :func:`build_image_tower` needs beyond the config to rebuild this tower offline."""
        return {}


class HFVisionTower(ImageTower):
    """A transformers vision backbone (ViT, DINOv2 / RAD-DINO, Swin, ConvNeXt, CLIP or SigLIP vision)."""

    def __init__(self, backbone: nn.Module, spec: HFVisionSpec, preprocess: ImagePreprocess) -> None:
        super().__init__()
        self.backbone = backbone
        self.spec = spec
        self.preprocess = preprocess
        config = backbone.config
        n = getattr(config, spec.num_blocks)
        self.num_layers = len(n) if isinstance(n, (list, tuple)) else int(n)
        hidden = getattr(config, "hidden_size", None)
        if spec.pooling == "pooler" and hasattr(config, "hidden_sizes") and not hasattr(config, "embed_dim"):
            hidden = config.hidden_sizes[-1]  # ConvNeXt pools its last stage
        self.out_dim = int(hidden)
        for name, p in self.backbone.named_parameters():
            if name in spec.unused:
                p.requires_grad_(False)
        self._block = re.compile(spec.block_pattern)
        self._stem = re.compile(spec.stem_pattern)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, D)."""
        out = self.backbone(pixel_values=pixels)
        if self.spec.pooling == "pooler":
            return out.pooler_output.flatten(1)
        hidden = out.last_hidden_state  # (B, T, D)
        return hidden[:, 0] if self.spec.pooling == "cls" else hidden.mean(dim=1)

    def layer_id(self, name: str) -> int:
        """See :meth:`ImageTower.layer_id`."""
        name = name.removeprefix("backbone.")
        if self._stem.match(name):
            return 0
        m = self._block.match(name)
        return int(m.group(1)) + 1 if m else self.num_layers + 1

    def backbone_state(self) -> dict[str, Any]:
        """The full transformers config, so the architecture is rebuilt without the hub."""
        return {"hf_config": self.backbone.config.to_dict()}


class TimmTower(ImageTower):
    """A timm backbone (EVA02, ViT, ConvNeXt, EfficientNet...) with its classifier removed."""

    def __init__(self, backbone: nn.Module, preprocess: ImagePreprocess) -> None:
        super().__init__()
        self.backbone = backbone
        self.preprocess = preprocess
        self.out_dim = int(backbone.num_features)
        import timm.models

        # timm's own grouping (stem, blocks..., head) gives each parameter its depth.
        groups = timm.models.group_parameters(backbone, backbone.group_matcher(coarse=False))
        self._ids = {name: gid for gid, names in groups.items() for name in names}
        self.num_layers = max(len(groups) - 2, 0)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, D)."""
        return self.backbone(pixels)

    def layer_id(self, name: str) -> int:
        """See :meth:`ImageTower.layer_id`."""
        return min(self._ids.get(name.removeprefix("backbone."), self.num_layers + 1), self.num_layers + 1)


class SmallCNN(ImageTower):
    """A compact CNN for CPU runs that keeps *where* things are.

    Global average pooling would throw away position, and a left effusion differs from a right one
    only by position; so the last feature map (4x4 to 8x8 cells) is flattened into the head instead.
    """

    def __init__(self, widths: tuple[int, ...], out_dim: int, preprocess: ImagePreprocess) -> None:
        super().__init__()
        self.preprocess = preprocess
        blocks = []
        c_in = preprocess.channels
        for w in widths:
            blocks.append(
                nn.Sequential(
                    nn.Conv2d(c_in, w, 3, stride=2, padding=1, bias=False),
                    nn.BatchNorm2d(w),
                    nn.GELU(),
                    nn.Conv2d(w, w, 3, padding=1, bias=False),
                    nn.BatchNorm2d(w),
                    nn.GELU(),
                )
            )
            c_in = w
        self.blocks = nn.ModuleList(blocks)
        side = preprocess.size
        for _ in widths:
            side = (side + 1) // 2
        self.reduce = nn.Conv2d(c_in, 16, 1)
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(16 * side * side, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim)
        )
        self.num_layers = len(widths)
        self.out_dim = out_dim

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, out_dim)."""
        x = pixels
        for block in self.blocks:
            x = block(x)  # (B, w, H/2^k, W/2^k)
        return self.head(self.reduce(x))

    def layer_id(self, name: str) -> int:
        """See :meth:`ImageTower.layer_id`."""
        m = re.match(r"^blocks\.(\d+)\.", name)
        return int(m.group(1)) + 1 if m else self.num_layers + 1


def _preprocess(
    config: VisionConfig, default_channels: int, mean: tuple[float, ...], std: tuple[float, ...]
) -> ImagePreprocess:
    channels = config.channels or default_channels
    mean = tuple(config.mean) if config.mean is not None else mean
    std = tuple(config.std) if config.std is not None else std
    if len(mean) != channels:  # e.g. ImageNet statistics for a one-channel tower: use the grey average
        mean, std = (sum(mean) / len(mean),) * channels, (sum(std) / len(std),) * channels
    return ImagePreprocess(
        size=config.image_size,
        channels=channels,
        mean=mean,
        std=std,
        resize=config.resize,
        interpolation=config.interpolation,
    )


def _build_hf(config: VisionConfig, state: dict[str, Any], load_weights: bool) -> ImageTower:
    from transformers import AutoConfig, AutoModel

    if state.get("hf_config") or config.hf_config:
        data = dict(state.get("hf_config") or config.hf_config)
        model_type = data.pop("model_type", None)
        if model_type is None:
            raise ValueError("vision.hf_config needs a model_type (e.g. vit, dinov2, swin, convnext)")
        hf_config = AutoConfig.for_model(model_type, **data)
        backbone = AutoModel.from_config(hf_config)
        mean, std = IMAGENET_MEAN, IMAGENET_STD
    else:
        if not config.model:
            raise ValueError("vision.model is empty: give a hub id or directory, or vision.hf_config")
        from lexray.models import local_path

        path = local_path(config.model)
        hf_config = AutoConfig.from_pretrained(path)
        if hf_config.model_type in _HF_COMPOSITE_VISION:
            hf_config = hf_config.vision_config
        if config.pretrained and load_weights:
            backbone = AutoModel.from_pretrained(path, config=hf_config)
        else:
            backbone = AutoModel.from_config(hf_config)
        mean, std = _checkpoint_stats(path)
    spec = HF_VISION_TABLE.get(backbone.config.model_type)
    if spec is None:
        raise ValueError(
            f"vision model_type {backbone.config.model_type!r} is not in HF_VISION_TABLE; known: "
            + ", ".join(sorted(HF_VISION_TABLE))
        )
    if config.gradient_checkpointing:
        backbone.gradient_checkpointing_enable()
    channels = int(getattr(backbone.config, "num_channels", 3))
    pre = _preprocess(config, channels, mean, std)
    return HFVisionTower(backbone, spec, pre)


def _checkpoint_stats(path: Path) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Normalisation a pretrained checkpoint was trained with (preprocessor_config.json), else ImageNet's."""
    import json

    file = Path(path) / "preprocessor_config.json"
    if file.is_file():
        data = json.loads(file.read_text())
        if "image_mean" in data and "image_std" in data:
            return tuple(data["image_mean"]), tuple(data["image_std"])
    return IMAGENET_MEAN, IMAGENET_STD


# timm modules whose models are built for a fixed input size (CNNs adapt to any size by themselves).
TIMM_TAKES_IMG_SIZE = frozenset(
    {
        "timm.models.eva",
        "timm.models.vision_transformer",
        "timm.models.vision_transformer_hybrid",
        "timm.models.deit",
        "timm.models.beit",
        "timm.models.swin_transformer",
        "timm.models.swin_transformer_v2",
    }
)


def _build_timm(config: VisionConfig, state: dict[str, Any], load_weights: bool) -> ImageTower:
    import timm

    if not config.model:
        raise ValueError("vision.model is empty: give a timm model name, e.g. eva02_large_patch14_448")
    channels = config.channels or 3
    kwargs = dict(config.timm_kwargs)
    module = timm.models.model_entrypoint(config.model).__module__
    if "img_size" not in kwargs and module in TIMM_TAKES_IMG_SIZE:
        kwargs["img_size"] = config.image_size  # transformers need the size for their position embeddings
    backbone = timm.create_model(
        config.model,
        pretrained=config.pretrained and load_weights,
        num_classes=0,
        in_chans=channels,
        **kwargs,
    )
    if config.gradient_checkpointing:
        backbone.set_grad_checkpointing(True)
    data_cfg = getattr(backbone, "pretrained_cfg", {}) or {}
    mean = tuple(data_cfg.get("mean", IMAGENET_MEAN))
    std = tuple(data_cfg.get("std", IMAGENET_STD))
    return TimmTower(backbone, _preprocess(config, channels, mean, std))


# Published image towers, as rows: timm architecture + the evaluation preprocessing they were trained with.
PUBLISHED_VISION: dict[str, VisionConfig] = {
    # EVA02-CLIP-L/14 as in LLM2CLIP4CXR: its "336" config is built at 448 px; CLS -> norm (the head is
    # the dual encoder's image projection).
    "eva02-clip-l14-448": VisionConfig(
        kind="timm",
        model="eva02_large_patch14_clip_336",
        image_size=448,
        mean=OPENAI_CLIP_MEAN,
        std=OPENAI_CLIP_STD,
        resize="shorter_crop",
        interpolation="bicubic",
    ),
}

# timm module -> its function that maps original checkpoint key names (EVA-CLIP's w1/w2/w3, ffn_ln,
# inner_attn_ln, a "visual." prefix...) onto timm's.
TIMM_CHECKPOINT_FILTERS = {"timm.models.eva": "checkpoint_filter_fn"}


def load_timm_checkpoint(tower: TimmTower, state: dict[str, torch.Tensor], origin: str) -> None:
    """Load an original-layout checkpoint into a :class:`TimmTower` through timm's own key mapping.

    Raises:
        ValueError: a tensor is missing, unexpected or mis-shaped (the message names it).
    """
    import importlib

    module = type(tower.backbone).__module__
    if module in TIMM_CHECKPOINT_FILTERS:
        filter_fn = getattr(importlib.import_module(module), TIMM_CHECKPOINT_FILTERS[module])
        state = filter_fn(state, tower.backbone)
    own = tower.backbone.state_dict()
    wrong = [
        f"{k} {tuple(v.shape)} (expected {tuple(own[k].shape)})"
        for k, v in state.items()
        if k in own and own[k].shape != v.shape
    ]
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if wrong or missing or unexpected:
        raise ValueError(
            f"{origin}: the image tower's weights do not match {tower.backbone.__class__.__name__} "
            f"(missing {missing[:4]}, unexpected {unexpected[:4]}, wrong shape {wrong[:4]})"
        )
    tower.backbone.load_state_dict(state)


def _build_small_cnn(config: VisionConfig, state: dict[str, Any], load_weights: bool) -> ImageTower:
    pre = _preprocess(config, 1, (0.5,), (0.25,))
    return SmallCNN(tuple(config.cnn_widths), config.cnn_out_dim, pre)


# kind -> builder(config, saved backbone state, load pretrained weights?); one row per backbone family.
TOWER_BUILDERS = {"hf": _build_hf, "timm": _build_timm, "small_cnn": _build_small_cnn}


def build_image_tower(
    config: VisionConfig, state: dict[str, Any] | None = None, load_weights: bool = True
) -> ImageTower:
    """Build the image tower ``config`` describes.

    Args:
        config: the tower's configuration.
        state: what :meth:`ImageTower.backbone_state` returned when the tower was saved; given when
            reloading, so the architecture is rebuilt offline.
        load_weights: fetch pretrained weights when ``config.pretrained``; False when the weights
            come from a lexray checkpoint anyway.

    Raises:
        ValueError: an unknown kind or architecture, naming the known ones.
    """
    if config.kind not in TOWER_BUILDERS:
        raise ValueError(f"vision.kind {config.kind!r} is unknown; use one of {', '.join(TOWER_BUILDERS)}")
    return TOWER_BUILDERS[config.kind](config, state or {}, load_weights)
