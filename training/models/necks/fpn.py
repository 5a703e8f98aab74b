"""Feature Pyramid Network neck (MMSeg ``FPN`` with its semantic-FPN config: no norm, no activation)."""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from ..layers import ConvModule


class FPN(nn.Module):
    """FPN (Lin et al., 2017) as MMSeg configures it for semantic FPN: ``num_outs == len(in_channels)``.

    1x1 ``lateral_convs`` and 3x3 ``fpn_convs`` are plain convs with bias (``norm_cfg=None``, ``act_cfg=None``, keys
    ``lateral_convs.{i}.conv.{weight,bias}``); the top-down pass upsamples with nearest interpolation to the next
    level's size. Weights start Xavier-uniform with zero bias, as MMSeg's ``init_cfg``.

    Args:
        in_channels: channels per input level, finest first.
        out_channels: channels of every output level.
    """

    def __init__(self, in_channels: Sequence[int], out_channels: int) -> None:
        super().__init__()
        if not in_channels or out_channels < 1:
            raise ValueError(f"FPN: need in_channels and out_channels >= 1, got {tuple(in_channels)}, {out_channels}")
        self.in_channels = tuple(in_channels)
        self.out_channels = out_channels
        self.lateral_convs = nn.ModuleList(ConvModule(c, out_channels, 1, norm=False, act=None) for c in in_channels)
        self.fpn_convs = nn.ModuleList(
            ConvModule(out_channels, out_channels, 3, padding=1, norm=False, act=None) for _ in in_channels
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, inputs: Sequence[Tensor]) -> tuple[Tensor, ...]:
        """One ``[B, out_channels, h_i, w_i]`` map per input level."""
        if len(inputs) != len(self.in_channels):
            raise ValueError(f"FPN: expected {len(self.in_channels)} feature maps, got {len(inputs)}")
        laterals = [conv(x) for conv, x in zip(self.lateral_convs, inputs)]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + F.interpolate(laterals[i], size=laterals[i - 1].shape[2:])
        return tuple(conv(lat) for conv, lat in zip(self.fpn_convs, laterals))
