"""ASPP head of DeepLabV3 (MMSeg ``ASPPHead``), also the base of the DeepLabV3+ head."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..layers import ConvModule, DepthwiseSeparableConvModule, GlobalAvgPool2d
from .base import BaseDecodeHead


class ASPPModule(nn.ModuleList):
    """Parallel atrous branches: a 1x1 ``ConvModule`` for dilation 1, else a 3x3 one with padding = dilation.

    With ``separable=True`` the dilated branches are ``DepthwiseSeparableConvModule`` (DeepLabV3+).
    """

    def __init__(self, dilations: Sequence[int], in_channels: int, channels: int, separable: bool = False) -> None:
        branches: list[nn.Module] = []
        for d in dilations:
            if d == 1:
                branches.append(ConvModule(in_channels, channels, 1))
            elif separable:
                branches.append(DepthwiseSeparableConvModule(in_channels, channels, 3, padding=d, dilation=d))
            else:
                branches.append(ConvModule(in_channels, channels, 3, padding=d, dilation=d))
        super().__init__(branches)

    def forward(self, x: Tensor) -> list[Tensor]:
        """One ``[B, channels, H, W]`` map per dilation."""
        return [branch(x) for branch in self]


class ASPPHead(BaseDecodeHead):
    """Atrous Spatial Pyramid Pooling head of DeepLabV3 (Chen et al., 2017).

    ``image_pool`` is ``Sequential(global average pool, 1x1 ConvModule)`` (weights ``image_pool.1.*``); the pool is a
    mean over H and W, so the ONNX graph keeps H and W dynamic. Its ``1x1`` output is broadcast back to ``H x W``
    (what MMSeg's bilinear resize of a 1x1 map computes). The concatenated branches go through a 3x3
    ``bottleneck`` (a plain 3x3 ConvModule, also with ``separable=True``, as in MMSeg).

    Args:
        dilations: dilation per ASPP branch; (1, 12, 24, 36) for output stride 8 (MMSeg's default).
        separable: DeepLabV3+ variant of the dilated branches.
        **kwargs: see :class:`BaseDecodeHead`.
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        *,
        dilations: Sequence[int] = (1, 12, 24, 36),
        separable: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(in_channels, channels, **kwargs)
        if not dilations or any(d < 1 for d in dilations):
            raise ValueError(f"{type(self).__name__}: dilations must be positive ints, got {tuple(dilations)}")
        self.dilations = tuple(dilations)
        self.image_pool = nn.Sequential(GlobalAvgPool2d(), ConvModule(in_channels, channels, 1))
        self.aspp_modules = ASPPModule(self.dilations, in_channels, channels, separable)
        cat_channels = (len(self.dilations) + 1) * channels
        # plain 3x3 in DeepLabV3+ too: MMSeg's DepthwiseSeparableASPPHead keeps ASPPHead's bottleneck
        self.bottleneck = ConvModule(cat_channels, channels, 3, padding=1)

    def _aspp(self, x: Tensor) -> Tensor:
        """Image pooling + ASPP branches, concatenated and fused by ``bottleneck``."""
        pooled = self.image_pool(x).expand(-1, -1, x.shape[2], x.shape[3])
        return self.bottleneck(torch.cat([pooled, *self.aspp_modules(x)], dim=1))

    def forward(self, inputs: Sequence[Tensor]) -> Tensor:
        """Logits at the resolution of the selected feature map."""
        return self.cls_seg(self._aspp(self._select(inputs)))
