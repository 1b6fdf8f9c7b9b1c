"""Image preprocessing that travels with an image tower: grayscale radiograph -> normalised tensor.

Radiographs are single-channel. Towers pretrained on RGB photographs expect three channels, so the
grey plane is repeated; towers built for radiographs (the small CNN) take one channel. The image is
letterboxed (padded to a square with black, never stretched, so the heart-to-chest ratio is kept) and
resized with antialiasing. Never flipped: left and right carry clinical meaning. Checkpoints trained
with CLIP's evaluation transform (shorter side resized bicubically, then a centre crop) use
``resize="shorter_crop"`` instead, so they see what they were trained on.
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
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
PREPROCESS_FILENAME = "image_preprocess.json"


@dataclass(frozen=True)
class ImagePreprocess:
    """How pixels in [0, 1] become a tower's input tensor; saved with every model."""

    size: int  # output side in pixels (square)
    channels: int  # channels the tower expects (1 or 3); the grey plane is repeated for 3
    mean: tuple[float, ...]  # per-channel mean subtracted after scaling to [0, 1]
    std: tuple[float, ...]  # per-channel standard deviation divided by
    resize: str = (
        "letterbox"  # letterbox: pad to a square, then resize; shorter_crop: CLIP's resize + centre crop
    )
    interpolation: str = "bilinear"  # bilinear or bicubic (both antialiased when shrinking)

    def __post_init__(self) -> None:
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ValueError(
                f"ImagePreprocess: mean/std need {self.channels} values each, got {self.mean} / {self.std}"
            )
        if self.resize not in ("letterbox", "shorter_crop"):
            raise ValueError(
                f"ImagePreprocess: resize {self.resize!r} is unknown; use letterbox or shorter_crop"
            )
        if self.interpolation not in ("bilinear", "bicubic"):
            raise ValueError(
                f"ImagePreprocess: interpolation {self.interpolation!r} is unknown; use bilinear or bicubic"
            )

    def _shorter_crop(self, x: torch.Tensor) -> torch.Tensor:
        """(H, W) -> (1, 1, size, size): shorter side to ``size`` (aspect kept), centre crop.

        Resampled by PIL on a float ("F") image, as CLIP's torchvision transform does on PIL images
        (PIL's bicubic filter differs from torch's), without rounding to 8 bits.
        """
        from PIL import Image
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms import functional as TF

        mode = InterpolationMode.BICUBIC if self.interpolation == "bicubic" else InterpolationMode.BILINEAR
        img = TF.resize(Image.fromarray(x.numpy(), mode="F"), [self.size], interpolation=mode)
        img = TF.center_crop(img, [self.size, self.size])
        return torch.from_numpy(np.array(img, dtype=np.float32))[None, None]

    def __call__(self, pixels: np.ndarray | torch.Tensor) -> torch.Tensor:
        """One image (H, W) or (H, W, C) with values in [0, 1] -> (C, size, size) float32."""
        x = torch.as_tensor(np.asarray(pixels, dtype=np.float32))
        if x.ndim == 3:  # colour or RGBA files: luminance is what a radiograph means
            x = x[..., :3].mean(dim=-1)
        if x.ndim != 2:
            raise ValueError(f"expected a grayscale image (H, W), got shape {tuple(x.shape)}")
        if x.numel() == 0:
            raise ValueError("empty image")
        if self.resize == "shorter_crop":
            x = self._shorter_crop(x)  # (1, 1, size, size)
        else:
            h, w = x.shape
            side = max(h, w)
            # Letterbox: centre on a black square so the aspect ratio survives the resize.
            top, left = (side - h) // 2, (side - w) // 2
            x = F.pad(x, (left, side - w - left, top, side - h - top))
            x = x[None, None]  # (1, 1, S, S)
            if side != self.size:
                x = F.interpolate(
                    x, size=(self.size, self.size), mode=self.interpolation, antialias=side > self.size
                )
        # Bicubic overshoots; an 8-bit image file would clip there too.
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
            size=data["size"],
            channels=data["channels"],
            mean=tuple(data["mean"]),
            std=tuple(data["std"]),
            resize=data.get("resize", "letterbox"),  # absent in files saved before it existed
            interpolation=data.get("interpolation", "bilinear"),
        )
