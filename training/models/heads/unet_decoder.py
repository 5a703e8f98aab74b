"""U-Net decoder over a ResNet encoder, as segmentation_models.pytorch's ``UnetDecoder`` + ``SegmentationHead``.

Decoder block ``i``: upsample the coarser map (nearest) to the size of the next finer encoder map, concatenate that
map (the skip), then two 3x3 conv (no bias) + BN + ReLU. On a ResNet the five blocks read layer4 (stride 32) and
take the skips layer3, layer2, layer1 and the stem's stride-2 map (before the max-pool); the fifth block has no
skip and doubles the resolution (stride 1 for inputs that are multiples of 32). smp's widths are
``decoder_channels=(256, 128, 64, 32, 16)``, and its classifier is a 3x3 conv (``kernel_size=3``).

State-dict names are smp's with ``decoder.`` -> ``decode_head.`` (``blocks.{i}.conv{1,2}.{0,1}``: conv, BN) and
``segmentation_head.0`` -> ``decode_head.conv_seg``, so smp ``Unet`` checkpoints load after that rename (its ResNet
encoder is our v1b ResNet with ``encoder.`` -> ``backbone.``). Initialisation is smp's: Kaiming-uniform (fan_in,
ReLU) decoder convs, BN 1/0, Xavier-uniform classifier with zero bias.

Sizes: each upsampled map is resized to its skip's size, so any H, W work; the last block doubles exactly. For
multiples of 32 this is smp's computation (smp 0.6 resizes the last block to the input size instead, which is the
same there and which smp requires).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..layers import BN_EPS
from .base import BaseDecodeHead

#: segmentation_models.pytorch's default decoder widths (coarse to fine).
SMP_DECODER_CHANNELS = (256, 128, 64, 32, 16)


def conv3x3_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    """smp's ``Conv2dReLU`` (3x3, BN): conv without bias (``.0``), BN (``.1``), ReLU (``.2``)."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
                         nn.BatchNorm2d(out_channels, eps=BN_EPS), nn.ReLU(inplace=True))


class UNetDecoderBlock(nn.Module):
    """Upsample x2 (nearest, to the skip's size), concatenate the skip, two 3x3 conv-BN-ReLU."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = conv3x3_bn_relu(in_channels + skip_channels, out_channels)
        self.conv2 = conv3x3_bn_relu(out_channels, out_channels)

    def forward(self, x: Tensor, skip: Tensor | None = None) -> Tensor:
        """The block's output at the skip's resolution (twice x's without a skip)."""
        if skip is None:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        else:
            x = torch.cat([F.interpolate(x, size=skip.shape[-2:], mode="nearest"), skip], dim=1)
        return self.conv2(self.conv1(x))


class UNetDecoderHead(BaseDecodeHead):
    """U-Net decoder over encoder maps ordered fine to coarse (stem, layer1, ..., layer4).

    Args:
        in_channels: channels of those maps (ResNet-18/34: 64, 64, 128, 256, 512).
        decoder_channels: output width of each block, coarse to fine (one per input); the last one is the input
            of ``conv_seg``.
        kernel_size: of ``conv_seg`` (smp's segmentation head: 3).
        **kwargs: see :class:`BaseDecodeHead` (smp has no dropout: ``dropout_ratio`` defaults to 0).

    Block ``i`` reads block ``i - 1``'s output (block 0: the coarsest input) and the skip ``inputs[-2 - i]``; the last
    block has no skip and doubles the resolution of input 0, so the logits have twice its resolution.
    """

    def __init__(self, in_channels: Sequence[int], decoder_channels: Sequence[int] = SMP_DECODER_CHANNELS,
                 kernel_size: int = 3, **kwargs) -> None:
        kwargs.setdefault("dropout_ratio", 0.0)
        decoder_channels = tuple(int(c) for c in decoder_channels)
        if len(decoder_channels) != len(in_channels) or min(decoder_channels, default=0) < 1:
            raise ValueError(f"UNetDecoderHead: decoder_channels {decoder_channels} must give one positive width per "
                             f"encoder map ({len(in_channels)})")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"UNetDecoderHead: kernel_size must be odd and >= 1, got {kernel_size}")
        super().__init__(in_channels, decoder_channels[-1], **kwargs)
        coarse_to_fine = list(self.in_channels)[::-1]
        ins = [coarse_to_fine[0], *decoder_channels[:-1]]
        skips = [*coarse_to_fine[1:], 0]
        self.decoder_channels = decoder_channels
        self.blocks = nn.ModuleList(UNetDecoderBlock(i, s, o) for i, s, o in zip(ins, skips, decoder_channels))
        self.conv_seg = nn.Conv2d(self.channels, self.num_classes, kernel_size, padding=kernel_size // 2)
        for m in self.blocks.modules():  # smp's initialize_decoder / initialize_head
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, mode="fan_in", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.xavier_uniform_(self.conv_seg.weight)
        nn.init.zeros_(self.conv_seg.bias)
        #: logits have twice the resolution of ``inputs[output_index]`` (the finest input, the stem's map).
        self.upsample = 2

    def forward(self, inputs: Sequence[Tensor]) -> Tensor:
        """Logits at twice the resolution of the finest input."""
        feats = self._select_all(inputs)[::-1]
        x, skips = feats[0], feats[1:]
        for i, block in enumerate(self.blocks):
            x = block(x, skips[i] if i < len(skips) else None)
        return self.cls_seg(x)
