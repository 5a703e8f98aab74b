"""DeepLabV3+ head (MMSeg ``DepthwiseSeparableASPPHead``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..layers import ConvModule, DepthwiseSeparableConvModule, resize
from .aspp import ASPPHead


class DepthwiseSeparableASPPHead(ASPPHead):
    """DeepLabV3+ head (Chen et al., 2018): separable ASPP, then a decoder fusing low-level features.

    The ASPP output is resized to the low-level map ``inputs[c1_in_index]`` (ResNet ``layer1``), concatenated with
    its 1x1 projection ``c1_bottleneck`` and refined by two separable 3x3 convs ``sep_bottleneck.{0,1}``, so the
    logits come out at the low-level resolution (stride 4 on ResNet).

    Args:
        c1_in_channels: channels of the low-level map; 0 disables the low-level branch (then ``c1_channels`` = 0).
        c1_channels: channels of its projection (48 in MMSeg's R50 configs).
        c1_in_index: which backbone output is the low-level map (MMSeg hard-codes 0).
        **kwargs: see :class:`ASPPHead`.
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        *,
        c1_in_channels: int,
        c1_channels: int,
        c1_in_index: int = 0,
        **kwargs,
    ) -> None:
        super().__init__(in_channels, channels, separable=True, **kwargs)
        if c1_in_channels < 0 or c1_channels < 0 or (c1_in_channels == 0) != (c1_channels == 0):
            raise ValueError(
                f"DepthwiseSeparableASPPHead: need c1_in_channels, c1_channels >= 0 and both 0 or both > 0, "
                f"got {c1_in_channels}, {c1_channels}"
            )
        self.c1_in_channels = c1_in_channels
        self.c1_in_index = c1_in_index
        self.c1_bottleneck = ConvModule(c1_in_channels, c1_channels, 1) if c1_in_channels > 0 else None
        if self.c1_bottleneck is not None:
            self.output_index = c1_in_index
        self.sep_bottleneck = nn.Sequential(
            DepthwiseSeparableConvModule(channels + c1_channels, channels, 3, padding=1),
            DepthwiseSeparableConvModule(channels, channels, 3, padding=1),
        )

    def forward(self, inputs: Sequence[Tensor]) -> Tensor:
        """Logits at the resolution of the low-level map (or of the ASPP input without one)."""
        out = self._aspp(self._select(inputs))
        if self.c1_bottleneck is not None:
            c1 = self.c1_bottleneck(self._pick(inputs, self.c1_in_index, self.c1_in_channels))
            out = torch.cat([resize(out, c1.shape[2:], self.align_corners), c1], dim=1)
        return self.cls_seg(self.sep_bottleneck(out))
