"""Tokenisation of a text encoder: token ids, which of them are pooled, and padded batches.

Two rules decide the pooled tokens: lexray's (every report token after the instruction, found by character
offsets) and llm2vec's separator rule (the last n positions). Both give, per text, ``(ids, pool flags)``;
:func:`collate` pads those into a batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from lexray.text.config import TextEncoderConfig

Item = tuple[list[int], list[bool]]  # token ids and, per token, whether it is pooled


def _instruction_for(config: TextEncoderConfig, text: str) -> str:
    """The instruction of one text: the first marker instruction whose key it contains, else the default."""
    for marker, instruction in config.marker_instructions.items():
        if marker in text:
            return instruction
    return config.instruction


def _separator_ids(
    tokenizer: Any, config: TextEncoderConfig, append_eos: bool, texts: Sequence[str]
) -> list[Item]:
    """llm2vec's rule: pool the last n positions, n = the standalone token count of the pooled text.

    A text holding ``config.separator`` is split there: the separator is deleted, the halves are
    joined and the part after it is the pooled text. Otherwise the instruction (if any) and the
    separator are put in front; with neither, the whole text is pooled (BOS excluded). The count
    comes from a separate tokenisation, as in the published code, so a first word that tokenises
    differently after the instruction moves the span by that difference. n = 0 (nothing after the
    separator) pools the whole padded row, pads and BOS included (``h[i, -0:]`` in the published
    code); an empty pool list marks that for :func:`collate`.
    """
    sep = config.separator
    joined, pooled = [], []
    for text in texts:
        instruction = _instruction_for(config, text)
        full = text if sep in text or not instruction else instruction + sep + text
        parts = full.split(sep)
        joined.append("".join(parts))
        pooled.append(parts[1] if len(parts) > 1 else full)
    extra = 1 if append_eos else 0
    kwargs = {"truncation": True, "max_length": config.max_length - extra}
    enc = tokenizer(joined, add_special_tokens=True, **kwargs)["input_ids"]
    counts = [len(ids) for ids in tokenizer(pooled, add_special_tokens=False, **kwargs)["input_ids"]]
    out = []
    for ids, n in zip(enc, counts, strict=True):
        ids = list(ids)
        n = min(n, len(ids))
        pool = [i >= len(ids) - n for i in range(len(ids))] if n else []
        if append_eos:
            ids.append(tokenizer.eos_token_id)
            pool = [*pool, True] if pool else []
        out.append((ids, pool))
    return out


def encode_ids(
    tokenizer: Any, config: TextEncoderConfig, append_eos: bool, texts: Sequence[str]
) -> list[Item]:
    """Token ids and pool flags per text: instruction and special tokens are never pooled."""
    if config.separator:
        return _separator_ids(tokenizer, config, append_eos, texts)
    prefix = config.instruction
    extra = 1 if append_eos else 0
    enc = tokenizer(
        [prefix + t for t in texts],
        add_special_tokens=True,
        truncation=True,
        max_length=config.max_length - extra,
        return_offsets_mapping=True,
        return_special_tokens_mask=True,
    )
    out = []
    for ids, offsets, special in zip(
        enc["input_ids"], enc["offset_mapping"], enc["special_tokens_mask"], strict=True
    ):
        # A token belongs to the report when its span ends after the instruction; a token straddling
        # the boundary carries report characters and is pooled.
        pool = [
            (s and config.pool_special_tokens) or (not s and end > len(prefix))
            for (_, end), s in zip(offsets, special, strict=True)
        ]
        ids = list(ids)
        if append_eos:
            ids.append(tokenizer.eos_token_id)
            pool.append(True)
        if not any(pool):  # empty text: pool everything rather than divide by zero
            pool = [True] * len(ids)
        out.append((ids, pool))
    return out


def collate(tokenizer: Any, padding_side: str, items: Sequence[Item]) -> dict[str, torch.Tensor]:
    """Pad items into ``input_ids``, ``attention_mask`` (B, T) and ``pool_mask`` (B, T, bool)."""
    pad_id = tokenizer.pad_token_id
    if pad_id is None:
        pad_id = tokenizer.eos_token_id or 0
    length = max(len(ids) for ids, _ in items)
    input_ids = torch.full((len(items), length), pad_id, dtype=torch.long)
    attention = torch.zeros((len(items), length), dtype=torch.long)
    pool_mask = torch.zeros((len(items), length), dtype=torch.bool)
    for row, (ids, pool) in enumerate(items):
        n = len(ids)
        sl = slice(length - n, length) if padding_side == "left" else slice(0, n)
        input_ids[row, sl] = torch.tensor(ids, dtype=torch.long)
        attention[row, sl] = 1
        if pool:
            pool_mask[row, sl] = torch.tensor(pool, dtype=torch.bool)
        else:  # the separator rule's n = 0: the whole padded row (see _separator_ids)
            pool_mask[row] = True
    return {"input_ids": input_ids, "attention_mask": attention, "pool_mask": pool_mask}
