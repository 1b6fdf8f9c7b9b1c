"""Tiny in-process towers for the CLIP tests: a 2-layer random Llama report tower with a word tokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest

from lexray.data.manifest import write_manifest
from lexray.data.phantom import PhantomFindings, render_phantom, save_phantom_png
from lexray.data.study import Image, Study

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


REPORTS = [
    ("No acute cardiopulmonary process.", PhantomFindings()),
    ("Lungs are clear. Heart size is normal.", PhantomFindings()),
    ("Large left pleural effusion.", PhantomFindings(effusion=(("left", 2),))),
    ("Small right pleural effusion.", PhantomFindings(effusion=(("right", 1),))),
    ("Mild cardiomegaly. Lungs are clear.", PhantomFindings(cardiomegaly=True)),
    ("Right upper lobe opacity.", PhantomFindings(parenchymal=frozenset({("opacity", "right", "upper")}))),
    (
        "Left lower lobe atelectasis.",
        PhantomFindings(parenchymal=frozenset({("atelectasis", "left", "lower")})),
    ),
    ("Pacemaker in place. No acute process.", PhantomFindings(devices=frozenset({"pacemaker"}))),
]


@pytest.fixture(scope="session")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 train + 8 val studies with phantom PNGs; the first two train reports are identical twins."""
    root = tmp_path_factory.mktemp("phantom-set")
    studies = []
    for i in range(32):
        text, findings = REPORTS[i % len(REPORTS)]
        sid = f"s{i:02d}"
        save_phantom_png(root / "images" / f"{sid}.png", render_phantom(findings, sid, 48), sid, findings)
        split = "train" if i < 24 else "val"
        studies.append(
            Study(
                sid,
                sid,
                "phantom",
                split,
                findings=text,
                images=(Image(f"images/{sid}.png", "PA"),),
                extra={"synthetic": "true", "phantom_findings": findings.key()},
            )
        )
    studies.append(
        Study("nofile", "p", "phantom", "train", findings="x", images=(Image("images/missing.png"),))
    )
    write_manifest(studies, root / "manifest.parquet")
    return root / "manifest.parquet"
