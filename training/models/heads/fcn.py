"""FCN head (MMSeg ``FCNHead``): a few convs, optionally concatenated with the input, then ``conv_seg``."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..layers import ConvModule
from .base import BaseDecodeHead


class FCNHead(BaseDecodeHead):
    """Fully convolutional head; also the usual auxiliary head (``num_convs=1, concat_input=False``).

    Args:
        num_convs: number of ``ConvModule`` layers in ``convs`` (0 means identity; then in_channels == channels).
        kernel_size: kernel of those convs (and of ``conv_cat``).
        concat_input: concatenate the input with the conv output and fuse them with ``conv_cat``.
        dilation: dilation of the convs in ``convs``.
        **kwargs: see :class:`BaseDecodeHead`.
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        *,
        num_convs: int = 2,
        kernel_size: int = 3,
        concat_input: bool = True,
        dilation: int = 1,
        **kwargs,
    ) -> None:
        super().__init__(in_channels, channels, **kwargs)
        if num_convs < 0 or dilation < 1:
            raise ValueError(f"FCNHead: need num_convs >= 0 and dilation >= 1, got {num_convs}, {dilation}")
        if num_convs == 0 and in_channels != channels:
            raise ValueError(f"FCNHead: num_convs=0 needs in_channels == channels, got {in_channels} != {channels}")
        self.num_convs = num_convs
        self.kernel_size = kernel_size
        self.concat_input = concat_input
        padding = (kernel_size // 2) * dilation
        if num_convs == 0:
            self.convs: nn.Module = nn.Identity()
        else:
            self.convs = nn.Sequential(
                *[
                    ConvModule(in_channels if i == 0 else channels, channels, kernel_size, padding=padding,
                               dilation=dilation)
                    for i in range(num_convs)
                ]
            )
        if concat_input:
            self.conv_cat = ConvModule(in_channels + channels, channels, kernel_size, padding=kernel_size // 2)

    def forward(self, inputs: Sequence[Tensor]) -> Tensor:
        """Logits at the resolution of the selected feature map."""
        x = self._select(inputs)
        feat = self.convs(x)
        if self.concat_input:
            feat = self.conv_cat(torch.cat([x, feat], dim=1))
        return self.cls_seg(feat)

