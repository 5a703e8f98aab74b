"""UPerNet head (MMSeg ``UPerHead``): PPM on the last level + FPN top-down fusion of all levels."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..layers import ConvModule, resize
from .base import BaseDecodeHead
from .psp import PPM


class UPerHead(BaseDecodeHead):
    """Unified Perceptual Parsing head (Xiao et al., 2018).

    The last level goes through the pyramid pooling module ``psp_modules`` and the 3x3 ``bottleneck``; the other
    levels get 1x1 ``lateral_convs``; a top-down pass adds each coarser map (bilinear) to the next finer one; 3x3
    ``fpn_convs`` refine all but the top; everything is resized to the finest level, concatenated and fused by
    the 3x3 ``fpn_bottleneck``. Logits come out at the finest level's resolution (stride 4 on ResNet).

    Args:
        in_channels: channels per level, finest first (e.g. (256, 512, 1024, 2048)).
        pool_scales: PPM bin sizes.
        **kwargs: see :class:`BaseDecodeHead` (``in_index`` must be a sequence, one per level).
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        channels: int,
        *,
        pool_scales: Sequence[int] = (1, 2, 3, 6),
        **kwargs,
    ) -> None:
        super().__init__(tuple(in_channels), channels, **kwargs)
        if len(self.in_channels) < 2:
            raise ValueError(f"UPerHead: needs at least 2 levels, got in_channels {tuple(in_channels)}")
        if not pool_scales or any(s < 1 for s in pool_scales):
            raise ValueError(f"UPerHead: pool_scales must be positive ints, got {tuple(pool_scales)}")
        self.pool_scales = tuple(pool_scales)
        top = self.in_channels[-1]
        self.psp_modules = PPM(self.pool_scales, top, channels, self.align_corners)
        self.bottleneck = ConvModule(top + len(self.pool_scales) * channels, channels, 3, padding=1)
        self.lateral_convs = nn.ModuleList(ConvModule(c, channels, 1) for c in self.in_channels[:-1])
        self.fpn_convs = nn.ModuleList(ConvModule(channels, channels, 3, padding=1) for _ in self.in_channels[:-1])
        self.fpn_bottleneck = ConvModule(len(self.in_channels) * channels, channels, 3, padding=1)

    def _psp(self, x: Tensor) -> Tensor:
        return self.bottleneck(torch.cat([x, *self.psp_modules(x)], dim=1))

    def forward(self, inputs: Sequence[Tensor]) -> Tensor:
        """Logits at the resolution of the finest selected level."""
        feats = self._select_all(inputs)
        laterals = [conv(f) for conv, f in zip(self.lateral_convs, feats)]
        laterals.append(self._psp(feats[-1]))
        for i in range(len(laterals) - 1, 0, -1):  # top-down (out of place: MMSeg's += on a ReLU output)
            laterals[i - 1] = laterals[i - 1] + resize(laterals[i], laterals[i - 1].shape[2:], self.align_corners)
        outs = [conv(lat) for conv, lat in zip(self.fpn_convs, laterals)]
        outs.append(laterals[-1])
        size = outs[0].shape[2:]
        outs = [outs[0], *(resize(o, size, self.align_corners) for o in outs[1:])]
        return self.cls_seg(self.fpn_bottleneck(torch.cat(outs, dim=1)))
