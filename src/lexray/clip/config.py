"""Configuration of the dual encoder and its training run (one frozen dataclass per component)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from lexray.text.config import LoraSettings
from lexray.vision.towers import VisionConfig

PUBLISHED_INSTRUCTION = "Retrieve the image that best matches the following report. "


@dataclass(frozen=True)
class TextTowerConfig:
    """The report tower of the dual encoder."""

    encoder: str = (
        "smollm2-135m"  # text encoder: alias, hub id, base-model dir, or a saved lexray text-encoder dir
    )
    mode: Literal["frozen", "lora", "full"] = (
        "frozen"  # frozen (features cached on disk), LoRA adapters, or all weights
    )
    instruction: str = ""  # prefix for base models (a saved lexray encoder keeps its own)
    pooling: Literal["mean", "last", "latent"] = "mean"  # token pooling for base models
    bidirectional: bool = True  # base decoder LLMs: remove the causal mask (LLM2Vec); false keeps it causal
    max_length: int = 256  # tokens per report including the instruction
    lora: LoraSettings = field(
        default_factory=lambda: LoraSettings(enabled=True, r=16, alpha=32, dropout=0.1)
    )  # adapters for mode=lora (published: r=16, alpha=32, dropout 0.1 on q/k/v/o)
    cache_dir: str = ""  # frozen mode: feature cache root ("" = $LEXRAY_HOME/cache/text-features)


@dataclass(frozen=True)
class DualEncoderConfig:
    """Towers, projections and temperature of the CLIP-style model."""

    vision: VisionConfig = field(default_factory=VisionConfig)  # image tower
    text: TextTowerConfig = field(default_factory=TextTowerConfig)  # report tower
    embed_dim: int = 512  # shared embedding size after the projections
    projection: Literal["linear", "mlp"] = (
        "linear"  # LayerNorm+Linear (published) or LayerNorm+Linear+GELU+Linear
    )
    image_projection: Literal["", "linear", "mlp", "head"] = (
        ""  # image side only: "" = as `projection`; head = one Linear (EVA-CLIP's visual.head)
    )
    init_temperature: float = 0.07  # initial softmax temperature (CLIP: 0.07); learnt as log(1/T)
    learn_temperature: bool = True  # train the temperature
    max_logit_scale: float = 100.0  # clamp of 1/T so training cannot collapse the softmax
    logit_bias: bool = False  # add a learnable logit bias (needed by the SigLIP loss)
    init_logit_bias: float = -10.0  # its initial value (SigLIP paper)
