"""BiSeNetV1 (Yu et al., 2018) laid out like MMSegmentation 1.x ``BiSeNetV1`` (``mmseg/models/backbones``).

A spatial path (three strided convs, stride 8) and a context path (a ResNet, attention refinement modules on its
stride-16 and stride-32 maps plus a global-context vector) meet in a feature fusion module. State-dict names follow
MMSeg: ``spatial_path.layer{1..4}``, ``context_path.backbone.*`` (the inner ResNet), ``context_path.arm16/arm32``,
``context_path.conv_head16/conv_head32``, ``context_path.gap_conv.1`` and ``ffm.conv1`` / ``ffm.conv_atten.0``.
Every conv is an mmcv-style ``ConvModule`` with BN and ReLU (MMSeg builds these parts with its defaults).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..layers import ConvModule, GlobalAvgPool2d, global_avg_pool


def upsample_nearest(x: Tensor, like: Tensor) -> Tensor:
    """Nearest-neighbour resize of ``x`` to the spatial size of ``like`` (MMSeg ``resize(mode='nearest')``)."""
    return F.interpolate(x, size=like.shape[2:], mode="nearest")


class AttentionRefinementModule(nn.Module):
    """ARM: a 3x3 ``conv_layer``, then the map reweighted per channel by a sigmoid of its global mean
    (``atten_conv_layer``: mean -> 1x1 conv + BN -> sigmoid). Also used by STDC's context path."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv_layer = ConvModule(in_channels, out_channels, 3, padding=1)
        self.atten_conv_layer = nn.Sequential(
            GlobalAvgPool2d(), ConvModule(out_channels, out_channels, 1, act=None), nn.Sigmoid()
        )

    def forward(self, x: Tensor) -> Tensor:
        """Refined feature map (same size, ``out_channels``)."""
        x = self.conv_layer(x)
        return x * self.atten_conv_layer(x)


class SpatialPath(nn.Module):
    """7x7/2, 3x3/2, 3x3/2 and 1x1 ``ConvModule`` s (``layer1..layer4``): a wide stride-8 map."""

    def __init__(self, in_channels: int = 3, num_channels: Sequence[int] = (64, 64, 64, 128)) -> None:
        super().__init__()
        if len(num_channels) != 4:
            raise ValueError(f"SpatialPath: num_channels needs 4 entries, got {tuple(num_channels)}")
        c = tuple(num_channels)
        self.layer1 = ConvModule(in_channels, c[0], 7, stride=2, padding=3)
        self.layer2 = ConvModule(c[0], c[1], 3, stride=2, padding=1)
        self.layer3 = ConvModule(c[1], c[2], 3, stride=2, padding=1)
        self.layer4 = ConvModule(c[2], c[3], 1)

    def forward(self, x: Tensor) -> Tensor:
        """Stride-8 spatial features."""
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class ContextPath(nn.Module):
    """Inner backbone + ARMs on its stride-16/32 maps + global context, upsampled (nearest) to strides 16 and 8.

    Args:
        backbone: returns 4 maps (strides 4, 8, 16, 32), e.g. our :class:`ResNet` with ``strides=(1, 2, 2, 2)``.
        context_channels: channels of the ARM outputs, then of the backbone's stride-16 and stride-32 maps.
    """

    def __init__(self, backbone: nn.Module, context_channels: Sequence[int] = (128, 256, 512)) -> None:
        super().__init__()
        c = tuple(context_channels)
        if len(c) != 3:
            raise ValueError(f"ContextPath: context_channels needs 3 entries, got {c}")
        if len(backbone.out_channels) != 4 or tuple(backbone.out_channels[2:]) != c[1:]:
            raise ValueError(f"ContextPath: the backbone must return 4 maps whose last two have {c[1:]} channels, "
                             f"got out_channels {tuple(backbone.out_channels)}")
        self.backbone = backbone
        self.arm16 = AttentionRefinementModule(c[1], c[0])
        self.arm32 = AttentionRefinementModule(c[2], c[0])
        self.conv_head32 = ConvModule(c[0], c[0], 3, padding=1)
        self.conv_head16 = ConvModule(c[0], c[0], 3, padding=1)
        self.gap_conv = nn.Sequential(GlobalAvgPool2d(), ConvModule(c[2], c[0], 1))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(context at stride 8, context at stride 16), both with ``context_channels[0]`` channels."""
        _, x8, x16, x32 = self.backbone(x)
        up32 = self.conv_head32(upsample_nearest(self.arm32(x32) + self.gap_conv(x32), x16))
        up16 = self.conv_head16(upsample_nearest(self.arm16(x16) + up32, x8))
        return up16, up32


class FeatureFusionModule(nn.Module):
    """FFM: concat -> 1x1 ``conv1``; the result plus itself reweighted by sigmoid(``conv_atten`` of its mean)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = ConvModule(in_channels, out_channels, 1)
        self.conv_atten = nn.Sequential(ConvModule(out_channels, out_channels, 1), nn.Sigmoid())

    def forward(self, x_spatial: Tensor, x_context: Tensor) -> Tensor:
        """Fused map with ``out_channels``."""
        fuse = self.conv1(torch.cat([x_spatial, x_context], dim=1))
        return fuse * self.conv_atten(global_avg_pool(fuse)) + fuse


