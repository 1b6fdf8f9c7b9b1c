"""Text stage: LLM report encoders (bidirectional decoders or BERT-like), pooling, MNTP, contrastive, bench.

Public API::

    from lexray.text import TextEncoder
    enc = TextEncoder.from_pretrained("smollm2-135m", pooling="mean")
    emb = enc.encode(["No acute cardiopulmonary process."])  # (1, D) float32, L2-normalised
"""

from lexray.text.config import (
    ContrastiveConfig,
    LatentPoolingConfig,
    LoraSettings,
    MNTPConfig,
    TextDataConfig,
    TextEncoderConfig,
    TextTrainConfig,
)
from lexray.text.encoder import TextEncoder, bidirectional_mask, is_encoder_dir, plan_batches
from lexray.text.pooling import LastTokenPooling, LatentAttentionPooling, MeanPooling

__all__ = [
    "ContrastiveConfig",
    "LastTokenPooling",
    "LatentAttentionPooling",
    "LatentPoolingConfig",
    "LoraSettings",
    "MNTPConfig",
    "MeanPooling",
    "TextDataConfig",
    "TextEncoder",
    "TextEncoderConfig",
    "TextTrainConfig",
    "bidirectional_mask",
    "is_encoder_dir",
    "plan_batches",
]
