"""Contrastive image-text losses. A loss is an object returning a dict of named terms; the loop sums them.

Both take L2-normalised embeddings ``image (B, D)`` and ``text (B, D)`` where row i of each is a
matching pair, plus the model's ``logit_scale`` (= 1 / temperature, already exponentiated and
clamped) and, for SigLIP, ``logit_bias``. Batches must be free of duplicate reports: two identical
reports in one batch would be pushed apart as negatives (see :mod:`lexray.clip.data`).

Across processes the embeddings of every process are gathered (with gradients flowing back to the
local rows) so each process scores its rows against the global batch, as open_clip does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lexray.training.distributed import gather_with_grad


class ClipLoss:
    """Symmetric InfoNCE (CLIP, Radford et al. 2021).

    ``logits = scale * image @ text.T``; cross-entropy picks the diagonal both ways (image->text over
    rows, text->image over columns) and the two are averaged. Temperature = 1 / scale; CLIP learns it
    starting from 0.07. Use it when every batch holds distinct reports and the batch is large enough
    that the softmax over it is informative (the published CXR setting: 128 per GPU, gathered).
    """

    def __call__(
        self,
        image: torch.Tensor,
        text: torch.Tensor,
        logit_scale: torch.Tensor,
        logit_bias: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Return ``{"clip": loss}`` for embeddings (B, D) and (B, D)."""
        all_text, offset = gather_with_grad(text)
        all_image, _ = gather_with_grad(image)
        n = image.shape[0]
        labels = torch.arange(offset, offset + n, device=image.device)  # (B,)
        logits_i2t = logit_scale * image @ all_text.T  # (B, world*B)
        logits_t2i = logit_scale * text @ all_image.T  # (B, world*B)
        loss = 0.5 * (
            F.cross_entropy(logits_i2t.float(), labels) + F.cross_entropy(logits_t2i.float(), labels)
        )
        return {"clip": loss}


class SigLipLoss:
    """Pairwise sigmoid loss (SigLIP, Zhai et al. 2023).

    Every (image, text) pair is an independent binary problem: ``z = scale * image @ text.T + bias``,
    label +1 on the diagonal and -1 elsewhere, loss ``-sum(log sigmoid(label * z)) / B``. No softmax
    over the batch, so it behaves well with small batches; init scale 10 and bias -10 (the paper's).
    Across processes every local image is scored against the gathered texts.
    """

    def __call__(
        self,
        image: torch.Tensor,
        text: torch.Tensor,
        logit_scale: torch.Tensor,
        logit_bias: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Return ``{"siglip": loss}`` for embeddings (B, D) and (B, D)."""
        if logit_bias is None:
            raise ValueError("SigLipLoss needs the model's logit_bias (DualEncoderConfig.logit_bias=true)")
        all_text, offset = gather_with_grad(text)
        n = image.shape[0]
        logits = (logit_scale * image @ all_text.T + logit_bias).float()  # (B, world*B)
        labels = -torch.ones_like(logits)
        labels[torch.arange(n), torch.arange(offset, offset + n)] = 1.0
        loss = -F.logsigmoid(labels * logits).sum() / n
        return {"siglip": loss}


# name -> loss class, as named in TrainConfig.loss
LOSSES = {"clip": ClipLoss, "siglip": SigLipLoss}
