"""SegNet decoder (Badrinarayanan et al. 2017): the encoder mirrored, upsampling by max-unpooling.

Each decoder stage unpools with the switches of the matching encoder stage (its pre-pool map, see
:mod:`.unpool`), then runs as many 3x3 ConvModules (conv, BN, ReLU) as the encoder stage had; the last conv of a
stage narrows to the next stage's width. The first encoder stage's mirror ends in the classifier: ``conv_seg`` is a
3x3 conv (with bias, no BN) as SegNet's last decoder layer (``conv1_1_D`` of the authors' Caffe model), so the
decoder of VGG16 is 512x3 | 512, 512, 256 | 256, 256, 128 | 128, 64 | 64, then 3x3 -> classes. Logits at stride 1.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ..layers import ConvModule
from .base import BaseDecodeHead
from .unpool import unpool_like


class SegNetHead(BaseDecodeHead):
    """Mirrored SegNet decoder over (pre-pool map of each encoder stage..., pooled top map).

    Args:
        in_channels: channels of the encoder's outputs: one pre-pool map per stage, then the pooled top.
        channels: width of the last decoder map, must equal ``in_channels[0]`` (64 for VGG16).
        depths: convs of each encoder stage (VGG16: 2, 2, 3, 3, 3); decoder stage ``i`` mirrors stage ``i``
            (the first one has one conv less: ``conv_seg`` takes its place).
        **kwargs: see :class:`BaseDecodeHead` (SegNet has no dropout: ``dropout_ratio`` defaults to 0).
    """

    def __init__(self, in_channels: Sequence[int], channels: int, *, depths: Sequence[int] = (2, 2, 3, 3, 3),
                 **kwargs) -> None:
        kwargs.setdefault("dropout_ratio", 0.0)
        super().__init__(in_channels, channels, **kwargs)
        widths = self.in_channels[:-1]
        if len(depths) != len(widths) or channels != widths[0] or any(d < 1 for d in depths):
            raise ValueError(f"SegNetHead: need one depth >= 1 per encoder stage and channels == in_channels[0], "
                             f"got in_channels {self.in_channels}, channels {channels}, depths {tuple(depths)}")
        self.depths = tuple(depths)
        self.stages = nn.ModuleList()
        for i, (width, depth) in enumerate(zip(widths, depths)):
            out = widths[i - 1] if i > 0 else width
            n = depth if i > 0 else depth - 1
            self.stages.append(nn.Sequential(*[ConvModule(width, out if j == n - 1 else width, 3, padding=1)
                                               for j in range(n)]))
        self.conv_seg = nn.Conv2d(channels, self.num_classes, kernel_size=3, padding=1)
        nn.init.normal_(self.conv_seg.weight, mean=0.0, std=0.01)
        nn.init.zeros_(self.conv_seg.bias)

    def forward(self, inputs: Sequence[Tensor]) -> Tensor:
        """Logits at the resolution of the first encoder stage (the input's)."""
        *skips, x = self._select_all(inputs)
        for i in reversed(range(len(self.stages))):
            x = self.stages[i](unpool_like(x, skips[i]))
        return self.cls_seg(x)
