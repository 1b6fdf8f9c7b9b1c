"""Image towers (transformers, timm, a small CNN) and the preprocessing saved with them."""

from lexray.vision.preprocess import ImagePreprocess
from lexray.vision.towers import (
    HF_VISION_TABLE,
    TOWER_BUILDERS,
    HFVisionTower,
    ImageTower,
    SmallCNN,
    TimmTower,
    VisionConfig,
    build_image_tower,
)

__all__ = [
    "HF_VISION_TABLE",
    "TOWER_BUILDERS",
    "HFVisionTower",
    "ImagePreprocess",
    "ImageTower",
    "SmallCNN",
    "TimmTower",
    "VisionConfig",
    "build_image_tower",
]
