"""STDC networks (Fan et al., 2021) laid out like MMSegmentation 1.x ``STDCNet`` / ``STDCContextPathNet``.

:class:`STDCNet` is the plain backbone (STDC1 / STDC2, MMSeg's ``bottleneck_type='cat'``, 4 convs per module):
``stages.0`` and ``stages.1`` are strided ``ConvModule`` s (strides 2, 4), ``stages.2..4`` sequences of
:class:`STDCModule` (strides 8, 16, 32); like MMSeg it returns stages 2..4. :class:`STDCContextPathNet` wraps it
(``backbone.*``) with BiSeNet's attention refinement (``arms``, ``convs``, ``conv_avg``) and STDC's feature
fusion module (``ffm``), returning the four maps MMSeg's STDC heads read.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..layers import ConvModule, GlobalAvgPool2d, global_avg_pool
from .bisenetv1 import AttentionRefinementModule, upsample_nearest
from .bisenetv2 import AvgPool3x3S2

#: strides of the STDC modules of stages 2, 3 and 4, per variant (MMSeg's ``arch_settings``).
ARCH: dict[str, tuple[tuple[int, ...], ...]] = {
    "stdc1": ((2, 1), (2, 1), (2, 1)),
    "stdc2": ((2, 1, 1, 1), (2, 1, 1, 1, 1), (2, 1, 1)),
}


class STDCModule(nn.Module):
    """Short-term dense concatenation module (``fusion_type='cat'``): a 1x1 conv to ``out/2`` then 3x3 convs
    halving the width, all outputs concatenated; when strided, a depthwise 3x3/2 ``downsample`` feeds the second
    conv and the first output is average-pooled (``skip``)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, num_convs: int = 4) -> None:
        super().__init__()
        if num_convs < 2 or stride not in (1, 2):
            raise ValueError(f"STDCModule: need num_convs >= 2 and stride 1 or 2, got {num_convs}, {stride}")
        if out_channels % 2 ** (num_convs - 1):
            raise ValueError(f"STDCModule: out_channels {out_channels} must be divisible by {2 ** (num_convs - 1)}")
        self.with_downsample = stride == 2
        half = out_channels // 2
        layers = [ConvModule(in_channels, half, 1)]
        for i in range(1, num_convs):
            out_factor = 2 ** (i + 1) if i != num_convs - 1 else 2**i
            layers.append(ConvModule(out_channels // 2**i, out_channels // out_factor, 3, padding=1))
        self.layers = nn.ModuleList(layers)
        if self.with_downsample:
            self.downsample = ConvModule(half, half, 3, stride=2, padding=1, groups=half, act=None)
            self.skip = AvgPool3x3S2()

    def forward(self, x: Tensor) -> Tensor:
        """Concatenation of every conv's output (``out_channels``)."""
        x0 = self.layers[0](x)
        x = self.downsample(x0) if self.with_downsample else x0
        outs = [self.skip(x0) if self.with_downsample else x0]
        for layer in self.layers[1:]:
            x = layer(x)
            outs.append(x)
        return torch.cat(outs, dim=1)


class STDCNet(nn.Module):
    """STDC1 / STDC2 backbone returning stages 2..4 (strides 8, 16, 32; 256, 512, 1024 channels at full width).

    Args:
        variant: ``"stdc1"`` or ``"stdc2"`` (MMSeg's ``STDCNet1`` / ``STDCNet2``).
        in_channels: image channels.
        channels: widths of the 5 stages (MMSeg: (32, 64, 256, 512, 1024)).
        num_convs: convs per STDC module (4).
    """

    #: stage index of each pyramid level (strides 4, 8, 16, 32); stage 1 (stride 4) is not returned, as in MMSeg.
    level_indices: tuple[int, ...] = (1, 2, 3, 4)

    def __init__(
        self,
        variant: str = "stdc1",
        in_channels: int = 3,
        channels: Sequence[int] = (32, 64, 256, 512, 1024),
        num_convs: int = 4,
    ) -> None:
        super().__init__()
        if variant not in ARCH:
            raise ValueError(f"STDCNet: unknown variant {variant!r}; choose one of {sorted(ARCH)}")
        channels = tuple(channels)
        if len(channels) != 5:
            raise ValueError(f"STDCNet: channels needs 5 entries, got {channels}")
        self.variant = variant
        self.in_channels = in_channels
        stages: list[nn.Module] = [
            ConvModule(in_channels, channels[0], 3, stride=2, padding=1),
            ConvModule(channels[0], channels[1], 3, stride=2, padding=1),
        ]
        for i, strides in enumerate(ARCH[variant]):
            cin, cout = channels[i + 1], channels[i + 2]
            stages.append(nn.Sequential(*[STDCModule(cin if j == 0 else cout, cout, s, num_convs)
                                          for j, s in enumerate(strides)]))
        self.stages = nn.ModuleList(stages)
        self.out_indices: tuple[int, ...] = (2, 3, 4)
        self.out_channels: tuple[int, ...] = channels[2:]
        self.out_strides: tuple[int, ...] = (8, 16, 32)
        self.output_stride = 32
        self.width_scale: float = channels[-1] / 1024

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        """Maps of stages 2, 3 and 4."""
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)


class FeatureFusionModule(nn.Module):
    """STDC's FFM: concat -> 1x1 ``conv0`` (BN, ReLU); reweighted by a squeeze-excitation ``attention`` (mean,
    1x1 to ``out/scale_factor`` + ReLU, 1x1 back, sigmoid; bias-free convs without norm), plus itself."""

    def __init__(self, in_channels: int, out_channels: int, scale_factor: int = 4) -> None:
        super().__init__()
        mid = out_channels // scale_factor
        self.conv0 = ConvModule(in_channels, out_channels, 1)
        squeeze, excite = ConvModule(out_channels, mid, 1, norm=False), ConvModule(mid, out_channels, 1, norm=False,
                                                                                  act=None)
        for m in (squeeze, excite):  # mmcv ConvModule(norm_cfg=None, bias=False)
            m.conv.register_parameter("bias", None)
        self.attention = nn.Sequential(GlobalAvgPool2d(), squeeze, excite, nn.Sigmoid())

    def forward(self, spatial: Tensor, context: Tensor) -> Tensor:
        """Fused map with ``out_channels``."""
        x = self.conv0(torch.cat([spatial, context], dim=1))
        return x * self.attention(x) + x


class STDCContextPathNet(nn.Module):
    """STDC backbone + context path, returning MMSeg's 4 maps: ``(stage2 [s8], arm16 [s16], arm8 [s8], fused [s8])``
    (the STDC boundary head reads the first, the FCN auxiliary heads the next two, the decode head the last).

    Args:
        backbone: an :class:`STDCNet` (3 maps at strides 8, 16, 32).
        out_channels: width of the ARMs and context convs (128).
        fusion_channels: width of the fused map (256); the FFM reads stage 2 + the stride-8 context.
        scale_factor: squeeze ratio of the FFM's attention (4).
    """

    #: output index per pyramid level (strides 4, 8, 16, 32; -1: none).
    level_indices: tuple[int, ...] = (-1, 3, 1, -1)

    def __init__(self, backbone: nn.Module, out_channels: int = 128, fusion_channels: int = 256,
                 scale_factor: int = 4) -> None:
        super().__init__()
        if len(backbone.out_channels) != 3:
            raise ValueError(f"STDCContextPathNet: the backbone must return 3 maps, got {backbone.out_channels}")
        c8, c16, c32 = backbone.out_channels
        self.backbone = backbone
        self.arms = nn.ModuleList([AttentionRefinementModule(c, out_channels) for c in (c32, c16)])
        self.convs = nn.ModuleList([ConvModule(out_channels, out_channels, 3, padding=1) for _ in range(2)])
        self.conv_avg = ConvModule(c32, out_channels, 1)
        self.ffm = FeatureFusionModule(c8 + out_channels, fusion_channels, scale_factor)
        self.in_channels = backbone.in_channels
        self.out_channels: tuple[int, ...] = (c8, out_channels, out_channels, fusion_channels)
        self.out_strides: tuple[int, ...] = (8, 16, 8, 8)
        self.out_indices: tuple[int, ...] = (0, 1, 2, 3)
        self.output_stride = 8
        self.width_scale: float = backbone.width_scale

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(stage-2 map, context at stride 16, context at stride 8, fused map)."""
        x8, x16, x32 = self.backbone(x)
        # MMSeg resizes the 1x1 global context to x32's size (nearest); broadcasting the sum is the same.
        up = self.conv_avg(global_avg_pool(x32))
        context16 = self.convs[0](upsample_nearest(self.arms[0](x32) + up, x16))
        context8 = self.convs[1](upsample_nearest(self.arms[1](x16) + context16, x8))
        return x8, context16, context8, self.ffm(x8, context8)
