"""The contrastive losses against naive per-row references."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lexray.clip.losses import ClipLoss, SigLipLoss


def _pairs(b: int = 6, d: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(b, d, generator=g), dim=-1), F.normalize(
        torch.randn(b, d, generator=g), dim=-1
    )


def naive_clip(image: torch.Tensor, text: torch.Tensor, scale: float) -> float:
    """Average of -log softmax at the true pair, over image rows and over text rows, with Python loops."""
    n = image.shape[0]
    total_i, total_t = 0.0, 0.0
    for i in range(n):
        sims = [scale * float(image[i] @ text[j]) for j in range(n)]
        total_i += -(sims[i] - math.log(sum(math.exp(s) for s in sims)))
        sims = [scale * float(text[i] @ image[j]) for j in range(n)]
        total_t += -(sims[i] - math.log(sum(math.exp(s) for s in sims)))
    return 0.5 * (total_i / n + total_t / n)


def naive_siglip(image: torch.Tensor, text: torch.Tensor, scale: float, bias: float) -> float:
    """Sum over all pairs of -log sigmoid(label * logit), divided by the batch size."""
    n = image.shape[0]
    total = 0.0
    for i in range(n):
        for j in range(n):
            z = scale * float(image[i] @ text[j]) + bias
            label = 1.0 if i == j else -1.0
            total += math.log1p(math.exp(-label * z))
    return total / n


@pytest.mark.parametrize("scale", [1.0, 14.3, 100.0])
def test_clip_loss_matches_naive(scale: float) -> None:
    image, text = _pairs()
    out = ClipLoss()(image, text, torch.tensor(scale))
    assert set(out) == {"clip"}
    assert out["clip"].item() == pytest.approx(naive_clip(image, text, scale), rel=1e-5)


@pytest.mark.parametrize(("scale", "bias"), [(10.0, -10.0), (3.0, 0.5)])
def test_siglip_loss_matches_naive(scale: float, bias: float) -> None:
    image, text = _pairs(b=5, seed=1)
    out = SigLipLoss()(image, text, torch.tensor(scale), torch.tensor(bias))
    assert set(out) == {"siglip"}
    assert out["siglip"].item() == pytest.approx(naive_siglip(image, text, scale, bias), rel=1e-5)


def test_losses_prefer_matched_pairs() -> None:
    image, _ = _pairs()
    shuffled = image[torch.randperm(len(image), generator=torch.Generator().manual_seed(3))]
    for loss in (ClipLoss(), SigLipLoss()):
        good = sum(loss(image, image, torch.tensor(10.0), torch.tensor(-5.0)).values())
        bad = sum(loss(image, shuffled, torch.tensor(10.0), torch.tensor(-5.0)).values())
        assert good < bad


def test_clip_loss_gradient_flows_to_both_sides_and_the_scale() -> None:
    image, text = _pairs()
    image.requires_grad_(True)
    text.requires_grad_(True)
    scale = torch.tensor(5.0, requires_grad=True)
    ClipLoss()(image, text, scale)["clip"].backward()
    assert image.grad is not None and text.grad is not None and scale.grad is not None


def test_siglip_needs_a_bias() -> None:
    image, text = _pairs()
    with pytest.raises(ValueError, match="logit_bias"):
        SigLipLoss()(image, text, torch.tensor(10.0))
