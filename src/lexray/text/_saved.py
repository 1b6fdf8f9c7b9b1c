"""The saved text-encoder directory: its files, its format check, and the identities that key caches.

A directory written by :meth:`lexray.text.TextEncoder.save_pretrained` holds ``lexray_text.json`` (format,
how the weights are stored, identities), ``encoder.yaml`` (the resolved config), the tokenizer files,
``pooling.safetensors`` when the pooling has weights, and ``adapter/`` or ``model/``.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import yaml
from safetensors.torch import save_file
from torch import nn

from lexray.config import to_dict
from lexray.text.config import TextEncoderConfig

if TYPE_CHECKING:
    from lexray.text.encoder import TextEncoder

MARKER_FILE = "lexray_text.json"  # marks a saved lexray text-encoder directory
ENCODER_CONFIG_FILE = "encoder.yaml"  # the resolved TextEncoderConfig of a saved encoder
POOLING_FILE = "pooling.safetensors"
ADAPTER_DIR = "adapter"
MODEL_DIR = "model"
FORMAT_VERSION = 1
RUNTIME_FIELDS = ("max_length", "padding_side", "dtype")  # what a load may change on a saved encoder

# Settings added after the first saves: they enter the fingerprint only when set, so older encoders keep theirs.
_LATER_FIELDS = ("separator", "marker_instructions", "append_eos", "position_ids", "pool_special_tokens")


def is_encoder_dir(path: str | Path) -> bool:
    """True when ``path`` is a directory written by :meth:`TextEncoder.save_pretrained`."""
    return (Path(path) / MARKER_FILE).is_file()


def weights_id(directory: Path) -> str:
    """Cheap, stable identity of the weight files in a model directory (names, sizes, head and tail bytes)."""
    h = hashlib.sha256()
    files = sorted(p for p in directory.iterdir() if p.suffix in (".safetensors", ".bin", ".gguf"))
    for p in files:
        size = p.stat().st_size
        h.update(f"{p.name}:{size}".encode())
        with open(p, "rb") as f:
            h.update(f.read(1 << 20))
            f.seek(max(0, size - (1 << 20)))
            h.update(f.read(1 << 20))
    return h.hexdigest()


def tensor_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 hex of the named tensors' values (as float32, in name order): equal only for equal weights."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu", torch.float32).contiguous()
        h.update(name.encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def plain_overrides(overrides: dict[str, Any]) -> dict[str, Any]:
    """Config overrides as plain data (dataclass values become dicts)."""
    return {k: to_dict(v) for k, v in overrides.items()}


def _latent_ident(config: TextEncoderConfig) -> dict[str, Any]:
    """The latent pooler's settings for the fingerprint; ``residual`` only when off (older saves lack it)."""
    latent = to_dict(config.latent)
    if latent.get("residual", True):
        latent.pop("residual", None)
    return latent


def fingerprint(
    config: TextEncoderConfig, weights_identity: str, pooling_state: dict[str, torch.Tensor], layers: int
) -> str:
    """Stable 16-hex hash of the weights, pooling, instruction, length, attention and depth of an encoder."""
    ident = {
        "weights": weights_identity,
        "pooling_weights": tensor_digest(pooling_state),
        "pooling": config.pooling,
        "latent": _latent_ident(config) if config.pooling == "latent" else None,
        "instruction": config.instruction,
        "max_length": config.max_length,
        "bidirectional": config.bidirectional,
        "dtype": config.dtype,
        "layers": layers,
        "final_norm": config.final_norm,
    }
    defaults = TextEncoderConfig()
    for name in _LATER_FIELDS:
        if getattr(config, name) != getattr(defaults, name):
            ident[name] = getattr(config, name)
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def read_saved(directory: Path, overrides: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The marker and the saved config (with the run-time ``overrides`` applied) of an encoder directory.

    Raises:
        ValueError: an unknown format version, or an override of a field a trained encoder fixes.
    """
    meta = json.loads((directory / MARKER_FILE).read_text())
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{directory}: unsupported encoder format {meta.get('format_version')!r}")
    saved = yaml.safe_load((directory / ENCODER_CONFIG_FILE).read_text())
    bad = sorted(set(overrides) - set(RUNTIME_FIELDS))
    if bad:
        raise ValueError(
            f"{directory} is a trained encoder; {bad} cannot change (only {sorted(RUNTIME_FIELDS)})"
        )
    saved.update(plain_overrides(overrides))
    # Adapters are restored from the saved files, never re-initialised.
    saved["lora"] = {**saved.get("lora", {}), "enabled": False}
    return meta, saved


def _write_files(
    out: Path,
    config: TextEncoderConfig,
    tokenizer: Any,
    pooling_state: dict[str, torch.Tensor],
    meta: dict[str, Any],
) -> None:
    """Write the files beside the weights: tokenizer, pooling weights, ``encoder.yaml`` and the marker."""
    tokenizer.save_pretrained(out)
    if pooling_state:
        save_file({k: v.detach().cpu().contiguous() for k, v in pooling_state.items()}, out / POOLING_FILE)
    (out / ENCODER_CONFIG_FILE).write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
    marker = {"format": "lexray-text-encoder", "format_version": FORMAT_VERSION, **meta}
    (out / MARKER_FILE).write_text(json.dumps(marker, indent=1))


@contextlib.contextmanager
def _final_norm_restored(encoder: TextEncoder, backbone: nn.Module) -> Iterator[None]:
    """Put a dropped final norm back into ``backbone`` while it is saved.

    The saved ``model/`` is then a complete transformers directory: it loads without missing keys,
    and as the base of a new run it has the trained norm gains (for MNTP or ``final_norm: true``).
    """
    dropped = encoder.dropped_final_norm()
    if dropped is None:
        yield
        return
    attr = encoder.spec.final_norm_attr
    kept = getattr(backbone, attr)
    setattr(backbone, attr, dropped)
    try:
        yield
    finally:
        setattr(backbone, attr, kept)


def save_encoder(encoder: TextEncoder, directory: str | Path, merge: bool, weights_identity: str) -> Path:
    """Write ``encoder`` as a self-describing directory (see :meth:`TextEncoder.save_pretrained`).

    Args:
        encoder: the encoder.
        directory: output directory (created).
        merge: store full (merged) weights in ``model/`` rather than the LoRA adapter.
        weights_identity: the identity of the encoder's current weights (recorded as ``weights_id``).
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    lora_meta = None
    if merge:
        backbone = (
            copy.deepcopy(encoder.backbone).merge_and_unload() if encoder.has_lora else encoder.backbone
        )
        with _final_norm_restored(encoder, backbone):
            backbone.save_pretrained(out / MODEL_DIR, safe_serialization=True)
        # model/ is then a complete transformers directory (usable as a base model of a new run).
        encoder.tokenizer.save_pretrained(out / MODEL_DIR)
        weights = "merged"
    elif encoder.has_lora:
        encoder.backbone.save_pretrained(out / ADAPTER_DIR, safe_serialization=True)
        weights = "adapter"
        lora_meta = to_dict(encoder.config.lora)
    else:
        weights = "base"
    meta = {
        "weights": weights,
        "base_model": encoder.config.model,
        "model_type": encoder.backbone.config.model_type,
        "dim": encoder.dim,
        "lora": lora_meta,
        "weights_id": weights_identity,
        "fingerprint": encoder.fingerprint,
    }
    config = dataclasses.replace(encoder.config, lora=dataclasses.replace(encoder.config.lora, enabled=False))
    _write_files(out, config, encoder.tokenizer, encoder.pooling.state_dict(), meta)
    return out
