"""``TextEncoder``: a decoder LLM made bidirectional (or a BERT-like encoder) with pooling, LoRA and saves.

Bidirectionality with transformers >= 5: every self-attention module gets ``is_causal = False`` and the
backbone receives a prepared 4-D boolean mask ``(B, 1, T, T)`` (True = may attend), which transformers
uses as-is. Position ids come from the padding mask, so left and right padding embed identically.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn
from tqdm.auto import tqdm

from lexray import models
from lexray.config import load_config
from lexray.text._arch import ArchSpec, arch_spec, truncate_config
from lexray.text._batches import plan_batches
from lexray.text._saved import (
    ADAPTER_DIR,
    MODEL_DIR,
    POOLING_FILE,
    fingerprint,
    is_encoder_dir,
    plain_overrides,
    read_saved,
    save_encoder,
    tensor_digest,
    weights_id,
)
from lexray.text._tokens import collate, encode_ids
from lexray.text.config import LoraSettings, TextEncoderConfig
from lexray.text.pooling import build_pooling

log = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def bidirectional_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """4-D boolean mask (B, 1, T, T): every query may attend to every non-padding key.

    Padding queries also see the real keys (never an all-False row, which would give NaNs in SDPA);
    their outputs are excluded later by the pool mask.
    """
    keys = attention_mask.bool()[:, None, None, :]  # (B, 1, 1, T)
    return keys.expand(-1, 1, attention_mask.shape[1], -1)  # (B, 1, T, T)


def _position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions counted over real tokens only (B, T), so left padding does not shift them."""
    return (attention_mask.long().cumsum(dim=1) - 1).clamp_min(0)


