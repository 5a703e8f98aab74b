"""LinkNet decoder (Chaurasia & Culurciello 2017) as segmentation_models.pytorch's ``LinknetDecoder``.

Decoder block ``m -> n``: 1x1 conv ``m -> m/4`` (no bias), BN, ReLU; 4x4 stride-2 transposed conv ``m/4 -> m/4``
(with bias), BN, ReLU; 1x1 conv ``m/4 -> n`` (no bias), BN, ReLU; then the encoder map of that resolution is
added. On a ResNet the blocks run 512 -> 256 (+ layer3), 256 -> 128 (+ layer2), 128 -> 64 (+ layer1),
64 -> 64 (+ the stem's stride-2 map, before the max-pool) and 64 -> 32 (no skip), then a 1x1 ``conv_seg``:
logits at full resolution.

State-dict names are smp's with ``decoder.`` -> ``decode_head.`` (``blocks.{i}.block.{0,1,2}.{0,1}``) and
``segmentation_head.0`` -> ``decode_head.conv_seg``, so smp LinkNet checkpoints load after that rename (its ResNet
encoder is our v1b ResNet with ``encoder.`` -> ``backbone.``).

Sizes: an upsampled map is cropped to its skip's size, so inputs of any H, W work (ResNet strides round up, the
transposed conv doubles exactly); for multiples of 32 nothing is cropped and the result is smp's.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ..layers import BN_EPS
from .base import BaseDecodeHead


def conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    """smp's ``Conv2dReLU`` (1x1): conv without bias (``.0``), BN (``.1``), ReLU (``.2``)."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False),
                         nn.BatchNorm2d(out_channels, eps=BN_EPS), nn.ReLU(inplace=True))


class LinkNetBlock(nn.Module):
    """1x1 reduce -> transposed conv x2 -> 1x1 expand, then ``+ skip`` (cropped to the skip's size)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        mid = max(1, in_channels // 4)
        self.block = nn.Sequential(
            conv_bn_relu(in_channels, mid),
            nn.Sequential(nn.ConvTranspose2d(mid, mid, kernel_size=4, stride=2, padding=1),
                          nn.BatchNorm2d(mid, eps=BN_EPS), nn.ReLU(inplace=True)),
            conv_bn_relu(mid, out_channels),
        )

    def forward(self, x: Tensor, skip: Tensor | None = None) -> Tensor:
        """Upsample x2 (and add the skip)."""
        x = self.block(x)
        if skip is None:
            return x
        return x[:, :, : skip.shape[2], : skip.shape[3]] + skip


class LinkNetHead(BaseDecodeHead):
    """LinkNet decoder over the encoder maps ordered fine to coarse (stem, layer1, ..., layer4).

    Args:
        in_channels: channels of those maps (ResNet-18/34: 64, 64, 128, 256, 512).
        channels: output width of the last block (smp's ``prefinal_channels``, 32); input of ``conv_seg``.
        **kwargs: see :class:`BaseDecodeHead` (smp has no dropout: ``dropout_ratio`` defaults to 0).

    One block per input; block ``i`` maps the coarser width to ``in_channels[i - 1]`` and adds input ``i - 1``;
    the last block (``-> channels``) has no skip and doubles the resolution of input 0.
    """

    def __init__(self, in_channels: Sequence[int], channels: int = 32, **kwargs) -> None:
        kwargs.setdefault("dropout_ratio", 0.0)
        super().__init__(in_channels, channels, **kwargs)
        widths = list(self.in_channels)[::-1] + [channels]
        self.blocks = nn.ModuleList(LinkNetBlock(widths[i], widths[i + 1]) for i in range(len(self.in_channels)))
        #: logits have twice the resolution of ``inputs[output_index]`` (the finest input, the stem's map).
        self.upsample = 2

    def forward(self, inputs: Sequence[Tensor]) -> Tensor:
        """Logits at twice the resolution of the finest input."""
        feats = self._select_all(inputs)[::-1]
        x = feats[0]
        skips = feats[1:]
        for i, block in enumerate(self.blocks):
            x = block(x, skips[i] if i < len(skips) else None)
        return self.cls_seg(x)
