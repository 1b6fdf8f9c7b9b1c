"""Image preprocessing that travels with an image tower: grayscale radiograph -> normalised tensor.

Radiographs are single-channel. Towers pretrained on RGB photographs expect three channels, so the
grey plane is repeated; towers built for radiographs (the small CNN) take one channel. The image is
letterboxed (padded to a square with black, never stretched, so the heart-to-chest ratio is kept) and
resized with antialiasing. Never flipped: left and right carry clinical meaning.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PREPROCESS_FILENAME = "image_preprocess.json"


@dataclass(frozen=True)
class ImagePreprocess:
    """How pixels in [0, 1] become a tower's input tensor; saved with every model."""

    size: int  # output side in pixels (square)
    channels: int  # channels the tower expects (1 or 3); the grey plane is repeated for 3
    mean: tuple[float, ...]  # per-channel mean subtracted after scaling to [0, 1]
    std: tuple[float, ...]  # per-channel standard deviation divided by

    def __post_init__(self) -> None:
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ValueError(
                f"ImagePreprocess: mean/std need {self.channels} values each, got {self.mean} / {self.std}"
            )

    def __call__(self, pixels: np.ndarray | torch.Tensor) -> torch.Tensor:
        """One image (H, W) or (H, W, C) with values in [0, 1] -> (C, size, size) float32."""
        x = torch.as_tensor(np.asarray(pixels, dtype=np.float32))
        if x.ndim == 3:  # colour or RGBA files: luminance is what a radiograph means
            x = x[..., :3].mean(dim=-1)
        if x.ndim != 2:
            raise ValueError(f"expected a grayscale image (H, W), got shape {tuple(x.shape)}")
        if x.numel() == 0:
            raise ValueError("empty image")
        h, w = x.shape
        side = max(h, w)
        # Letterbox: centre on a black square so the aspect ratio survives the resize.
        top, left = (side - h) // 2, (side - w) // 2
        x = F.pad(x, (left, side - w - left, top, side - h - top))
        x = x[None, None]  # (1, 1, S, S)
        if side != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=side > self.size)
        x = x[0].clamp_(0.0, 1.0).expand(self.channels, -1, -1)  # (C, size, size)
        mean = torch.tensor(self.mean, dtype=torch.float32)[:, None, None]
        std = torch.tensor(self.std, dtype=torch.float32)[:, None, None]
        return (x - mean) / std

    def batch(self, images: Sequence[np.ndarray | torch.Tensor]) -> torch.Tensor:
        """A list of images -> (B, C, size, size)."""
        return torch.stack([self(im) for im in images])

    def save(self, directory: str | Path) -> Path:
        """Write this preprocessing as JSON into ``directory``."""
        path = Path(directory) / PREPROCESS_FILENAME
        path.write_text(json.dumps(asdict(self), indent=1))
        return path

    @classmethod
    def load(cls, directory: str | Path) -> ImagePreprocess:
        """Read the preprocessing saved by :meth:`save`."""
        data = json.loads((Path(directory) / PREPROCESS_FILENAME).read_text())
        return cls(
            size=data["size"], channels=data["channels"], mean=tuple(data["mean"]), std=tuple(data["std"])
        )
