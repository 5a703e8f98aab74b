"""Joint Pyramid Upsampling neck of FastFCN (MMSeg ``JPU``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..layers import ALIGN_CORNERS, ConvModule, resize


class _SeparableConv(nn.Module):
    """mmcv's ``DepthwiseSeparableConvModule`` as JPU configures it: the depthwise ConvModule has BN but no
    activation (``dw_act_cfg=None``), the 1x1 pointwise one BN + ReLU. Keys ``depthwise_conv.*``,
    ``pointwise_conv.*``."""

    def __init__(self, in_channels: int, out_channels: int, dilation: int) -> None:
        super().__init__()
        self.depthwise_conv = ConvModule(in_channels, in_channels, 3, padding=dilation, dilation=dilation,
                                         groups=in_channels, act=None)
        self.pointwise_conv = ConvModule(in_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        """Depthwise (linear) then pointwise convolution."""
        return self.pointwise_conv(self.depthwise_conv(x))


class JPU(nn.Module):
    """FastFCN's JPU (Wu et al., 2019): joint upsampling of the last backbone levels to the finest one's size.

    Each input level ``start_level .. end_level - 1`` goes through a 3x3 ConvModule to ``mid_channels``
    (``conv_layers.{i}.0``); the maps are resized (bilinear) to the first one's size and concatenated; parallel
    depthwise separable convs with ``dilations`` (``dilation_layers.{i}.0``) read the concatenation, and their outputs
    are concatenated again (``len(dilations) * mid_channels`` channels). As in MMSeg the output tuple is the
    untouched inputs ``start_level .. end_level - 2`` (for auxiliary heads) followed by that fused map.

    Args:
        in_channels: channels of every backbone output.
        mid_channels: width of each conv and dilation branch.
        start_level: first input level used.
        end_level: one past the last input level used; -1 means all.
        dilations: one depthwise separable branch per dilation.
        align_corners: of the bilinear resizes (False in segrt).
        in_strides: strides of the inputs, optional; gives ``out_strides`` (the fused map has the stride of
            input ``start_level``).

    Attributes:
        out_channels: channels of each output map.
        out_strides: stride of each output map (``None`` without ``in_strides``).
    """

    def __init__(
        self,
        in_channels: Sequence[int] = (512, 1024, 2048),
        mid_channels: int = 512,
        start_level: int = 0,
        end_level: int = -1,
        dilations: Sequence[int] = (1, 2, 4, 8),
        align_corners: bool = ALIGN_CORNERS,
        in_strides: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.in_channels = tuple(in_channels)
        end = len(self.in_channels) if end_level == -1 else end_level
        if not 0 <= start_level < end <= len(self.in_channels):
            raise ValueError(f"JPU: need 0 <= start_level < end_level <= {len(self.in_channels)}, "
                             f"got {start_level}, {end_level}")
        if mid_channels < 1 or not dilations or any(d < 1 for d in dilations):
            raise ValueError(f"JPU: need mid_channels >= 1 and positive dilations, got {mid_channels}, "
                             f"{tuple(dilations)}")
        if in_strides is not None and len(in_strides) != len(self.in_channels):
            raise ValueError(f"JPU: in_strides {tuple(in_strides)} must have one entry per input {self.in_channels}")
        self.mid_channels = mid_channels
        self.start_level = start_level
        self.end_level = end
        self.dilations = tuple(dilations)
        self.align_corners = align_corners
        self.conv_layers = nn.ModuleList(
            nn.Sequential(ConvModule(self.in_channels[i], mid_channels, 3, padding=1)) for i in range(start_level, end)
        )
        fused = (end - start_level) * mid_channels
        self.dilation_layers = nn.ModuleList(
            nn.Sequential(_SeparableConv(fused, mid_channels, d)) for d in self.dilations
        )
        self.out_channels: tuple[int, ...] = (*self.in_channels[start_level:end - 1],
                                              len(self.dilations) * mid_channels)
        self.out_strides: tuple[int, ...] | None = None
        if in_strides is not None:
            self.out_strides = (*in_strides[start_level:end - 1], in_strides[start_level])

    def forward(self, inputs: Sequence[Tensor]) -> tuple[Tensor, ...]:
        """The passed-through inputs, then the fused ``[B, len(dilations) * mid_channels, h0, w0]`` map."""
        if len(inputs) != len(self.in_channels):
            raise ValueError(f"JPU: expected {len(self.in_channels)} feature maps, got {len(inputs)}")
        feats = [conv(inputs[self.start_level + i]) for i, conv in enumerate(self.conv_layers)]
        size = feats[0].shape[2:]
        feats = [feats[0], *(resize(f, size, self.align_corners) for f in feats[1:])]
        feat = torch.cat(feats, dim=1)
        fused = torch.cat([branch(feat) for branch in self.dilation_layers], dim=1)
        return (*inputs[self.start_level:self.end_level - 1], fused)
