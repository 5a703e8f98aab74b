"""Segmentation losses."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def resize_to(logits: torch.Tensor, size: tuple[int, int], align_corners: bool = False) -> torch.Tensor:
    """Bilinear resize of logits to a label map's size (project policy: align_corners=False)."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=align_corners)


def seg_cross_entropy(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = 255,
                      weight: torch.Tensor | None = None) -> torch.Tensor:
    """Pixel-wise cross-entropy of low-resolution logits against a full-resolution label map."""
    logits = resize_to(logits, tuple(target.shape[-2:]))
    return F.cross_entropy(logits, target.long(), weight=weight, ignore_index=ignore_index)