class BiSeNetV1(nn.Module):
    """BiSeNetV1 backbone returning ``(fused, context8, context16)`` at strides 8, 8 and 16 (MMSeg's outputs).

    Args:
        backbone: the context path's inner network (4 output maps at strides 4..32; MMSeg uses a ResNet-18 v1b).
        in_channels: image channels (of the spatial path; the inner backbone must take the same).
        spatial_channels: the spatial path's 4 widths; MMSeg: (64, 64, 64, 128) for R18, (256, 256, 256, 512) R50.
        context_channels: ARM width, then the inner backbone's stride-16 and stride-32 widths ((128, 256, 512)).
        out_channels: channels of the fused map (256 for R18, 1024 for R50).

    Attributes: ``out_channels`` / ``out_strides`` per output; ``level_indices`` gives, per pyramid level
    (strides 4, 8, 16, 32), the output holding it (-1: none), so the generic heads find the stride-8/16 maps.
    """

    level_indices: tuple[int, ...] = (-1, 0, 2, -1)

    def __init__(
        self,
        backbone: nn.Module,
        in_channels: int = 3,
        spatial_channels: Sequence[int] = (64, 64, 64, 128),
        context_channels: Sequence[int] = (128, 256, 512),
        out_channels: int = 256,
    ) -> None:
        super().__init__()
        if getattr(backbone, "in_channels", in_channels) != in_channels:
            raise ValueError(f"BiSeNetV1: the context backbone takes {backbone.in_channels} image channels, "
                             f"the spatial path {in_channels}")
        strides = tuple(getattr(backbone, "out_strides", (4, 8, 16, 32)))
        if strides != (4, 8, 16, 32):
            raise ValueError(f"BiSeNetV1: the context backbone must output strides (4, 8, 16, 32), got {strides}")
        self.context_path = ContextPath(backbone, context_channels)
        self.spatial_path = SpatialPath(in_channels, spatial_channels)
        self.ffm = FeatureFusionModule(spatial_channels[3] + context_channels[0], out_channels)
        self.in_channels = in_channels
        self.out_channels: tuple[int, ...] = (out_channels, context_channels[0], context_channels[0])
        self.out_strides: tuple[int, ...] = (8, 8, 16)
        self.out_indices: tuple[int, ...] = (0, 1, 2)
        self.output_stride = 8
        self.width_scale: float = context_channels[0] / 128

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(fused stride-8 map, context at stride 8, context at stride 16)."""
        context8, context16 = self.context_path(x)
        fused = self.ffm(self.spatial_path(x), context8)
        return fused, context8, context16
