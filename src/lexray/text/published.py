"""The published CXR text encoder (LLM2Vec4CXR) and the seed's text baselines, as lexray encoders.

``lukeingawesome/llm2vec4cxr`` is a fully fine-tuned Llama-3.2-1B plus a latent-attention pooler in
one ``model.safetensors`` (keys ``model.<LlamaModel keys>`` and ``latent_attn.*``). Its published
loader needs transformers <= 4.44, remote code, and silently keeps random latents when their tensors
fail to load. :func:`import_llm2vec4cxr` instead reads the files, checks every tensor the forward needs
(failing with the tensor's name), and writes an ordinary lexray text-encoder directory whose
configuration reproduces the published forward: no causal mask, left padding with pad = EOS, BOS and
no EOS, at most 512 tokens, the ``!@#$%^&*()`` separator and its last-n-token pooling.

What differs between the published models is data (:data:`PUBLISHED_TEXT_MODELS`), not branches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lexray.text.weight_files import CheckpointError, load_matching, read_state_dict, source_dir

SEPARATOR = "!@#$%^&*()"  # llm2vec's instruction separator
LLM2VEC4CXR_HUB_ID = "lukeingawesome/llm2vec4cxr"
LLAMA_LICENSE = "MIT (weights) + Llama 3.2 Community License (Llama-derived)"
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class PublishedTextModel:
    """How one published text model becomes a lexray ``TextEncoderConfig`` (one row per model)."""

    name: str  # the name users type (`lexray models import NAME`, `lexray encode --model NAME`)
    hub_id: str  # Hugging Face hub id of the weights
    license: str  # licence of the weights
    pooling: str  # lexray pooling kind of the model's own convention
    padding_side: str  # padding side the model was run with
    max_length: int  # tokens per text, special tokens included
    separator: str = ""  # llm2vec separator rule ("" = lexray's instruction-offset rule)
    append_eos: bool | None = None  # None = the architecture table's choice
    position_ids: str = "mask"  # "arange" = transformers' default positions over the padded row
    instruction: str = ""  # prefix of every text (documents get none in the seed's scripts)
    bidirectional: bool = True  # remove a decoder's causal mask
    pad_is_eos: bool = False  # the tokenizer pads with its EOS token
    pool_special_tokens: bool = False  # mean over every attended token, [CLS] and [SEP] included
    latent: dict[str, Any] = field(default_factory=dict)  # LatentPoolingConfig fields when pooling is latent
    layout: str = "transformers"  # "llm2vec": model.* + latent_attn.* in one file, read by the importer


PUBLISHED_TEXT_MODELS: dict[str, PublishedTextModel] = {
    m.name: m
    for m in (
        PublishedTextModel(
            name="llm2vec4cxr",
            hub_id=LLM2VEC4CXR_HUB_ID,
            license=LLAMA_LICENSE,
            pooling="latent",
            padding_side="left",
            max_length=512,
            separator=SEPARATOR,
            append_eos=False,
            position_ids="arange",
            pad_is_eos=True,
            latent={"num_latents": 512, "num_heads": 8, "mlp_ratio": 1, "residual": False},
            layout="llm2vec",
        ),
        # The seed's baselines (eval_retrieval_exp.py): last-token Qwen3, mean Bio_ClinicalBERT, CLS CXR-BERT.
        PublishedTextModel(
            name="qwen3-embedding-0.6b",
            hub_id="Qwen/Qwen3-Embedding-0.6B",
            license="Apache-2.0",
            pooling="last",
            padding_side="left",
            max_length=2048,
            append_eos=False,  # the seed's slow tokenizer adds no EOS; the last text token is pooled
            bidirectional=False,
        ),
        PublishedTextModel(
            name="bio-clinicalbert",
            hub_id="emilyalsentzer/Bio_ClinicalBERT",
            license="MIT",
            pooling="mean",
            padding_side="right",
            max_length=256,
            pool_special_tokens=True,
        ),
        PublishedTextModel(
            name="cxr-bert-specialized",
            hub_id="microsoft/BiomedVLP-CXR-BERT-specialized",
            license="MIT",
            pooling="cls",
            padding_side="right",
            max_length=256,
        ),
    )
}

# How the seed's evaluation scripts format a query for each kind of model (documents stay plain text).
QUERY_FORMATS: dict[str, str] = {
    "qwen3-embedding-0.6b": "Instruct: {instruction}\nQuery:{query}",
    "llm2vec4cxr": "{instruction}; " + SEPARATOR + " {query}",
    "bio-clinicalbert": "{instruction}\n{query}",
    "cxr-bert-specialized": "{instruction}\n{query}",
}


def query_format_for(encoder: Any) -> str:
    """The published scripts' query format for a :class:`lexray.text.TextEncoder` (its table row's).

    The separator rule gets the LLM2Vec format, a published row's hub id its own, anything else the
    BERT-style ``"{instruction}\n{query}"``.
    """
    config = encoder.config
    if config.separator:
        return QUERY_FORMATS["llm2vec4cxr"].replace(SEPARATOR, config.separator)
    for name, row in PUBLISHED_TEXT_MODELS.items():
        if config.model == row.hub_id and name in QUERY_FORMATS:
            return QUERY_FORMATS[name]
    return "{instruction}\n{query}"


def encoder_settings(name: str, pooling: str | None = None, dtype: str = "float32") -> dict[str, Any]:
    """``TextEncoderConfig`` fields of the published model ``name`` (its own pooling unless given).

    Raises:
        CheckpointError: ``name`` is not in :data:`PUBLISHED_TEXT_MODELS`.
    """
    if name not in PUBLISHED_TEXT_MODELS:
        raise CheckpointError(
            f"unknown published text model {name!r}; known: {', '.join(sorted(PUBLISHED_TEXT_MODELS))}"
        )
    row = PUBLISHED_TEXT_MODELS[name]
    settings: dict[str, Any] = {
        "model": row.hub_id,
        "pooling": pooling or row.pooling,
        "instruction": row.instruction,
        "max_length": row.max_length,
        "bidirectional": row.bidirectional,
        "padding_side": row.padding_side,
        "dtype": dtype,
        "separator": row.separator,
        "append_eos": row.append_eos,
        "position_ids": row.position_ids,
        "pool_special_tokens": row.pool_special_tokens,
    }
    if row.latent:
        settings["latent"] = dict(row.latent)
    return settings


def load_published(name: str, **overrides: Any) -> Any:
    """The published text model ``name`` as a :class:`lexray.text.TextEncoder` (hub id or offline copy).

    Args:
        name: a row of :data:`PUBLISHED_TEXT_MODELS`.
        **overrides: ``TextEncoderConfig`` fields that replace the row's (e.g. ``pooling="mean"``).
    """
    from lexray.config import load_config
    from lexray.text._saved import plain_overrides
    from lexray.text.config import TextEncoderConfig
    from lexray.text.encoder import TextEncoder

    # A published model's attention is part of the model: `--causal`-style overrides do not apply.
    overrides.pop("bidirectional", None)
    row = PUBLISHED_TEXT_MODELS.get(name)
    if row is not None and row.layout == "llm2vec":  # not a transformers layout: the importer reads it
        unknown = sorted(set(overrides) - {"pooling", "dtype"})
        if unknown:
            raise CheckpointError(f"{name} takes only pooling and dtype overrides, got {unknown}")
        return load_llm2vec4cxr(
            row.hub_id,
            pooling=overrides.get("pooling") or "latent",
            dtype=overrides.get("dtype") or "bfloat16",
        )
    settings = encoder_settings(name)
    settings.update({k: v for k, v in plain_overrides(overrides).items() if v is not None})
    return TextEncoder.from_config(load_config(TextEncoderConfig, base=settings))


# ---------------------------------------------------------------------------------------------
# LLM2Vec4CXR checkpoint files


def latent_shapes(dim: int, num_latents: int) -> dict[str, tuple[int, ...]]:
    """The published ``latent_attn.*`` tensors (nn.MultiheadAttention + Linear-GELU-Linear) for ``dim``."""
    return {
        "latents": (num_latents, dim),
        "multihead_attn.in_proj_weight": (3 * dim, dim),
        "multihead_attn.in_proj_bias": (3 * dim,),
        "multihead_attn.out_proj.weight": (dim, dim),
        "multihead_attn.out_proj.bias": (dim,),
        "mlp.0.weight": (dim, dim),
        "mlp.0.bias": (dim,),
        "mlp.2.weight": (dim, dim),
        "mlp.2.bias": (dim,),
    }


def check_latent(latent: dict[str, torch.Tensor], dim: int, origin: str) -> None:
    """Fail, naming the tensors, when the latent pooler is incomplete or mis-shaped.

    The published loader only prints such a failure and pools with random latents instead.
    """
    num_latents = int(latent["latents"].shape[0]) if "latents" in latent else 512
    expected = latent_shapes(dim, num_latents)
    missing = [f"latent_attn.{k}" for k in expected if k not in latent]
    wrong = [
        f"latent_attn.{k} {tuple(latent[k].shape)} (expected {v})"
        for k, v in expected.items()
        if k in latent and tuple(latent[k].shape) != v
    ]
    extra = [f"latent_attn.{k}" for k in latent if k not in expected]
    if missing or wrong or extra:
        problems = "; ".join(
            p
            for p in (
                f"missing {', '.join(missing)}" if missing else "",
                f"wrong shape {', '.join(wrong)}" if wrong else "",
                f"unexpected {', '.join(extra)}" if extra else "",
            )
            if p
        )
        raise CheckpointError(
            f"{origin}: the latent-attention pooler is not the published one ({problems}); download "
            "model.safetensors again, or import with --pooling mean (the evaluation scripts' convention, "
            "which needs no latent tensors)"
        )


def _latent_to_lexray(latent: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Published pooler names -> :class:`lexray.text.pooling.LatentAttentionPooling` names."""
    return {k.replace("multihead_attn.", "attn."): v for k, v in latent.items()}


