"""Export a lexray text encoder as a sentence-transformers directory.

The backbone is written with merged weights and ``is_causal: false`` in its config (transformers >= 5.2
then builds bidirectional masks itself); pooling becomes sentence-transformers' ``Pooling`` with
``include_prompt=False`` and the instruction its default prompt; the EOS token lexray appends is added
by the tokenizer (``add_eos_token``). Latent-attention pooling has no sentence-transformers equivalent
and is refused.
"""

from __future__ import annotations

import json
from pathlib import Path

from lexray.text.encoder import TextEncoder

_ST_POOLING = {"mean": "mean", "last": "lasttoken"}
PROMPT_NAME = "document"


def _append_eos(tokenizer: object) -> None:
    """Make the tokenizer append EOS itself, as :meth:`TextEncoder.tokenize` does."""
    if not hasattr(tokenizer, "add_eos_token"):
        raise ValueError("export-st needs a tokenizer with an add_eos_token switch (a tokenizers-backed one)")
    ids = tokenizer("x")["input_ids"]
    has_bos = tokenizer.bos_token_id is not None and bool(ids) and ids[0] == tokenizer.bos_token_id
    # Setting the switches rebuilds the post-processor: keep BOS exactly as lexray's tokenisation has it.
    tokenizer.add_bos_token = has_bos
    tokenizer.add_eos_token = True


def export_sentence_transformers(model_dir: str | Path, out: str | Path) -> Path:
    """Write ``out`` so that ``SentenceTransformer(out)`` embeds like ``TextEncoder.from_pretrained(model_dir)``.

    Raises:
        ValueError: latent-attention pooling (no sentence-transformers module for it).
    """
    encoder = TextEncoder.from_pretrained(model_dir)
    cfg = encoder.config
    if cfg.pooling not in _ST_POOLING:
        raise ValueError(
            f"{model_dir}: {cfg.pooling!r} pooling has no sentence-transformers module; export supports "
            f"{', '.join(_ST_POOLING)} pooling (use TextEncoder.from_pretrained for latent pooling)"
        )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    backbone = encoder.base_model() if not encoder.has_lora else encoder.backbone.merge_and_unload()
    backbone.config.is_causal = not cfg.bidirectional
    backbone.save_pretrained(out, safe_serialization=True)
    tokenizer = encoder.tokenizer
    if encoder.spec.append_eos:
        _append_eos(tokenizer)
    tokenizer.save_pretrained(out)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    (out / "modules.json").write_text(json.dumps(modules, indent=1))
    (out / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": cfg.max_length}, indent=1))
    (out / "1_Pooling").mkdir(exist_ok=True)
    pooling = {
        "embedding_dimension": encoder.dim,
        "pooling_mode": _ST_POOLING[cfg.pooling],
        "include_prompt": False,
    }
    (out / "1_Pooling" / "config.json").write_text(json.dumps(pooling, indent=1))
    (out / "2_Normalize").mkdir(exist_ok=True)
    st_config = {
        "prompts": {PROMPT_NAME: cfg.instruction} if cfg.instruction else {},
        "default_prompt_name": PROMPT_NAME if cfg.instruction else None,
        "similarity_fn_name": "cosine",
    }
    (out / "config_sentence_transformers.json").write_text(json.dumps(st_config, indent=1))
    return out
