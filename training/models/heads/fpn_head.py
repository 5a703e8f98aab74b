"""Semantic FPN head (MMSeg ``FPNHead``): per-level conv towers upsampled to the finest level and summed."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn

from ..layers import ConvModule, resize
from .base import BaseDecodeHead


class Upsample2x(nn.Module):
    """MMSeg ``Upsample(scale_factor=2, mode='bilinear')``: bilinear resize to exactly twice H and W."""

    def __init__(self, align_corners: bool) -> None:
        super().__init__()
        self.align_corners = align_corners

    def forward(self, x: Tensor) -> Tensor:
        """Resize to ``(2H, 2W)``."""
        return resize(x, (x.shape[2] * 2, x.shape[3] * 2), self.align_corners)


class FPNHead(BaseDecodeHead):
    """Panoptic-FPN semantic head (Kirillov et al., 2019).

    Level ``i`` gets ``max(1, log2(stride_i / stride_0))`` 3x3 ``ConvModule`` s, each followed by a 2x bilinear
    upsample unless the level is the finest (keys ``scale_heads.{i}.{0,2,4,...}``); the towers are summed at the
    finest level's resolution (coarser sums bilinearly resized to it).

    Args:
        in_channels: channels per level (the FPN neck's ``out_channels`` for each).
        feature_strides: stride of each level, finest first, powers of two (e.g. (4, 8, 16, 32)).
        **kwargs: see :class:`BaseDecodeHead` (``in_index`` must be a sequence, one per level).
    """

    def __init__(
        self, in_channels: Sequence[int], channels: int, *, feature_strides: Sequence[int], **kwargs
    ) -> None:
        super().__init__(tuple(in_channels), channels, **kwargs)
        strides = tuple(feature_strides)
        if len(strides) != len(self.in_channels) or min(strides) != strides[0]:
            raise ValueError(f"FPNHead: feature_strides {strides} must match in_channels and start with the finest")
        self.feature_strides = strides
        self.scale_heads = nn.ModuleList()
        for c, s in zip(self.in_channels, strides):
            layers: list[nn.Module] = []
            for k in range(max(1, int(math.log2(s) - math.log2(strides[0])))):
                layers.append(ConvModule(c if k == 0 else channels, channels, 3, padding=1))
                if s != strides[0]:
                    layers.append(Upsample2x(self.align_corners))
            self.scale_heads.append(nn.Sequential(*layers))

    def forward(self, inputs: Sequence[Tensor]) -> Tensor:
        """Logits at the resolution of the finest selected level."""
        feats = self._select_all(inputs)
        out = self.scale_heads[0](feats[0])
        for head, x in zip(self.scale_heads[1:], feats[1:]):
            out = out + resize(head(x), out.shape[2:], self.align_corners)
        return self.cls_seg(out)
