"""STDC boundary ("detail") head (MMSeg ``STDCHead``): an FCN head over 2 classes (boundary / not) trained against
Laplacian edges of the label map (MMSeg's detail aggregation loss: sigmoid BCE + Dice).

Its forward is :class:`FCNHead` 's; the constant ``laplacian_kernel`` and ``fusion_kernel`` are kept under MMSeg's
names so its checkpoints load. MMSeg holds ``fusion_kernel`` as a frozen ``nn.Parameter``; here it is a buffer
(the same state-dict key), so the parameters are exactly the trainable ones (MMSeg's count minus those 3 numbers).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .fcn import FCNHead


class STDCHead(FCNHead):
    """FCN head whose logits (usually 2 channels) predict boundaries; see :meth:`loss` and :meth:`detail_targets`.

    Args:
        boundary_threshold: a Laplacian response above this marks a boundary pixel (0.1).
        **kwargs: see :class:`FCNHead` (MMSeg's config: ``num_convs=1, concat_input=False, num_classes=2``).
    """

    def __init__(self, in_channels: int, channels: int, *, boundary_threshold: float = 0.1, **kwargs) -> None:
        super().__init__(in_channels, channels, **kwargs)
        self.boundary_threshold = boundary_threshold
        lap = torch.tensor([-1, -1, -1, -1, 8, -1, -1, -1, -1], dtype=torch.float32).reshape(1, 1, 3, 3)
        self.register_buffer("laplacian_kernel", lap)
        self.register_buffer("fusion_kernel", torch.tensor([0.6, 0.3, 0.1]).reshape(1, 3, 1, 1))

    def _binary(self, x: Tensor) -> Tensor:
        return (x > self.boundary_threshold).to(x.dtype)

    @torch.no_grad()
    def detail_targets(self, label: Tensor) -> Tensor:
        """Boundary ground truth ``[B, H, W]`` (int64, 0/1) of a label map ``[B, H, W]``, as MMSeg computes it:
        Laplacian edges of the raw label values at strides 1, 2 and 4 (nearest-upsampled back), each
        thresholded, fused with weights 0.6/0.3/0.1 and thresholded again."""
        if label.dim() != 3:
            raise ValueError(f"STDCHead.detail_targets: expected labels [B, H, W], got shape {tuple(label.shape)}")
        seg = label.unsqueeze(1).to(self.laplacian_kernel)
        levels = []
        for stride in (1, 2, 4):
            edges = F.conv2d(seg, self.laplacian_kernel, stride=stride, padding=1).clamp(min=0)
            if stride > 1:
                edges = F.interpolate(edges, size=seg.shape[2:], mode="nearest")
            levels.append(self._binary(edges))
        fused = F.conv2d(torch.cat(levels, dim=1), self.fusion_kernel)
        return self._binary(fused).squeeze(1).long()

    def loss(self, logits: Tensor, label: Tensor, eps: float = 1e-3) -> Tensor:
        """MMSeg's detail loss of boundary ``logits`` ``[B, C, h, w]`` against a label map ``[B, H, W]``: the logits
        resized to the labels (bilinear, the head's ``align_corners``), one-hot boundary targets, mean sigmoid
        binary cross-entropy plus the V-Net Dice loss (squared denominators, ``eps`` 1e-3), averaged over images."""
        if logits.dim() != 4 or logits.shape[1] < 2:
            raise ValueError(f"STDCHead.loss: expected logits [B, C>=2, h, w], got shape {tuple(logits.shape)}")
        target = self.detail_targets(label)
        logits = F.interpolate(logits, size=label.shape[1:], mode="bilinear", align_corners=self.align_corners)
        one_hot = F.one_hot(target, logits.shape[1]).permute(0, 3, 1, 2).to(logits.dtype)
        bce = F.binary_cross_entropy_with_logits(logits, one_hot)
        prob, one_hot = logits.sigmoid().flatten(1), one_hot.flatten(1)
        inter = (prob * one_hot).sum(1)
        dice = 1 - 2 * inter / ((prob * prob).sum(1) + eps + (one_hot * one_hot).sum(1) + eps)
        return bce + dice.mean()
