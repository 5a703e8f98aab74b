"""Losses against direct formulas and their defining properties."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from training.losses import build_loss, dice_loss, focal_loss, lovasz_softmax, ohem_cross_entropy, seg_cross_entropy


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 6, 8, generator=g, requires_grad=True)
    target = torch.randint(0, 4, (2, 12, 16), generator=g)
    target[0, :3] = 255
    return logits, target


def test_ce_resizes_and_ignores(batch) -> None:
    logits, target = batch
    up = F.interpolate(logits, size=(12, 16), mode="bilinear", align_corners=False)
    valid = target != 255
    ref = -up.log_softmax(1).gather(1, target.clamp(0, 3)[:, None])[:, 0][valid].mean()
    assert torch.allclose(seg_cross_entropy(logits, target), ref, atol=1e-6)
    w = torch.tensor([1.0, 2.0, 0.5, 1.0])
    assert not torch.allclose(seg_cross_entropy(logits, target, weight=w), ref)


def test_ohem_keeps_hard_pixels(batch) -> None:
    logits, target = batch
    n_valid = int((target != 255).sum())
    # thresh 1.0 keeps every valid pixel: equal to plain CE
    assert torch.allclose(ohem_cross_entropy(logits, target, thresh=1.0, min_kept=1), seg_cross_entropy(logits, target))
    # thresh 0 keeps exactly the min_kept hardest pixels
    up = F.interpolate(logits, size=(12, 16), mode="bilinear", align_corners=False)
    pix = F.cross_entropy(up, target, ignore_index=255, reduction="none")[target != 255]
    ref = pix.sort(descending=True).values[:10].mean()
    assert torch.allclose(ohem_cross_entropy(logits, target, thresh=0.0, min_kept=10), ref, atol=1e-5)
    assert ohem_cross_entropy(logits, target, thresh=0.0, min_kept=10 * n_valid).isfinite()
    ohem_cross_entropy(logits, target, thresh=0.5, min_kept=5).backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_dice_perfect_and_bounds(batch) -> None:
    logits, target = batch
    perfect = F.one_hot(target.clamp(0, 3), 4).permute(0, 3, 1, 2).float() * 100
    assert dice_loss(perfect, target, smooth=0.0) < 1e-3
    d = dice_loss(logits, target)
    assert 0 < d < 1


def test_focal_reduces_to_ce_at_gamma_zero(batch) -> None:
    logits, target = batch
    assert torch.allclose(focal_loss(logits, target, gamma=0.0), seg_cross_entropy(logits, target), atol=1e-6)
    assert focal_loss(logits, target, gamma=2.0) < seg_cross_entropy(logits, target)


def test_lovasz_zero_when_perfect_and_positive_otherwise(batch) -> None:
    logits, target = batch
    perfect = F.one_hot(target.clamp(0, 3), 4).permute(0, 3, 1, 2).float() * 100
    assert lovasz_softmax(perfect, target) < 1e-4
    loss = lovasz_softmax(logits, target)
    assert loss > 0
    loss.backward()
    assert logits.grad.abs().sum() > 0


def test_build_loss_sums_and_errors(batch) -> None:
    logits, target = batch
    fn = build_loss([{"name": "ce", "weight": 1.0}, {"name": "dice", "weight": 0.5}], num_classes=4)
    ref = seg_cross_entropy(logits, target) + 0.5 * dice_loss(logits, target)
    assert torch.allclose(fn(logits, target), ref)
    assert torch.allclose(build_loss(None)(logits, target), seg_cross_entropy(logits, target))
    with pytest.raises(ValueError, match="unknown loss 'bce'"):
        build_loss([{"name": "bce"}])
    with pytest.raises(ValueError, match="gama"):
        build_loss([{"name": "focal", "gama": 2}])
    with pytest.raises(ValueError, match="class_weight"):
        build_loss([{"name": "ce", "class_weight": [1, 2]}], num_classes=4)
    with pytest.raises(ValueError, match="labels"):
        seg_cross_entropy(logits, target[0])
