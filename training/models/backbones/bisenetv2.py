"""BiSeNetV2 (Yu et al., 2021) laid out like MMSegmentation 1.x ``BiSeNetV2`` (``mmseg/models/backbones``).

A detail branch (wide, shallow, stride 8), a semantic branch (stem block, gather-and-expansion layers, a context
embedding block; stride 32) and a bilateral guided aggregation layer. State-dict names follow MMSeg:
``detail.detail_branch.{i}.{j}``, ``semantic.stage1`` (stem), ``semantic.stage{2,3,4}.{j}`` (GE layers),
``semantic.stage4_CEBlock``, ``bga.*``. Outputs: the BGA map (stride 8) then the semantic stages 1..4 (strides
4, 8, 16, 32) that MMSeg's four auxiliary heads read.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..layers import ALIGN_CORNERS, BN_EPS, ConvModule, GlobalAvgPool2d, resize


def avg_pool3x3_s2(x: Tensor) -> Tensor:
    """``AvgPool2d(3, stride=2, padding=1)`` (count_include_pad: every window divides by 9) as a fixed depthwise
    conv, so ONNX gets a Conv rather than an AveragePool."""
    c = x.shape[1]
    weight = torch.full((c, 1, 3, 3), 1.0 / 9.0, dtype=x.dtype, device=x.device)
    return F.conv2d(x, weight, stride=2, padding=1, groups=c)


class AvgPool3x3S2(nn.Module):
    """Module form of :func:`avg_pool3x3_s2` (parameter-free; keeps MMSeg's ``Sequential`` indices)."""

    def forward(self, x: Tensor) -> Tensor:
        """Average over 3x3 windows at stride 2, zero padding counted."""
        return avg_pool3x3_s2(x)


class SeparableConv(nn.Module):
    """mmcv ``DepthwiseSeparableConvModule`` with BN and no activation on the depthwise 3x3 (``depthwise_conv``)
    and a linear 1x1 ``pointwise_conv``: with BN (GE shortcut) or with a bias and no norm (``pw_norm=False``, BGA)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, pw_norm: bool = True) -> None:
        super().__init__()
        self.depthwise_conv = ConvModule(in_channels, in_channels, 3, stride=stride, padding=1, groups=in_channels,
                                         act=None)
        self.pointwise_conv = ConvModule(in_channels, out_channels, 1, norm=pw_norm, act=None)

    def forward(self, x: Tensor) -> Tensor:
        """Depthwise then pointwise."""
        return self.pointwise_conv(self.depthwise_conv(x))


class DetailBranch(nn.Module):
    """Three stages of 3x3 ``ConvModule`` s (2, 3, 3 convs), each starting with stride 2."""

    def __init__(self, detail_channels: Sequence[int] = (64, 64, 128), in_channels: int = 3) -> None:
        super().__init__()
        stages, prev = [], in_channels
        for i, c in enumerate(detail_channels):
            convs = [ConvModule(prev, c, 3, stride=2, padding=1)]
            convs += [ConvModule(c, c, 3, padding=1) for _ in range(1 if i == 0 else 2)]
            stages.append(nn.Sequential(*convs))
            prev = c
        self.detail_branch = nn.ModuleList(stages)

    def forward(self, x: Tensor) -> Tensor:
        """Stride-8 detail features."""
        for stage in self.detail_branch:
            x = stage(x)
        return x


class StemBlock(nn.Module):
    """3x3/2 ``conv_first``, then a conv branch (1x1, 3x3/2) and a max-pool branch, concatenated, ``fuse_last``."""

    def __init__(self, in_channels: int = 3, out_channels: int = 16) -> None:
        super().__init__()
        self.conv_first = ConvModule(in_channels, out_channels, 3, stride=2, padding=1)
        self.convs = nn.Sequential(
            ConvModule(out_channels, out_channels // 2, 1),
            ConvModule(out_channels // 2, out_channels, 3, stride=2, padding=1),
        )
        self.pool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.fuse_last = ConvModule(out_channels * 2, out_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        """Stride-4 stem features."""
        x = self.conv_first(x)
        return self.fuse_last(torch.cat([self.convs(x), self.pool(x)], dim=1))


class GELayer(nn.Module):
    """Gather-and-expansion layer: 3x3 conv, depthwise expansion by ``exp_ratio`` (two depthwise convs when
    strided), linear 1x1 projection, residual (a separable-conv shortcut when strided), ReLU."""

    def __init__(self, in_channels: int, out_channels: int, exp_ratio: int = 6, stride: int = 1) -> None:
        super().__init__()
        mid = in_channels * exp_ratio
        self.conv1 = ConvModule(in_channels, in_channels, 3, padding=1)
        if stride == 1:
            if in_channels != out_channels:
                raise ValueError(f"GELayer: stride 1 needs in_channels == out_channels, got {in_channels}, "
                                 f"{out_channels}")
            self.dwconv = nn.Sequential(ConvModule(in_channels, mid, 3, padding=1, groups=in_channels))
            self.shortcut = None
        else:
            self.dwconv = nn.Sequential(
                ConvModule(in_channels, mid, 3, stride=stride, padding=1, groups=in_channels, act=None),
                ConvModule(mid, mid, 3, padding=1, groups=mid),
            )
            self.shortcut = nn.Sequential(SeparableConv(in_channels, out_channels, stride=stride))
        self.conv2 = nn.Sequential(ConvModule(mid, out_channels, 1, act=None))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        """GE block."""
        out = self.conv2(self.dwconv(self.conv1(x)))
        return self.act(out + (x if self.shortcut is None else self.shortcut(x)))


class CEBlock(nn.Module):
    """Context embedding: global mean -> BN (``gap.1``) -> 1x1 ``conv_gap``, added to the input, 3x3 ``conv_last``."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.gap = nn.Sequential(GlobalAvgPool2d(), nn.BatchNorm2d(in_channels, eps=BN_EPS))
        self.conv_gap = ConvModule(in_channels, out_channels, 1)
        self.conv_last = ConvModule(out_channels, out_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        """Context-embedded map."""
        return self.conv_last(x + self.conv_gap(self.gap(x)))


class SemanticBranch(nn.Module):
    """``stage1`` stem, ``stage2``/``stage3`` (GE/2 + GE), ``stage4`` (GE/2 + 3 GE), ``stage4_CEBlock``."""

    def __init__(self, semantic_channels: Sequence[int] = (16, 32, 64, 128), in_channels: int = 3,
                 exp_ratio: int = 6) -> None:
        super().__init__()
        c = tuple(semantic_channels)
        self.stage1 = StemBlock(in_channels, c[0])
        for i in range(1, len(c)):
            repeats = 3 if i == len(c) - 1 else 1
            layers = [GELayer(c[i - 1], c[i], exp_ratio, 2)] + [GELayer(c[i], c[i], exp_ratio, 1)
                                                                for _ in range(repeats)]
            self.add_module(f"stage{i + 1}", nn.Sequential(*layers))
        self.add_module(f"stage{len(c)}_CEBlock", CEBlock(c[-1], c[-1]))
        self.stage_names = [f"stage{i + 1}" for i in range(len(c))] + [f"stage{len(c)}_CEBlock"]

    def forward(self, x: Tensor) -> list[Tensor]:
        """Every stage's output, the context-embedded map last."""
        outs = []
        for name in self.stage_names:
            x = getattr(self, name)(x)
            outs.append(x)
        return outs


class BGALayer(nn.Module):
    """Bilateral guided aggregation: each branch gated by a sigmoid of the other at its resolution, summed at
    stride 8 (bilinear resizes, ``align_corners`` as MMSeg's False), 3x3 ``conv``."""

    def __init__(self, out_channels: int = 128, align_corners: bool = ALIGN_CORNERS) -> None:
        super().__init__()
        c = out_channels
        self.align_corners = align_corners
        self.detail_dwconv = nn.Sequential(SeparableConv(c, c, pw_norm=False))
        self.detail_down = nn.Sequential(ConvModule(c, c, 3, stride=2, padding=1, act=None), AvgPool3x3S2())
        self.semantic_conv = nn.Sequential(ConvModule(c, c, 3, padding=1, act=None))
        self.semantic_dwconv = nn.Sequential(SeparableConv(c, c, pw_norm=False))
        self.conv = ConvModule(c, c, 3, padding=1)

    def forward(self, x_d: Tensor, x_s: Tensor) -> Tensor:
        """Aggregate the stride-8 detail map ``x_d`` and the stride-32 semantic map ``x_s``."""
        detail = self.detail_dwconv(x_d)
        semantic_gate = resize(self.semantic_conv(x_s), detail.shape[2:], self.align_corners)
        fuse_low = self.detail_down(x_d) * torch.sigmoid(self.semantic_dwconv(x_s))
        fuse = detail * torch.sigmoid(semantic_gate) + resize(fuse_low, detail.shape[2:], self.align_corners)
        return self.conv(fuse)


class BiSeNetV2(nn.Module):
    """BiSeNetV2 backbone returning ``(bga, stage1, stage2, stage3, stage4)`` at strides 8, 4, 8, 16, 32.

    Args:
        in_channels: image channels.
        detail_channels: widths of the 3 detail stages (the last must equal ``bga_channels``).
        semantic_channels: widths of the 4 semantic stages (the last must equal ``bga_channels``).
        semantic_expansion_ratio: expansion of the GE layers (6).
        bga_channels: width of the aggregation layer and of the decode head's input (128).
        align_corners: of the BGA's bilinear resizes (MMSeg: False).
    """

    #: output index of each pyramid level (strides 4, 8, 16, 32): the semantic stages.
    level_indices: tuple[int, ...] = (1, 2, 3, 4)

    def __init__(
        self,
        in_channels: int = 3,
        detail_channels: Sequence[int] = (64, 64, 128),
        semantic_channels: Sequence[int] = (16, 32, 64, 128),
        semantic_expansion_ratio: int = 6,
        bga_channels: int = 128,
        align_corners: bool = ALIGN_CORNERS,
    ) -> None:
        super().__init__()
        detail_channels, semantic_channels = tuple(detail_channels), tuple(semantic_channels)
        if len(detail_channels) != 3 or len(semantic_channels) != 4:
            raise ValueError(f"BiSeNetV2: need 3 detail_channels and 4 semantic_channels, got {detail_channels}, "
                             f"{semantic_channels}")
        if detail_channels[-1] != bga_channels or semantic_channels[-1] != bga_channels:
            raise ValueError(f"BiSeNetV2: the last detail and semantic widths must equal bga_channels "
                             f"{bga_channels}, got {detail_channels[-1]}, {semantic_channels[-1]}")
        if semantic_expansion_ratio < 1:
            raise ValueError(f"BiSeNetV2: semantic_expansion_ratio must be >= 1, got {semantic_expansion_ratio}")
        self.in_channels = in_channels
        self.detail = DetailBranch(detail_channels, in_channels)
        self.semantic = SemanticBranch(semantic_channels, in_channels, semantic_expansion_ratio)
        self.bga = BGALayer(bga_channels, align_corners)
        self.out_channels: tuple[int, ...] = (bga_channels, *semantic_channels)
        self.out_strides: tuple[int, ...] = (8, 4, 8, 16, 32)
        self.out_indices: tuple[int, ...] = (0, 1, 2, 3, 4)
        self.output_stride = 8
        self.width_scale: float = bga_channels / 128

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        """(BGA map, semantic stage 1..4 maps)."""
        semantic = self.semantic(x)
        return (self.bga(self.detail(x), semantic[-1]), *semantic[:-1])
