"""``DualEncoder``: image tower + report tower, projection heads and a learnable temperature.

``forward`` returns features only (L2-normalised embeddings, the logit scale and bias); losses live
in :mod:`lexray.clip.losses`. A saved directory holds everything needed to embed later: the config,
the image preprocessing, the image-tower architecture, the projection weights, and the text tower
(its reference when frozen, its adapters or weights when trained).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from safetensors.torch import load_file, save_file
from torch import nn

from lexray.clip.cache import TextFeatureCache
from lexray.clip.config import DualEncoderConfig
from lexray.config import load_config, to_dict
from lexray.models import lexray_home
from lexray.text.encoder import TextEncoder, is_encoder_dir
from lexray.vision.towers import ImageTower, build_image_tower

log = logging.getLogger(__name__)

MARKER_FILE = "lexray_clip.json"  # marks a saved dual-encoder directory
MODEL_CONFIG_FILE = "dual_encoder.yaml"
WEIGHTS_FILE = "model.safetensors"
TEXT_DIR = "text"
FORMAT_VERSION = 1
# Where a training run keeps its loadable models, in the order from_pretrained looks for them.
RUN_MODEL_DIRS = ("best", "final")


def _projection(in_dim: int, out_dim: int, kind: str) -> nn.Module:
    if kind == "head":  # a tower's own linear head, e.g. EVA-CLIP's (its norm is inside the tower)
        return nn.Sequential(nn.Linear(in_dim, out_dim))
    if kind == "linear":
        return nn.Sequential(nn.LayerNorm(in_dim), nn.Linear(in_dim, out_dim))
    if kind == "mlp":
        return nn.Sequential(
            nn.LayerNorm(in_dim), nn.Linear(in_dim, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim)
        )
    raise ValueError(f"projection {kind!r} is unknown; use linear, mlp or head")


def build_text_tower(config: DualEncoderConfig) -> TextEncoder:
    """Load the report tower ``config.text`` names and set its trainable parameters for the mode."""
    t = config.text
    if is_encoder_dir(t.encoder):
        encoder = TextEncoder.from_pretrained(t.encoder, max_length=t.max_length)
    else:
        encoder = TextEncoder.from_pretrained(
            t.encoder,
            instruction=t.instruction,
            pooling=t.pooling,
            max_length=t.max_length,
            bidirectional=t.bidirectional,
        )
    _set_text_mode(encoder, config)
    return encoder


def _set_text_mode(encoder: TextEncoder, config: DualEncoderConfig) -> None:
    mode = config.text.mode
    if mode == "lora":
        if not encoder.has_lora:
            encoder.apply_lora(config.text.lora)
        encoder.freeze_backbone()  # only the adapters (and pooling weights, if any) train
    elif mode == "full":
        encoder.unfreeze_backbone()
    else:
        encoder.requires_grad_(False)
        encoder.eval()


class DualEncoder(nn.Module):
    """CLIP-style dual encoder for chest X-ray images and reports.

    Embedding protocol (used by evaluation, the index and the service): :meth:`embed_images`,
    :meth:`embed_texts` (L2-normalised float32 arrays) and :attr:`embed_dim`.
    """

    def __init__(
        self,
        config: DualEncoderConfig,
        image_tower: ImageTower,
        text_tower: TextEncoder,
    ) -> None:
        super().__init__()
        self.config = config
        self.image_tower = image_tower
        self.text_tower = text_tower
        self.image_proj = _projection(
            image_tower.out_dim, config.embed_dim, config.image_projection or config.projection
        )
        self.text_proj = _projection(text_tower.dim, config.embed_dim, config.projection)
        self.logit_scale = nn.Parameter(
            torch.tensor(math.log(1.0 / config.init_temperature)), requires_grad=config.learn_temperature
        )
        self.logit_bias = nn.Parameter(torch.tensor(config.init_logit_bias)) if config.logit_bias else None
        self.text_cache: TextFeatureCache | None = None

    # ------------------------------------------------------------------------------------------
    # construction and saving

    @classmethod
    def from_config(cls, config: DualEncoderConfig, text_tower: TextEncoder | None = None) -> DualEncoder:
        """Build a fresh model (pretrained tower weights when the config asks for them)."""
        encoder = Path(config.text.encoder).expanduser()
        if encoder.is_dir():
            # Saved with the run: a relative path would resolve against whatever directory loads it later.
            config = dataclasses.replace(
                config, text=dataclasses.replace(config.text, encoder=str(encoder.resolve()))
            )
        image_tower = build_image_tower(config.vision)
        text = text_tower if text_tower is not None else build_text_tower(config)
        if text_tower is not None:
            _set_text_mode(text, config)
        return cls(config, image_tower, text)

    @property
    def embed_dim(self) -> int:
        """Size of the shared embedding space."""
        return self.config.embed_dim

    @property
    def text_frozen(self) -> bool:
        """True when the report tower is frozen (its features may come from the cache)."""
        return self.config.text.mode == "frozen"

    def attach_text_cache(self, root: str | Path | None = None) -> TextFeatureCache:
        """Use an on-disk feature cache for the frozen report tower (keyed by its fingerprint)."""
        if not self.text_frozen:
            raise ValueError("a text feature cache is only valid for text.mode=frozen")
        root = Path(root or self.config.text.cache_dir or lexray_home() / "cache" / "text-features")
        self.text_cache = TextFeatureCache(root, self.text_tower.fingerprint, self.text_tower.dim)
        return self.text_cache

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write a self-contained model directory (see the module docstring)."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        state = {
            k: v.detach().cpu().contiguous()
            for k, v in self.state_dict().items()
            if not k.startswith("text_tower.")
        }
        if not self.text_frozen:
            self.text_tower.save_pretrained(out / TEXT_DIR)
        # The pooling of a frozen base encoder can carry weights too (latent attention): keep them.
        elif any(True for _ in self.text_tower.pooling.parameters()):
            self.text_tower.save_pretrained(out / TEXT_DIR)
        save_file(state, out / WEIGHTS_FILE)
        (out / MODEL_CONFIG_FILE).write_text(yaml.safe_dump(to_dict(self.config), sort_keys=False))
        self.image_tower.preprocess.save(out)
        meta = {
            "format": "lexray-dual-encoder",
            "format_version": FORMAT_VERSION,
            "image_backbone": self.image_tower.backbone_state(),
            "text_tower": TEXT_DIR if (out / TEXT_DIR).is_dir() else self.config.text.encoder,
            "text_fingerprint": self.text_tower.fingerprint,
            "embed_dim": self.embed_dim,
        }
        (out / MARKER_FILE).write_text(json.dumps(meta, indent=1))
        return out

    @classmethod
    def from_pretrained(cls, path: str | Path, text_tower: TextEncoder | None = None) -> DualEncoder:
        """Load a saved model directory, or a training run directory (its ``best`` or ``final`` model).

        Args:
            path: a directory written by :meth:`save_pretrained` or a ``lexray clip train`` run.
            text_tower: an already loaded report tower to reuse (must have the saved fingerprint).

        Raises:
            FileNotFoundError: no saved model in ``path``.
        """
        directory = _model_dir(Path(path))
        meta = json.loads((directory / MARKER_FILE).read_text())
        if meta.get("format") == "lexray-open-clip":  # an imported open_clip model (same embedding protocol)
            from lexray.clip.openclip import OpenClipDualEncoder

            return OpenClipDualEncoder.from_pretrained(directory)  # type: ignore[return-value]
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{directory}: unsupported dual-encoder format {meta.get('format_version')!r}")
        config = load_config(DualEncoderConfig, directory / MODEL_CONFIG_FILE)
        image_tower = build_image_tower(config.vision, state=meta["image_backbone"], load_weights=False)
        if text_tower is None:
            if (directory / TEXT_DIR).is_dir():
                text_tower = TextEncoder.from_pretrained(directory / TEXT_DIR)
            else:
                text_tower = build_text_tower(config)
        if config.text.mode == "lora" and not text_tower.has_lora:
            # A merged save of a LoRA-tuned tower: it is trained weights now, kept frozen at inference.
            text_tower.requires_grad_(False)
        else:
            _set_text_mode(text_tower, config)
        if text_tower.fingerprint != meta["text_fingerprint"]:
            log.warning(
                "%s: the text tower's fingerprint %s differs from the saved %s; text embeddings may differ",
                directory,
                text_tower.fingerprint,
                meta["text_fingerprint"],
            )
        model = cls(config, image_tower, text_tower)
        missing, unexpected = model.load_state_dict(load_file(directory / WEIGHTS_FILE), strict=False)
        missing = [m for m in missing if not m.startswith("text_tower.")]
        if missing or unexpected:
            raise ValueError(
                f"{directory}: weights do not match the config (missing {missing[:3]}, unexpected {unexpected[:3]})"
            )
        model.eval()
        return model

    # ------------------------------------------------------------------------------------------
    # features

    @property
    def device(self) -> torch.device:
        """Device of the projection weights."""
        return self.logit_scale.device

    def scale(self) -> torch.Tensor:
        """exp(logit_scale) clamped to ``max_logit_scale`` (= 1 / temperature)."""
        return self.logit_scale.exp().clamp(max=self.config.max_logit_scale)

    def encode_image(self, pixels: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Preprocessed images (B, C, H, W) -> embeddings (B, embed_dim)."""
        feats = self.image_tower(pixels.to(self.device))  # (B, D_img)
        emb = self.image_proj(feats)  # (B, E)
        return F.normalize(emb, dim=-1) if normalize else emb

    def encode_text(self, batch: Mapping[str, torch.Tensor], normalize: bool = True) -> torch.Tensor:
        """A batch from ``text_tower.tokenize`` -> embeddings (B, embed_dim)."""
        if self.text_frozen:
            with torch.no_grad():
                feats = self.text_tower(batch)
        else:
            feats = self.text_tower(batch)  # (B, D_txt)
        return self.encode_text_features(feats, normalize)

    def encode_text_features(self, features: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Report-tower features (B, D_txt), e.g. from the cache -> embeddings (B, embed_dim)."""
        emb = self.text_proj(features.to(self.device, self.text_proj[-1].weight.dtype))  # (B, E)
        return F.normalize(emb, dim=-1) if normalize else emb

    def forward(
        self,
        pixels: torch.Tensor,
        text: Mapping[str, torch.Tensor] | torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """Embed a batch of pairs. ``text`` is a tokenised batch or cached features (B, D_txt).

        Returns:
            ``image`` (B, E) and ``text`` (B, E) L2-normalised, ``logit_scale`` (scalar, clamped
            1/T) and ``logit_bias`` (scalar or None): what the losses take.
        """
        image = self.encode_image(pixels)
        if isinstance(text, torch.Tensor):
            txt = self.encode_text_features(text)
        else:
            txt = self.encode_text(text)
        return {"image": image, "text": txt, "logit_scale": self.scale(), "logit_bias": self.logit_bias}

    def text_features(self, texts: Sequence[str], batch_size: int = 32) -> torch.Tensor:
        """Report-tower features (n, D_txt) of raw texts, from the cache when one is attached."""
        if self.text_cache is not None:
            feats = self.text_cache.get(
                list(texts), lambda todo: self.text_tower.encode(todo, batch_size=batch_size, normalize=False)
            )
        else:
            feats = self.text_tower.encode(list(texts), batch_size=batch_size, normalize=False)
        return torch.from_numpy(np.ascontiguousarray(feats))

    # ------------------------------------------------------------------------------------------
    # embedding protocol

    @torch.no_grad()
    def embed_images(
        self, images: Sequence[np.ndarray | str | Path], batch_size: int = 32, normalize: bool = True
    ) -> np.ndarray:
        """Images (arrays (H, W) in [0, 1], or files: PNG, JPEG, DICOM) -> (n, embed_dim) float32.

        L2-normalised unless ``normalize`` is False (raw features, for the published clip/dot protocol).
        """
        from lexray.data.images import load_radiograph

        was_training = self.training
        self.eval()
        out = np.zeros((len(images), self.embed_dim), dtype=np.float32)
        pre = self.image_tower.preprocess
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            arrays = [im if isinstance(im, np.ndarray) else load_radiograph(im).pixels for im in chunk]
            pixels = pre.batch(arrays)  # (b, C, S, S)
            out[start : start + len(chunk)] = self.encode_image(pixels, normalize).float().cpu().numpy()
        self.train(was_training)
        return out

    @torch.no_grad()
    def embed_texts(self, texts: Sequence[str], batch_size: int = 32, normalize: bool = True) -> np.ndarray:
        """Reports -> (n, embed_dim) float32, L2-normalised unless ``normalize`` is False."""
        if isinstance(texts, str):
            raise TypeError("embed_texts expects a list of texts, got one string")
        was_training = self.training
        self.eval()
        out = np.zeros((len(texts), self.embed_dim), dtype=np.float32)
        feats = self.text_features(texts, batch_size)  # (n, D_txt)
        for start in range(0, len(texts), max(batch_size, 256)):
            chunk = feats[start : start + max(batch_size, 256)]
            out[start : start + len(chunk)] = (
                self.encode_text_features(chunk, normalize).float().cpu().numpy()
            )
        self.train(was_training)
        return out

    def trainable_parameters(self) -> dict[str, nn.Parameter]:
        """Name -> parameter for every parameter the optimiser should update."""
        return {n: p for n, p in self.named_parameters() if p.requires_grad}


def find_model_dir(path: Path) -> Path | None:
    """The saved dual-encoder directory at ``path``: itself, or its run's model; None when neither.

    The one rule for where a training run keeps its loadable model (``RUN_MODEL_DIRS``, in order).
    """
    for candidate in (path, *(path / name for name in RUN_MODEL_DIRS)):
        if (candidate / MARKER_FILE).is_file():
            return candidate
    return None


def _model_dir(path: Path) -> Path:
    found = find_model_dir(path)
    if found is not None:
        return found
    raise FileNotFoundError(
        f"{path} holds no saved dual encoder ({MARKER_FILE}, or a run's {'/'.join(RUN_MODEL_DIRS)}/): "
        "train one with `lexray clip train` or give the model directory"
    )
