"""SegFormer's all-MLP decode head (MMSeg 1.x ``SegformerHead``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..layers import ALIGN_CORNERS, ConvModule, resize
from .base import BaseDecodeHead


class SegformerHead(BaseDecodeHead):
    """Per-level 1x1 ``ConvModule`` to ``channels`` (``convs.{i}``), bilinear resize to the first level's size,
    concatenation in level order, 1x1 ``fusion_conv`` (conv + BN + ReLU) and ``conv_seg``.

    Args:
        in_channels: channels of each selected level (MMSeg: all four MiT stages).
        channels: the common width (MMSeg's configs: 256 for every MiT variant).
        linear_levels: per-level projections as in the original SegFormer / Hugging Face decoder (a 1x1 conv with
            bias, no BN, no ReLU) instead of MMSeg's conv + BN + ReLU; the state-dict names stay ``convs.{i}.conv``.
        in_index, dropout_ratio, align_corners, num_classes: see :class:`BaseDecodeHead`.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        channels: int,
        *,
        num_classes: int,
        in_index: Sequence[int] = (0, 1, 2, 3),
        dropout_ratio: float = 0.1,
        align_corners: bool = ALIGN_CORNERS,
        linear_levels: bool = False,
    ) -> None:
        super().__init__(in_channels, channels, num_classes=num_classes, in_index=in_index,
                         dropout_ratio=dropout_ratio, align_corners=align_corners)
        if isinstance(in_index, int):
            raise ValueError("SegformerHead: in_index must be a sequence of levels")
        self.linear_levels = linear_levels
        self.convs = nn.ModuleList(
            ConvModule(c, channels, 1, norm=not linear_levels, act=not linear_levels) for c in self.in_channels
        )
        self.fusion_conv = ConvModule(channels * len(self.in_channels), channels, 1)

    def forward(self, inputs: Sequence[Tensor]) -> Tensor:
        """Fuse every selected level at the first one's resolution and classify."""
        feats = self._select_all(inputs)
        size = feats[0].shape[2:]
        outs = [self.convs[0](feats[0])]  # already at the target size: resizing would be the identity
        outs += [resize(conv(x), size, self.align_corners) for conv, x in zip(self.convs[1:], feats[1:])]
        return self.cls_seg(self.fusion_conv(torch.cat(outs, dim=1)))
