"""open_clip models (BiomedCLIP and others) as lexray dual encoders, through the open_clip library.

:func:`import_open_clip` loads a model from ``hf-hub:ORG/NAME`` or a local directory in open_clip's hub
layout (``open_clip_config.json`` + ``open_clip_model.safetensors`` + tokenizer files), and writes a
self-contained lexray directory: the same files, plus the configuration of a Hugging Face text tower
(BiomedCLIP's PubMedBERT) so that it rebuilds offline, the image preprocessing and lexray's marker.
:class:`OpenClipDualEncoder` loads it and speaks lexray's embedding protocol (``embed_images``,
``embed_texts``, ``embed_dim``), so ``lexray evaluate``, ``index build``, ``search`` and ``serve`` take it.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lexray import models
from lexray.text.weight_files import CheckpointError, load_matching
from lexray.vision.preprocess import ImagePreprocess

FORMAT = "lexray-open-clip"
CONFIG_FILE = "open_clip_config.json"
WEIGHTS_FILE = "open_clip_model.safetensors"
HF_TEXT_DIR = "hf_text"  # the transformers config of an HF text tower, so it rebuilds offline
BIOMEDCLIP = "microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"
# open_clip's preprocess_cfg resize_mode -> lexray's resize; the others are not implemented.
_RESIZE_MODES = {"shortest": "shorter_crop"}


def _preprocess_from(config: dict[str, Any], image_size: int | Sequence[int]) -> ImagePreprocess:
    pre = config.get("preprocess_cfg", {})
    mode = pre.get("resize_mode", "shortest")
    if mode not in _RESIZE_MODES:
        raise CheckpointError(
            f"open_clip resize_mode {mode!r} is not supported (only {sorted(_RESIZE_MODES)})"
        )
    size = image_size if isinstance(image_size, int) else int(image_size[0])
    return ImagePreprocess(
        size=size,
        channels=3,
        mean=tuple(pre.get("mean", (0.48145466, 0.4578275, 0.40821073))),
        std=tuple(pre.get("std", (0.26862954, 0.26130258, 0.27577711))),
        resize=_RESIZE_MODES[mode],
        interpolation=pre.get("interpolation", "bicubic"),
    )


def _build_model(directory: Path, config: dict[str, Any]) -> nn.Module:
    """An open_clip model from a lexray directory's config (its HF text tower from ``hf_text/``)."""
    import open_clip
    from safetensors.torch import load_file

    model_cfg = copy.deepcopy(config["model_cfg"])
    text_cfg = model_cfg.get("text_cfg", {})
    custom_text = model_cfg.pop("custom_text", False) or "hf_model_name" in text_cfg
    if "hf_model_name" in text_cfg:
        text_cfg["hf_model_name"] = str(directory / HF_TEXT_DIR)
        text_cfg["hf_model_pretrained"] = False  # the weights come from the safetensors file below
    cls = open_clip.CustomTextCLIP if custom_text else open_clip.CLIP
    model = cls(**model_cfg)
    state = load_file(directory / WEIGHTS_FILE)
    # transformers may not register position_ids buffers; they are recomputed.
    missing, unexpected = load_matching(model, state, ignored_suffix="position_ids")
    if missing or unexpected:
        raise CheckpointError(
            f"{directory / WEIGHTS_FILE} does not match its config (missing {missing[:4]}, "
            f"unexpected {unexpected[:4]}); import the model again"
        )
    return model.eval()