class TextEncoder(nn.Module):
    """Report encoder: backbone -> token states -> pooling over report tokens -> (B, D) features.

    Build with :meth:`from_pretrained`; embed with :meth:`encode`; train through :meth:`forward`.
    """

    def __init__(
        self,
        backbone: nn.Module,
        tokenizer: Any,
        config: TextEncoderConfig,
        spec: ArchSpec,
        base_weights_id: str,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.config = config
        self.spec = spec
        self._base_weights_id = base_weights_id  # identity of the weights the backbone was loaded from
        self._full_tuned = False  # set by unfreeze_backbone: backbone weights may differ from the files
        self._merged = False  # set by merge_lora: adapters were folded into the backbone weights
        self.dim: int = int(self._model_config.hidden_size)
        if config.pooling == "cls" and (spec.kind != "encoder" or config.padding_side != "right"):
            raise ValueError(
                "pooling 'cls' reads position 0: it needs a BERT-like encoder padded on the right"
            )
        self.pooling = build_pooling(config.pooling, self.dim, config.latent)
        if config.bidirectional and spec.attention_attr is not None:
            self._remove_causal_mask()
        # The base LLM's norm before its LM head, when the encoder pools without it (MNTP needs it).
        # Held in a tuple so it is not a submodule (forward and the trainable parameters never see it);
        # a merged save puts it back into model/ (_final_norm_restored).
        self._dropped_norm: tuple[nn.Module, ...] = ()
        if not config.final_norm and spec.final_norm_attr is not None:
            # The norm's gains were trained on the last layer of the full model; a truncated model is
            # better pooled from its raw states. Replaced, not deleted, so saved weights still load.
            self._dropped_norm = (getattr(self.backbone, spec.final_norm_attr),)
            setattr(self.backbone, spec.final_norm_attr, nn.Identity())

    # ------------------------------------------------------------------------------------------
    # construction

    @classmethod
    def from_pretrained(cls, ref: str | Path, **overrides: Any) -> TextEncoder:
        """Load a saved lexray encoder directory, or wrap a base model (alias, directory or hub id).

        Args:
            ref: a directory written by :meth:`save_pretrained`, or a base-model reference.
            **overrides: :class:`TextEncoderConfig` fields (e.g. ``pooling="last"``, ``instruction=...``,
                ``lora={"enabled": True}``). For a saved encoder only run-time fields
                (``max_length``, ``padding_side``, ``dtype``) may change.

        Raises:
            lexray.models.ModelNotAvailableError: the base model is not on this machine.
            ValueError: an unsupported architecture or an override that would change a saved encoder.
        """
        if is_encoder_dir(ref):
            return cls._load_saved(Path(ref), overrides)
        from lexray.text.published import PUBLISHED_TEXT_MODELS, load_published

        if str(ref) in PUBLISHED_TEXT_MODELS:  # a published model's row: its own tokens, pooling, padding
            return load_published(str(ref), **overrides)
        config = load_config(TextEncoderConfig, base={"model": str(ref), **plain_overrides(overrides)})
        return cls.from_config(config)

    @classmethod
    def from_config(
        cls, config: TextEncoderConfig, model_dir: Path | None = None, tokenizer_dir: Path | None = None
    ) -> TextEncoder:
        """Build from a :class:`TextEncoderConfig` (base weights from ``config.model`` or ``model_dir``)."""
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        directory = model_dir if model_dir is not None else models.local_path(config.model)
        model_config = AutoConfig.from_pretrained(directory)
        spec = arch_spec(model_config.model_type)
        truncate_config(model_config, config.num_layers, directory)
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir or directory)
        # With fewer layers in the config, only the kept blocks' weights are read from the files.
        backbone = AutoModel.from_pretrained(directory, config=model_config, dtype=_DTYPES[config.dtype])
        encoder = cls(backbone, tokenizer, config, spec, weights_id(Path(directory)))
        if config.lora.enabled:
            encoder.apply_lora(config.lora)
        return encoder

    @classmethod
    def _load_saved(cls, directory: Path, overrides: dict[str, Any]) -> TextEncoder:
        meta, saved = read_saved(directory, overrides)
        config = load_config(TextEncoderConfig, base=saved)
        weights = meta["weights"]
        if weights == "merged":
            encoder = cls.from_config(config, model_dir=directory / MODEL_DIR, tokenizer_dir=directory)
            # The merged files carry the trained identity, so the fingerprint survives the round trip.
            encoder._base_weights_id = meta["weights_id"]
        else:
            encoder = cls.from_config(config, tokenizer_dir=directory)
            if weights == "adapter":
                from peft import PeftModel

                encoder.backbone = PeftModel.from_pretrained(encoder.backbone, directory / ADAPTER_DIR)
                encoder.config = dataclasses.replace(encoder.config, lora=LoraSettings(**meta["lora"]))
        if (directory / POOLING_FILE).is_file():
            encoder.pooling.load_state_dict(load_file(directory / POOLING_FILE))
        encoder.eval()
        return encoder

    # ------------------------------------------------------------------------------------------
    # architecture surgery

    @property
    def _model_config(self) -> Any:
        return self.backbone.config

    def _remove_causal_mask(self) -> None:
        """Turn every self-attention module of a decoder bidirectional (the table names the attribute)."""
        patched = 0
        for module in self.backbone.modules():
            attn = getattr(module, self.spec.attention_attr, None)
            if isinstance(attn, nn.Module) and hasattr(attn, "is_causal"):
                attn.is_causal = False
                patched += 1
        if patched != self._model_config.num_hidden_layers:
            raise RuntimeError(
                f"made {patched} attention modules bidirectional, expected {self._model_config.num_hidden_layers}"
            )
        # Also tells transformers' own mask builder, for code paths that build masks themselves.
        self._model_config.is_causal = False

    def apply_lora(self, settings: LoraSettings) -> None:
        """Wrap the backbone with fresh LoRA adapters (peft) and freeze every other backbone weight."""
        from peft import LoraConfig, get_peft_model

        targets = list(settings.target_modules or self.spec.lora_targets)
        n_layers = self._model_config.num_hidden_layers
        layers = list(range(n_layers - settings.last_n_layers, n_layers)) if settings.last_n_layers else None
        lora_config = LoraConfig(
            r=settings.r,
            lora_alpha=settings.alpha,
            lora_dropout=settings.dropout,
            target_modules=targets,
            layers_to_transform=layers,
            layers_pattern=self.spec.layers_pattern if layers else None,
            bias="none",
        )
        self.backbone = get_peft_model(self.backbone, lora_config)
        self.config = dataclasses.replace(self.config, lora=dataclasses.replace(settings, enabled=True))

    def merge_lora(self) -> None:
        """Fold the LoRA adapters into the backbone weights (e.g. after MNTP, before a new stage)."""
        if self.has_lora:
            identity = self._weights_identity()
            self.backbone = self.backbone.merge_and_unload()
            self.config = dataclasses.replace(
                self.config, lora=dataclasses.replace(self.config.lora, enabled=False)
            )
            self._base_weights_id = identity
            self._full_tuned = False
            self._merged = True

    def scale_lora(self, factor: float) -> None:
        """Keep ``factor`` of the learned LoRA update: W = W0 + factor * (alpha / r) * B @ A.

        Weight-space interpolation between the frozen backbone and the fine-tuned one (WiSE-FT,
        Wortsman et al. 2022): between 0 and 1 it trades some of the fine-tuning gain for the base
        model's robustness. Scaling ``B`` is exact for every adapter and survives both adapter and merged
        saves.

        Raises:
            ValueError: the encoder has no LoRA adapters.
        """
        if not self.has_lora:
            raise ValueError("scale_lora needs LoRA adapters; this encoder has none (full tuning or merged)")
        with torch.no_grad():
            for name, param in self.backbone.named_parameters():
                if "lora_B" in name:
                    param.mul_(factor)

    @property
    def has_lora(self) -> bool:
        """True when the backbone carries peft adapters."""
        return hasattr(self.backbone, "peft_config")

    def freeze_backbone(self) -> None:
        """Freeze all backbone weights except LoRA adapters; pooling stays trainable."""
        for name, param in self.backbone.named_parameters():
            param.requires_grad = "lora_" in name

    def unfreeze_backbone(self) -> None:
        """Make every backbone weight trainable (full fine-tuning)."""
        self._full_tuned = True
        for param in self.backbone.parameters():
            param.requires_grad = True

    def dropped_final_norm(self) -> nn.Module | None:
        """The base LLM's final norm when ``final_norm`` is off (its LM head reads normed states), else None."""
        return self._dropped_norm[0] if self._dropped_norm else None

    def base_model(self) -> nn.Module:
        """The transformers model under any peft wrapper (for the input embeddings, config...)."""
        return self.backbone.get_base_model() if self.has_lora else self.backbone

    # ------------------------------------------------------------------------------------------
    # tokenisation

    @property
    def _append_eos(self) -> bool:
        """Whether an EOS follows every text: the config's choice, else the architecture table's."""
        return self.spec.append_eos if self.config.append_eos is None else self.config.append_eos

    def _encode_ids(self, texts: Sequence[str]) -> list[tuple[list[int], list[bool]]]:
        """Token ids and pool flags per text: instruction and special tokens are never pooled."""
        return encode_ids(self.tokenizer, self.config, self._append_eos, texts)

    def _collate(self, items: Sequence[tuple[list[int], list[bool]]]) -> dict[str, torch.Tensor]:
        return collate(self.tokenizer, self.config.padding_side, items)

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Tokenise a batch: ``input_ids``, ``attention_mask`` (B, T) and ``pool_mask`` (B, T, bool).

        The instruction is prefixed to every text; ``pool_mask`` is True only on report tokens (not the
        instruction, special tokens other than the appended EOS, or padding).
        """
        if isinstance(texts, str):
            raise TypeError("tokenize expects a list of texts, got one string")
        return self._collate(self._encode_ids(texts))

    # ------------------------------------------------------------------------------------------
    # forward / encode

    @property
    def device(self) -> torch.device:
        """Device of the backbone weights."""
        return next(self.backbone.parameters()).device

    def token_states(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Last-layer token states (B, T, D) for a tokenised batch (bidirectional unless configured off)."""
        input_ids = batch["input_ids"].to(self.device)
        attention = batch["attention_mask"].to(self.device)
        if self.config.position_ids == "mask":
            positions = _position_ids(attention)
        else:  # 0..T-1 over the padded row; only the states of padding positions differ
            positions = torch.arange(attention.shape[1], device=attention.device).expand_as(attention)
        kwargs: dict[str, Any] = {"position_ids": positions}
        if self.config.bidirectional and self.spec.kind == "decoder":
            kwargs["attention_mask"] = bidirectional_mask(attention)
        else:
            kwargs["attention_mask"] = attention
        if self.spec.kind == "decoder":
            kwargs["use_cache"] = False
        out = self.backbone(input_ids=input_ids, **kwargs)
        return out.last_hidden_state  # (B, T, D)

    def forward(self, batch: dict[str, torch.Tensor], pool: bool = True) -> torch.Tensor:
        """Pooled, un-normalised features (B, D) with grad; token states (B, T, D) when ``pool`` is False."""
        hidden = self.token_states(batch)  # (B, T, D)
        if not pool:
            return hidden
        return self.pooling(hidden.float(), batch["pool_mask"].to(hidden.device))

    @torch.no_grad()
    def encode(
        self,
        texts: Sequence[str],
        batch_size: int = 32,
        normalize: bool = True,
        show_progress: bool = False,
    ) -> np.ndarray:
        """Embed texts -> float32 array (n, D), row i for ``texts[i]``.

        Batches hold texts of similar token length, cut where padding costs least
        (:func:`plan_batches`, at most ``batch_size`` texts each); the original order is restored.
        Rows are L2-normalised unless ``normalize`` is False.
        """
        if isinstance(texts, str):
            raise TypeError("encode expects a list of texts, got one string")
        was_training = self.training
        self.eval()
        items = self._encode_ids(list(texts))
        batches = plan_batches([len(ids) for ids, _ in items], batch_size)
        out = np.zeros((len(items), self.dim), dtype=np.float32)
        for idx in tqdm(batches, desc="encode", disable=not show_progress, unit="batch"):
            feats = self.forward(self._collate([items[i] for i in idx]))  # (b, D)
            if normalize:
                feats = torch.nn.functional.normalize(feats, dim=-1)
            out[idx] = feats.float().cpu().numpy()
        self.train(was_training)
        return out

    # ------------------------------------------------------------------------------------------
    # identity and saving

    def _weights_identity(self) -> str:
        """Identity of the backbone weights: the loaded files, plus LoRA / fully tuned weights if any."""
        if not self.has_lora and not self._full_tuned:
            return self._base_weights_id
        tensors = {
            name: param
            for name, param in self.backbone.named_parameters()
            if "lora_" in name or self._full_tuned
        }
        return hashlib.sha256((self._base_weights_id + tensor_digest(tensors)).encode()).hexdigest()

    @property
    def fingerprint(self) -> str:
        """Stable hash of weights identity + pooling + instruction + max_length + bidirectionality.

        Equal for the same encoder loaded twice; different after any trained weight changes. Used as
        an embedding-cache key.
        """
        layers = int(self._model_config.num_hidden_layers)
        return fingerprint(self.config, self._weights_identity(), self.pooling.state_dict(), layers)

    def save_pretrained(self, directory: str | Path, merge: bool | None = None) -> Path:
        """Write a self-describing encoder directory (safetensors only).

        Contents: ``lexray_text.json`` (format, how weights are stored), ``encoder.yaml`` (resolved
        config), tokenizer files, ``pooling.safetensors`` (when pooling has weights) and either
        ``adapter/`` (LoRA over the base model named in the config) or ``model/`` (full weights).

        Args:
            directory: output directory (created).
            merge: store full merged weights instead of the adapter; default: adapter when the encoder
                has LoRA and its backbone was never merged or fully tuned, else full weights.
        """
        if merge is None:
            merge = self._merged or self._full_tuned
        return save_encoder(self, directory, merge, self._weights_identity())
