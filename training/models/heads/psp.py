"""PSP head (MMSeg ``PSPHead``): pyramid pooling module + 3x3 bottleneck + ``conv_seg``."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..layers import AdaptiveAvgPool2d, ConvModule, resize
from .base import BaseDecodeHead


class PPM(nn.ModuleList):
    """Pyramid pooling: for each scale, pool to ``scale x scale`` bins, 1x1 ConvModule, resize back.

    Each branch is ``Sequential(pool, ConvModule)`` so its weights are ``{i}.1.conv.weight`` / ``{i}.1.bn.*``
    as in MMSeg. The pooling is :func:`~training.models.layers.adaptive_avg_pool2d`, which exports to ONNX with
    dynamic H and W.
    """

    def __init__(self, pool_scales: Sequence[int], in_channels: int, channels: int, align_corners: bool) -> None:
        super().__init__(
            nn.Sequential(AdaptiveAvgPool2d(scale), ConvModule(in_channels, channels, 1)) for scale in pool_scales
        )
        self.align_corners = align_corners

    def forward(self, x: Tensor) -> list[Tensor]:
        """Return one ``[B, channels, H, W]`` map per pool scale."""
        size = x.shape[2:]
        return [resize(branch(x), size, self.align_corners) for branch in self]


class PSPHead(BaseDecodeHead):
    """Pyramid Scene Parsing head (Zhao et al., 2017).

    Args:
        pool_scales: output sizes of the pyramid pooling branches.
        **kwargs: see :class:`BaseDecodeHead`.
    """

    def __init__(
        self, in_channels: int, channels: int, *, pool_scales: Sequence[int] = (1, 2, 3, 6), **kwargs
    ) -> None:
        super().__init__(in_channels, channels, **kwargs)
        if not pool_scales or any(s < 1 for s in pool_scales):
            raise ValueError(f"PSPHead: pool_scales must be positive ints, got {tuple(pool_scales)}")
        self.pool_scales = tuple(pool_scales)
        self.psp_modules = PPM(self.pool_scales, in_channels, channels, self.align_corners)
        self.bottleneck = ConvModule(in_channels + len(self.pool_scales) * channels, channels, 3, padding=1)

    def forward(self, inputs: Sequence[Tensor]) -> Tensor:
        """Logits at the resolution of the selected feature map."""
        x = self._select(inputs)
        feat = self.bottleneck(torch.cat([x, *self.psp_modules(x)], dim=1))
        return self.cls_seg(feat)