class OpenClipDualEncoder(nn.Module):
    """An open_clip CLIP model behind lexray's embedding protocol; load with :meth:`from_pretrained`."""

    def __init__(self, model: nn.Module, tokenizer: Any, preprocess: ImagePreprocess, embed_dim: int) -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.preprocess = preprocess
        self.embed_dim = embed_dim  # size of the shared embedding space

    @classmethod
    def from_pretrained(cls, path: str | Path) -> OpenClipDualEncoder:
        """Load a directory written by :func:`import_open_clip`."""
        import open_clip

        directory = Path(path)
        config = json.loads((directory / CONFIG_FILE).read_text())
        model = _build_model(directory, config)
        # local-dir: open_clip takes an HF tokenizer's files from the directory itself.
        tokenizer = open_clip.get_tokenizer(f"local-dir:{directory}")
        meta = json.loads((directory / "lexray_clip.json").read_text())
        return cls(model, tokenizer, ImagePreprocess.load(directory), int(meta["embed_dim"]))

    @property
    def logit_scale(self) -> torch.Tensor:
        """log(1 / temperature), as the open_clip model stores it."""
        return self.model.logit_scale

    @property
    def device(self) -> torch.device:
        """Device of the model weights."""
        return next(self.model.parameters()).device

    def encode_image(self, pixels: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Preprocessed images (B, 3, S, S) -> embeddings (B, E)."""
        return self.model.encode_image(pixels.to(self.device), normalize=normalize)

    def encode_text(self, tokens: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Token ids from ``self.tokenizer`` (B, L) -> embeddings (B, E)."""
        return self.model.encode_text(tokens.to(self.device), normalize=normalize)

    @torch.no_grad()
    def embed_images(
        self, images: Sequence[np.ndarray | str | Path], batch_size: int = 32, normalize: bool = True
    ) -> np.ndarray:
        """Images (arrays (H, W) in [0, 1], or files) -> (n, E) float32, L2-normalised unless told not to."""
        from lexray.data.images import load_radiograph

        self.eval()
        out = np.zeros((len(images), self.embed_dim), dtype=np.float32)
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            arrays = [im if isinstance(im, np.ndarray) else load_radiograph(im).pixels for im in chunk]
            pixels = self.preprocess.batch(arrays)
            out[start : start + len(chunk)] = self.encode_image(pixels, normalize).float().cpu().numpy()
        return out

    @torch.no_grad()
    def embed_texts(self, texts: Sequence[str], batch_size: int = 32, normalize: bool = True) -> np.ndarray:
        """Reports -> (n, E) float32 (open_clip's tokenizer), L2-normalised unless ``normalize`` is False."""
        if isinstance(texts, str):
            raise TypeError("embed_texts expects a list of texts, got one string")
        self.eval()
        out = np.zeros((len(texts), self.embed_dim), dtype=np.float32)
        for start in range(0, len(texts), batch_size):
            chunk = list(texts[start : start + batch_size])
            out[start : start + len(chunk)] = (
                self.encode_text(self.tokenizer(chunk), normalize).float().cpu().numpy()
            )
        return out


def _open(reference: str) -> tuple[nn.Module, Any, dict[str, Any]]:
    """An open_clip model, its tokenizer and its hub config (``open_clip_config.json``)."""
    import open_clip

    path = Path(reference).expanduser()
    if path.is_dir():
        if not (path / CONFIG_FILE).is_file():
            raise CheckpointError(f"{path} has no {CONFIG_FILE}; it is not an open_clip model directory")
        name = f"local-dir:{path}"
        config = json.loads((path / CONFIG_FILE).read_text())
    else:
        hub_id = reference.removeprefix("hf-hub:")
        if models.hub_offline():
            raise models.ModelNotAvailableError(
                f"open_clip model {hub_id!r} is not available: HF_HUB_OFFLINE is set; download it on a machine "
                f"with network access (`hf download {hub_id} --local-dir DIR`) and pass DIR instead"
            )
        name = f"hf-hub:{hub_id}"
        from huggingface_hub import hf_hub_download

        config = json.loads(Path(hf_hub_download(hub_id, CONFIG_FILE)).read_text())
    model = open_clip.create_model(name)
    tokenizer = open_clip.get_tokenizer(name)
    return model.eval(), tokenizer, config


def import_open_clip(reference: str, out: str | Path) -> Path:
    """Convert an open_clip model (``hf-hub:`` id, plain hub id, or local directory) into a lexray directory.

    Raises:
        lexray.models.ModelNotAvailableError: a hub id while offline.
        CheckpointError: a directory that is not an open_clip model, or an unsupported preprocessing.
    """
    from safetensors.torch import save_file

    model, tokenizer, config = _open(reference)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config = copy.deepcopy(config)
    text_cfg = config["model_cfg"].get("text_cfg", {})
    if "hf_model_name" in text_cfg:
        model.text.transformer.config.save_pretrained(out / HF_TEXT_DIR)
        text_cfg["hf_model_name"] = HF_TEXT_DIR  # resolved against the directory when loaded
        text_cfg["hf_tokenizer_name"] = HF_TEXT_DIR
    if hasattr(tokenizer, "save_pretrained"):
        tokenizer.save_pretrained(out)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, out / WEIGHTS_FILE)
    (out / CONFIG_FILE).write_text(json.dumps(config, indent=1))
    _preprocess_from(config, model.visual.image_size).save(out)
    with torch.no_grad():
        embed_dim = int(model.encode_text(tokenizer(["x"])).shape[1])
    meta = {"format": FORMAT, "format_version": 1, "source": str(reference), "embed_dim": embed_dim}
    (out / "lexray_clip.json").write_text(json.dumps(meta, indent=1))
    return out
