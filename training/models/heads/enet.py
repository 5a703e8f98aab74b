"""ENet decoder (Paszke et al. 2016): stages 4 and 5 with max-unpooling, then a transposed-conv classifier.

As in the authors' Torch code (e-lab/ENet-training, ``decoder.lua``): the decoder uses ReLU (not PReLU) and no
dropout; an upsampling bottleneck adds a main branch (1x1 conv without bias, BN, max-unpool with the switches
of the matching encoder pool) to an extension branch (1x1 to ``out / 4``, BN, ReLU; 3x3 stride-2 transposed conv
with bias, BN, ReLU; 1x1 to ``out``, BN), then ReLU; a regular decoder bottleneck has a 3x3 conv instead and an
identity main branch. Stage 4: upsampling 128 -> 64 (switches of bottleneck 2.0, i.e. of the stage-1 map) and 2
regular; stage 5: upsampling 64 -> 16 (switches of bottleneck 1.0, i.e. of the initial block's map) and 1 regular;
then ``conv_seg`` is the paper's "fullconv": a 2x2 stride-2 transposed conv (with bias) to full resolution.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ..backbones.enet import bn
from .base import BaseDecodeHead
from .unpool import unpool_like


class UpsamplingBottleneck(nn.Module):
    """ENet decoder bottleneck; with ``upsample`` it doubles H, W (``forward(x, skip)`` unpools to ``skip``)."""

    def __init__(self, in_channels: int, out_channels: int, upsample: bool = False) -> None:
        super().__init__()
        if not upsample and in_channels != out_channels:
            raise ValueError(f"ENet decoder bottleneck: {in_channels} -> {out_channels} needs upsample=True")
        internal = max(1, out_channels // 4)
        if upsample:
            mid: nn.Module = nn.ConvTranspose2d(internal, internal, 3, stride=2, padding=1, output_padding=1)
            self.main: nn.Module | None = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False),
                                                        bn(out_channels))
        else:
            mid = nn.Conv2d(internal, internal, 3, padding=1)
            self.main = None
        self.ext = nn.Sequential(
            nn.Conv2d(in_channels, internal, 1, bias=False), bn(internal), nn.ReLU(inplace=True),
            mid, bn(internal), nn.ReLU(inplace=True),
            nn.Conv2d(internal, out_channels, 1, bias=False), bn(out_channels),
        )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: Tensor, skip: Tensor | None = None) -> Tensor:
        """Residual forward; an upsampling block unpools its main branch with the switches of ``skip``."""
        main = x if self.main is None else unpool_like(self.main(x), skip)
        return self.act(main + self.ext(x))


class ENetHead(BaseDecodeHead):
    """ENet decoder over the encoder's (stride-2, stride-4, stride-8) maps; logits at full resolution.

    Args:
        in_channels: channels of the three inputs (16, 64, 128); stage 5 ends at ``in_channels[0]`` and stage 4
            at ``in_channels[1]`` channels (the unpooling switches need them).
        channels: must equal ``in_channels[0]`` (width of the last decoder map, input of the fullconv).
        depths: regular bottlenecks after the upsampling one in stages 4 and 5 (2, 1).
        **kwargs: see :class:`BaseDecodeHead` (``dropout_ratio`` before the classifier, 0 in ENet).
    """

    def __init__(self, in_channels: Sequence[int], channels: int, *, depths: Sequence[int] = (2, 1),
                 **kwargs) -> None:
        kwargs.setdefault("dropout_ratio", 0.0)
        super().__init__(in_channels, channels, **kwargs)
        if len(self.in_channels) != 3 or channels != self.in_channels[0] or len(depths) != 2:
            raise ValueError(f"ENetHead: need 3 inputs, channels == in_channels[0] and 2 depths, got "
                             f"{self.in_channels}, {channels}, {tuple(depths)}")
        c0, c1, c2 = self.in_channels
        self.stage4 = nn.ModuleList([UpsamplingBottleneck(c2, c1, upsample=True),
                                     *[UpsamplingBottleneck(c1, c1) for _ in range(depths[0])]])
        self.stage5 = nn.ModuleList([UpsamplingBottleneck(c1, c0, upsample=True),
                                     *[UpsamplingBottleneck(c0, c0) for _ in range(depths[1])]])
        # The paper's "fullconv" is the classifier: 2x2 stride-2 transposed conv from the stride-2 map.
        self.conv_seg = nn.ConvTranspose2d(channels, self.num_classes, kernel_size=2, stride=2)
        #: logits are twice the resolution of ``inputs[output_index]`` (the stride-2 initial-block map).
        self.upsample = 2

    def forward(self, inputs: Sequence[Tensor]) -> Tensor:
        """Full-resolution logits."""
        initial, stage1, x = self._select_all(inputs)
        for i, block in enumerate(self.stage4):
            x = block(x, stage1 if i == 0 else None)
        for i, block in enumerate(self.stage5):
            x = block(x, initial if i == 0 else None)
        return self.cls_seg(x)