def import_llm2vec4cxr(
    source: str | Path,
    out: str | Path,
    pooling: str = "latent",
    dtype: str = "bfloat16",
) -> Path:
    """Convert LLM2Vec4CXR (hub id or local directory) into a lexray text-encoder directory.

    Args:
        source: ``lukeingawesome/llm2vec4cxr`` or a directory with its files (``config.json``,
            ``model.safetensors``, tokenizer files).
        out: the lexray encoder directory to write.
        pooling: ``latent`` (the model card's) or ``mean`` (the evaluation scripts').
        dtype: ``bfloat16`` (published) or ``float32``.

    Returns:
        ``out``, loadable with ``TextEncoder.from_pretrained`` and ``lexray encode --model``.

    Raises:
        CheckpointError: missing files or tensors, wrong shapes or an unsupported architecture.
        lexray.models.ModelNotAvailableError: a hub id while offline.
    """
    if pooling not in ("latent", "mean"):
        raise CheckpointError(
            f"--pooling {pooling!r}: use latent (the model card's) or mean (the eval scripts')"
        )
    if dtype not in _DTYPES:
        raise CheckpointError(f"--dtype {dtype!r}: use bfloat16 (published) or float32")
    encoder = load_llm2vec4cxr(source, pooling=pooling, dtype=dtype)
    return encoder.save_pretrained(out, merge=True)


