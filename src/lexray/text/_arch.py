"""Per-architecture facts, as data: how each ``config.model_type`` becomes a bidirectional encoder.

Adding a family is one row here; no code elsewhere branches on model names.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ArchSpec:
    """How one transformers architecture is loaded, made bidirectional and LoRA-tuned."""

    kind: str  # "decoder" (causal LLM turned bidirectional) or "encoder" (BERT-like, already bidirectional)
    attention_attr: (
        str | None
    )  # attribute name of each layer's self-attention module ("self_attn"); None: none to patch
    lora_targets: tuple[str, ...]  # module names LoRA wraps by default (the published q/k/v/o)
    append_eos: bool  # append the EOS token after the text (what last-token pooling reads)
    mask_token_text: (
        str | None
    )  # MNTP replacement token when the tokenizer has no mask token (llm2vec's choice)
    layers_pattern: str = (
        "layers"  # name of the ModuleList of transformer blocks (for LoRA on the last N layers)
    )
    final_norm_attr: str | None = "norm"  # the backbone's norm after the last block; None: it has none


_DECODER_QKVO = ("q_proj", "k_proj", "v_proj", "o_proj")

ARCHITECTURES: dict[str, ArchSpec] = {
    "llama": ArchSpec("decoder", "self_attn", _DECODER_QKVO, True, "_"),
    "mistral": ArchSpec("decoder", "self_attn", _DECODER_QKVO, True, "_"),
    "qwen2": ArchSpec("decoder", "self_attn", _DECODER_QKVO, True, "_"),
    "qwen3": ArchSpec("decoder", "self_attn", _DECODER_QKVO, True, "_"),
    "gemma": ArchSpec("decoder", "self_attn", _DECODER_QKVO, True, "_"),
    "gemma2": ArchSpec("decoder", "self_attn", _DECODER_QKVO, True, "_"),
    "gemma3_text": ArchSpec("decoder", "self_attn", _DECODER_QKVO, True, "_"),
    "bert": ArchSpec("encoder", None, ("query", "key", "value", "dense"), False, None, "layer", None),
    "roberta": ArchSpec("encoder", None, ("query", "key", "value", "dense"), False, None, "layer", None),
    "modernbert": ArchSpec("encoder", None, ("Wqkv", "Wo"), False, None, "layers", "final_norm"),
}


def arch_spec(model_type: str) -> ArchSpec:
    """The :class:`ArchSpec` of a transformers ``config.model_type``.

    Raises:
        ValueError: the architecture is not in :data:`ARCHITECTURES` (the message lists the supported ones).
    """
    try:
        return ARCHITECTURES[model_type]
    except KeyError:
        raise ValueError(
            f"model_type {model_type!r} is not supported by lexray.text; supported: "
            f"{', '.join(sorted(ARCHITECTURES))} (add a row to lexray.text._arch.ARCHITECTURES)"
        ) from None


def truncate_config(model_config: Any, num_layers: int, directory: Path) -> None:
    """Keep the first ``num_layers`` blocks of a transformers config (0 = all) before loading the weights.

    Raises:
        ValueError: more layers asked for than the model has, or a negative number.
    """
    total = model_config.num_hidden_layers
    if num_layers < 0 or num_layers > total:
        raise ValueError(
            f"num_layers={num_layers}: {directory} has {total} layers (use 1..{total}, or 0 for all)"
        )
    if num_layers in (0, total):
        return
    model_config.num_hidden_layers = num_layers
    # Per-layer lists (attention kinds of hybrid-attention models) must match the new depth.
    if isinstance(getattr(model_config, "layer_types", None), list):
        model_config.layer_types = model_config.layer_types[:num_layers]
