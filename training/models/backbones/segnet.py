"""SegNet's encoder (Badrinarayanan et al. 2017): the 13 conv layers of VGG16 with BatchNorm, pooling switches kept.

Five stages of 3x3 ConvModules (conv without bias, BN, ReLU) with 64, 128, 256, 512, 512 channels (2, 2, 3, 3, 3
convs), each followed by a 2x2 stride-2 max-pool whose indices the decoder uses; no fully connected layers.
(The original Caffe model gives its convs a bias before BN; a bias right before BN is redundant and left out.)

The encoder returns each stage's pre-pool map (strides 1, 2, 4, 8, 16: the decoder takes the max-pool switches
from them, see :mod:`training.models.heads.unpool`) and the last pooled map (stride 32). Any H, W works: the decoder
unpools to the pre-pool size, as ``MaxUnpool2d(output_size=...)`` does.

State-dict names: ``stages.{i}.{j}.conv.weight`` / ``.bn.*``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from ..layers import ConvModule

VGG16_CHANNELS: tuple[int, ...] = (64, 128, 256, 512, 512)
VGG16_DEPTHS: tuple[int, ...] = (2, 2, 3, 3, 3)


class VGGEncoder(nn.Module):
    """VGG-BN encoder returning the pre-pool map of every stage and the final pooled map.

    Args:
        in_channels: image channels.
        channels: per-stage widths (VGG16: 64, 128, 256, 512, 512).
        depths: convs per stage (VGG16: 2, 2, 3, 3, 3).
        out_indices: which of the ``len(channels) + 1`` maps (pre-pool of stage 0..n-1, then the pooled top) to
            return; SegNet's decoder needs all of them.
    """

    def __init__(
        self,
        in_channels: int = 3,
        channels: Sequence[int] = VGG16_CHANNELS,
        depths: Sequence[int] = VGG16_DEPTHS,
        out_indices: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if not channels or len(channels) != len(depths) or any(d < 1 for d in depths):
            raise ValueError(f"VGGEncoder: channels and depths need the same non-zero length and depths >= 1, "
                             f"got {tuple(channels)}, {tuple(depths)}")
        n = len(channels)
        self.in_channels = in_channels
        self.width_scale = channels[0] / 64
        self.depths = tuple(depths)
        self.stages = nn.ModuleList()
        ch = in_channels
        for width, depth in zip(channels, depths):
            self.stages.append(nn.Sequential(*[ConvModule(ch if j == 0 else width, width, 3, padding=1)
                                               for j in range(depth)]))
            ch = width
        self.out_indices: tuple[int, ...] = tuple(range(n + 1) if out_indices is None else out_indices)
        if not self.out_indices or any(not 0 <= i <= n for i in self.out_indices):
            raise ValueError(f"VGGEncoder: out_indices must be a non-empty subset of 0..{n}, got {self.out_indices}")
        layer_channels = (*channels, channels[-1])
        layer_strides = tuple(2**i for i in range(n + 1))
        self.out_channels: tuple[int, ...] = tuple(layer_channels[i] for i in self.out_indices)
        self.out_strides: tuple[int, ...] = tuple(layer_strides[i] for i in self.out_indices)
        self.output_stride: int = layer_strides[-1]
        #: layer of each pyramid level (strides 4, 8, 16, 32) that exists.
        self.level_indices: tuple[int, ...] = tuple(layer_strides.index(s) for s in (4, 8, 16, 32)
                                                    if s in layer_strides)

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        """Pre-pool maps of every stage, then the last pooled map (those in ``out_indices``)."""
        outs = []
        for stage in self.stages:
            x = stage(x)
            outs.append(x)
            x = F.max_pool2d(x, kernel_size=2, stride=2)
        outs.append(x)
        return tuple(outs[i] for i in self.out_indices)
