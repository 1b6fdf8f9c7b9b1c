"""CLIP-style dual encoder for chest X-rays: model, losses, text-feature cache and training loop."""

from lexray.clip.cache import TextFeatureCache
from lexray.clip.config import DualEncoderConfig, TextTowerConfig
from lexray.clip.losses import LOSSES, ClipLoss, SigLipLoss
from lexray.clip.model import DualEncoder

__all__ = [
    "LOSSES",
    "ClipLoss",
    "DualEncoder",
    "DualEncoderConfig",
    "SigLipLoss",
    "TextFeatureCache",
    "TextTowerConfig",
]