def load_llm2vec4cxr(source: str | Path, pooling: str = "latent", dtype: str = "bfloat16") -> Any:
    """LLM2Vec4CXR as a :class:`lexray.text.TextEncoder` (see :func:`import_llm2vec4cxr`)."""
    from transformers import AutoConfig, AutoTokenizer, LlamaModel

    from lexray.config import load_config
    from lexray.text._arch import arch_spec
    from lexray.text._saved import weights_id
    from lexray.text.config import TextEncoderConfig
    from lexray.text.encoder import TextEncoder

    directory = source_dir(source)
    if not (directory / "config.json").is_file():
        raise CheckpointError(f"{directory} has no config.json; it is not a copy of {LLM2VEC4CXR_HUB_ID}")
    # No remote code: the checkpoint is a plain Llama; `auto_map` and `architectures` are ignored.
    try:
        model_config = AutoConfig.from_pretrained(directory, trust_remote_code=False)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{directory}/config.json cannot be read ({exc}); download it again") from exc
    if model_config.model_type != "llama":
        raise CheckpointError(
            f"{directory}/config.json has model_type {model_config.model_type!r}; LLM2Vec4CXR is a llama"
        )
    state = read_state_dict(directory, LLM2VEC4CXR_HUB_ID)
    backbone_state = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
    latent = {k.removeprefix("latent_attn."): v for k, v in state.items() if k.startswith("latent_attn.")}
    other = sorted(k for k in state if not k.startswith(("model.", "latent_attn.", "lm_head.")))
    if not backbone_state or other:
        raise CheckpointError(
            f"{directory}: expected the published layout (model.<Llama keys> and latent_attn.*), found "
            f"{', '.join((other or sorted(state))[:4])}; a bare LlamaModel checkpoint is not LLM2Vec4CXR"
        )
    settings = encoder_settings("llm2vec4cxr", pooling=pooling, dtype=dtype)
    settings["model"] = str(source)
    dim = int(model_config.hidden_size)
    if pooling == "latent":
        check_latent(latent, dim, str(directory))
        settings["latent"]["num_latents"] = int(latent["latents"].shape[0])
    config = load_config(TextEncoderConfig, base=settings)
    backbone = LlamaModel(model_config)
    # RoPE inverse frequencies are recomputed from the config, never stored.
    missing, unexpected = load_matching(backbone, backbone_state, ignored_suffix="rotary_emb.inv_freq")
    if missing or unexpected:
        raise CheckpointError(
            f"{directory}: the Llama weights do not match config.json (missing "
            f"{['model.' + k for k in missing[:4]]}, unexpected {['model.' + k for k in unexpected[:4]]}); "
            "config.json and model.safetensors come from different models: download both again"
        )
    backbone.to(_DTYPES[dtype]).eval()
    row = PUBLISHED_TEXT_MODELS["llm2vec4cxr"]
    try:
        tokenizer = AutoTokenizer.from_pretrained(directory)
    except (OSError, ValueError) as exc:
        raise CheckpointError(
            f"{directory} has no usable tokenizer files (tokenizer.json, tokenizer_config.json): {exc}; "
            f"download the whole repository (`hf download {LLM2VEC4CXR_HUB_ID} --local-dir DIR`)"
        ) from exc
    if row.pad_is_eos:  # pads are pooled when n = 0, so their token matters
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = row.padding_side
    encoder = TextEncoder(backbone, tokenizer, config, arch_spec("llama"), weights_id(directory))
    if pooling == "latent":
        encoder.pooling.load_state_dict({k: v.float() for k, v in _latent_to_lexray(latent).items()})
    encoder.requires_grad_(False)
    encoder.eval()
    return encoder
