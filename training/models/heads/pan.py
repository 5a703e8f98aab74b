"""Pyramid Attention Network decoder (Li et al. 2018, "Pyramid Attention Network for Semantic Segmentation").

Laid out like segmentation_models.pytorch's ``PANDecoder`` (same module names, so an smp PAN checkpoint loads after
renaming ``decoder.`` -> ``decode_head.``, ``segmentation_head.0`` -> ``decode_head.conv_seg`` and ``encoder.`` ->
``backbone.``):

- FPA (feature pyramid attention) on the top map: a U-shaped single-channel pyramid (max-pool 2x2, 7x7 conv;
  max-pool, 5x5; max-pool, 3x3, 3x3; merged back up with 5x5 and 7x7 convs on the way) multiplies a 1x1
  projection of the map, and a global-average-pooling branch (1x1 conv) is added;
- GAU (global attention upsample) per lower level: a 3x3 conv of the low-level map times a sigmoid channel
  attention from the high-level map (global pool, 1x1 conv, BN), plus the high-level map upsampled;
- ``conv_seg`` is smp's 3x3 segmentation conv; logits at the stride of the lowest level (4).

Convs have a bias and BN (smp's ``ConvBnRelu``). Differences from smp, both stated: bilinear resizes follow the
head's ``align_corners`` (segrt's False; smp uses True, pass ``align_corners=True`` for its checkpoints), and the
FPA pools use ``ceil_mode`` so every input size works (equal to smp's floor pools when the top map's H, W are
multiples of 8, e.g. inputs that are multiples of 128 at output stride 16). The global branch is added by
broadcasting (smp resizes its 1x1 map first: the same values).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..layers import BN_EPS, GlobalAvgPool2d, resize
from .base import BaseDecodeHead


class ConvBnRelu(nn.Module):
    """Conv (with bias) + BN (+ ReLU), smp's names ``conv`` and ``bn``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, relu: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        self.bn = nn.BatchNorm2d(out_channels, eps=BN_EPS)
        self.act = nn.ReLU(inplace=True) if relu else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        """Conv, BN, activation."""
        return self.act(self.bn(self.conv(x)))


def _pool() -> nn.MaxPool2d:
    return nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True)


class FPABlock(nn.Module):
    """Feature pyramid attention on the top map."""

    def __init__(self, in_channels: int, out_channels: int, align_corners: bool) -> None:
        super().__init__()
        self.align_corners = align_corners
        self.branch1 = nn.Sequential(GlobalAvgPool2d(), ConvBnRelu(in_channels, out_channels, 1))
        self.mid = nn.Sequential(ConvBnRelu(in_channels, out_channels, 1))
        self.down1 = nn.Sequential(_pool(), ConvBnRelu(in_channels, 1, 7))
        self.down2 = nn.Sequential(_pool(), ConvBnRelu(1, 1, 5))
        self.down3 = nn.Sequential(_pool(), ConvBnRelu(1, 1, 3), ConvBnRelu(1, 1, 3))
        self.conv2 = ConvBnRelu(1, 1, 5)
        self.conv1 = ConvBnRelu(1, 1, 7)

    def forward(self, x: Tensor) -> Tensor:
        """``pyramid(x) * mid(x) + global(x)``."""
        x1 = self.down1(x)
        x2 = self.down2(x1)
        x3 = self.down3(x2)
        y = self.conv2(x2) + resize(x3, x2.shape[2:], self.align_corners)
        y = self.conv1(x1) + resize(y, x1.shape[2:], self.align_corners)
        y = resize(y, x.shape[2:], self.align_corners)
        return torch.mul(y, self.mid(x)) + self.branch1(x)


class GAUBlock(nn.Module):
    """Global attention upsample: ``conv2(low) * sigmoid(conv1(pool(high))) + upsample(high)``."""

    def __init__(self, in_channels: int, out_channels: int, align_corners: bool) -> None:
        super().__init__()
        self.align_corners = align_corners
        self.conv1 = nn.Sequential(GlobalAvgPool2d(), ConvBnRelu(out_channels, out_channels, 1, relu=False),
                                   nn.Sigmoid())
        self.conv2 = ConvBnRelu(in_channels, out_channels, 3)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """``x``: low-level map, ``y``: high-level (decoder) map."""
        return resize(y, x.shape[2:], self.align_corners) + torch.mul(self.conv2(x), self.conv1(y))


class PANHead(BaseDecodeHead):
    """PAN decoder over 4 pyramid levels (fine to coarse): FPA on the last, GAUs down to the first.

    Args:
        in_channels: channels of the 4 levels (ResNet-50: 256, 512, 1024, 2048).
        channels: decoder width (smp's ``decoder_channels``, 32).
        **kwargs: see :class:`BaseDecodeHead` (smp has no dropout: ``dropout_ratio`` defaults to 0).
    """

    def __init__(self, in_channels: Sequence[int], channels: int = 32, **kwargs) -> None:
        kwargs.setdefault("dropout_ratio", 0.0)
        super().__init__(in_channels, channels, **kwargs)
        if len(self.in_channels) != 4:
            raise ValueError(f"PANHead: needs 4 input levels, got in_channels {self.in_channels}")
        c1, c2, c3, c4 = self.in_channels
        ac = self.align_corners
        self.fpa = FPABlock(c4, channels, ac)
        self.gau3 = GAUBlock(c3, channels, ac)
        self.gau2 = GAUBlock(c2, channels, ac)
        self.gau1 = GAUBlock(c1, channels, ac)
        self.conv_seg = nn.Conv2d(channels, self.num_classes, kernel_size=3, padding=1)
        nn.init.normal_(self.conv_seg.weight, mean=0.0, std=0.01)
        nn.init.zeros_(self.conv_seg.bias)

    def forward(self, inputs: Sequence[Tensor]) -> Tensor:
        """Logits at the resolution of the finest level."""
        f1, f2, f3, f4 = self._select_all(inputs)
        x = self.gau1(f1, self.gau2(f2, self.gau3(f3, self.fpa(f4))))
        return self.cls_seg(x)
