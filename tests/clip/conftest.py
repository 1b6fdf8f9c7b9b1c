"""Tiny in-process towers for the CLIP tests: a 2-layer random Llama report tower with a word tokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest

WORDS = (
    "lungs are clear no focal consolidation pleural effusion pneumothorax heart size is normal mild "
    "cardiomegaly left right lower upper lobe opacity atelectasis stable small large moderate there the of "
    "with without and in impression findings acute cardiopulmonary process edema nodule mass pacemaker"
).split()


def build_tiny_llama(directory: Path) -> Path:
    """Save a 2-layer random Llama (hidden 32) and a word-level tokenizer into ``directory``."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "<s>", "</s>"]
    vocab = {w: i for i, w in enumerate(specials + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", vocab["<s>"])]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", bos_token="<s>", eos_token="</s>"
    )
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_text_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer random Llama directory usable as ``text.encoder``."""
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))
