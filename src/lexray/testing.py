"""Tiny, randomly initialised models for tests and smoke checks (no downloads).

A 2-layer Llama or BERT with a word-level tokenizer over a small radiology vocabulary, saved as an
ordinary transformers directory, so every code path that loads a model by reference can be exercised
in seconds. Not for anything that claims quality.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

WORDS: tuple[str, ...] = tuple(
    (
        "lungs are clear no focal consolidation pleural effusion pneumothorax heart size is normal mild "
        "cardiomegaly left right lower upper lobe opacity atelectasis stable small large moderate there the of "
        "with without and in impression findings acute cardiopulmonary process report chest represent "
        "this for retrieval : . , ; sternotomy wires nodule edema mass pacemaker"
    ).split()
)

# Small enough that a test builds and runs either model in well under a second; one size for both, so
# a test can swap the Llama text tower for the BERT one and keep the widths it expects.
TINY_SIZE: dict[str, int] = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
}


def tiny_tokenizer(kind: str = "llama", words: Sequence[str] = WORDS) -> Any:
    """A word-level fast tokenizer: ``kind`` "llama" (BOS prefix, no mask token) or "bert" ([CLS] .. [SEP])."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "<s>", "</s>"]
    vocab = {w: i for i, w in enumerate([*specials, *dict.fromkeys(words)])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    if kind == "bert":
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
        )
        return PreTrainedTokenizerFast(
            tokenizer_object=tok,
            unk_token="[UNK]",
            pad_token="[PAD]",
            cls_token="[CLS]",
            sep_token="[SEP]",
            mask_token="[MASK]",
        )
    if kind != "llama":
        raise ValueError(f"tiny tokenizer kind {kind!r}: use llama or bert")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", vocab["<s>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", bos_token="<s>", eos_token="</s>"
    )


def build_tiny_llama(
    directory: str | Path,
    tie: bool = True,
    words: Sequence[str] = WORDS,
    tokenizer: Any | None = None,
    max_positions: int = 128,
) -> Path:
    """Save a 2-layer random Llama (hidden 32, GQA 4/2 heads) and its tokenizer into ``directory``.

    Args:
        tokenizer: a real tokenizer to pair with the random weights (e.g. for its chat template);
            default a word-level tokenizer over ``words``.
        max_positions: longest sequence the model accepts.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = tokenizer if tokenizer is not None else tiny_tokenizer("llama", words)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        **TINY_SIZE,
        num_key_value_heads=2,
        max_position_embeddings=max_positions,
        tie_word_embeddings=tie,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return _save_random(LlamaForCausalLM, config, tokenizer, directory)


def build_tiny_bert(directory: str | Path, words: Sequence[str] = WORDS) -> Path:
    """Save a 2-layer random BERT (hidden 32) and its tokenizer into ``directory``."""
    from transformers import BertConfig, BertModel

    tokenizer = tiny_tokenizer("bert", words)
    config = BertConfig(vocab_size=len(tokenizer), **TINY_SIZE, max_position_embeddings=128)
    return _save_random(BertModel, config, tokenizer, directory)


def _save_random(model_class: Any, config: Any, tokenizer: Any, directory: str | Path) -> Path:
    """Initialise ``model_class(config)`` from seed 0 and save it with its tokenizer into ``directory``."""
    import torch

    torch.manual_seed(0)
    model_class(config).save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    return Path(directory)
