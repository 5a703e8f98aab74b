"""MobileNetV2 backbone laid out like MMSegmentation 1.x ``MobileNetV2`` (``mmseg/models/backbones``).

State-dict names: ``conv1.conv/bn`` (3x3 stride-2 stem), ``layer1..layer7`` of ``InvertedResidual`` blocks whose
``conv`` is a ``Sequential`` of mmcv ``ConvModule`` s: ``conv.0`` 1x1 expand (absent when expand_ratio is 1),
then the 3x3 depthwise conv, then the linear 1x1 projection (BN, no activation). Activations are ReLU6.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ..layers import ConvModule

# (expand_ratio, channels, num_blocks) per layer, as MMSeg's ``arch_settings``.
ARCH_SETTINGS: tuple[tuple[int, int, int], ...] = (
    (1, 16, 1), (6, 24, 2), (6, 32, 3), (6, 64, 4), (6, 96, 3), (6, 160, 3), (6, 320, 1),
)


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None, min_ratio: float = 0.9) -> int:
    """Round ``value`` to a multiple of ``divisor`` without going below ``min_ratio * value`` (MMSeg's helper)."""
    min_value = divisor if min_value is None else min_value
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    return new_value + divisor if new_value < min_ratio * value else new_value


class InvertedResidual(nn.Module):
    """MobileNetV2 block: [1x1 expand] -> 3x3 depthwise (strided, dilated) -> 1x1 linear, residual if shapes match."""

    def __init__(
        self, in_channels: int, out_channels: int, stride: int, expand_ratio: float, dilation: int = 1
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"InvertedResidual: stride must be 1 or 2, got {stride}")
        self.use_res_connect = stride == 1 and in_channels == out_channels
        hidden = int(round(in_channels * expand_ratio))
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvModule(in_channels, hidden, 1, act="relu6"))
        layers.append(
            ConvModule(hidden, hidden, 3, stride=stride, padding=dilation, dilation=dilation, groups=hidden,
                       act="relu6")
        )
        layers.append(ConvModule(hidden, out_channels, 1, act=None))
        self.conv = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """Block forward."""
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 (Sandler et al., 2018) returning a tuple of layer outputs (MMSeg layout and defaults).

    Args:
        widen_factor: channel multiplier (channels rounded with :func:`make_divisible` to multiples of 8).
        strides: stride of the first block of each of the 7 layers. MMSeg's default (1,2,2,2,1,2,1) gives output
            stride 32; its ``m-v2-d8`` configs use (1,2,2,1,1,1,1) with dilations (1,1,1,2,2,4,4).
        dilations: dilation of each layer. As in MMSeg, only the first block of a layer is dilated.
        out_indices: which layers (0..6) to return; MMSeg's (1, 2, 4, 6) gives 24/32/96/320 channels at width 1.
        in_channels: image channels.
    """

    #: layer index of each pyramid level (strides 4, 8, 16, 32 in the undilated network).
    level_indices: tuple[int, ...] = (1, 2, 4, 6)

    def __init__(
        self,
        widen_factor: float = 1.0,
        strides: Sequence[int] = (1, 2, 2, 2, 1, 2, 1),
        dilations: Sequence[int] = (1, 1, 1, 1, 1, 1, 1),
        out_indices: Sequence[int] = (1, 2, 4, 6),
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        n = len(ARCH_SETTINGS)
        if len(strides) != n or len(dilations) != n:
            raise ValueError(f"MobileNetV2: strides and dilations need {n} entries, got {tuple(strides)}, "
                             f"{tuple(dilations)}")
        if not out_indices or any(not 0 <= i < n for i in out_indices):
            raise ValueError(f"MobileNetV2: out_indices must be a non-empty subset of 0..6, got {tuple(out_indices)}")
        if widen_factor <= 0:
            raise ValueError(f"MobileNetV2: widen_factor must be > 0, got {widen_factor}")
        self.widen_factor = widen_factor
        self.width_scale = widen_factor
        self.in_channels = in_channels
        self.strides = tuple(strides)
        self.dilations = tuple(dilations)
        self.out_indices = tuple(out_indices)
        channels = make_divisible(32 * widen_factor, 8)
        self.conv1 = ConvModule(in_channels, channels, 3, stride=2, padding=1, act="relu6")
        layer_channels, layer_strides, stride = [], [], 2
        for i, (expand, ch, num_blocks) in enumerate(ARCH_SETTINGS):
            out = make_divisible(ch * widen_factor, 8)
            blocks = [
                InvertedResidual(channels if b == 0 else out, out, strides[i] if b == 0 else 1, expand,
                                 dilation=dilations[i] if b == 0 else 1)
                for b in range(num_blocks)
            ]
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            channels = out
            stride *= strides[i]
            layer_channels.append(out)
            layer_strides.append(stride)
        self.out_channels: tuple[int, ...] = tuple(layer_channels[i] for i in self.out_indices)
        self.out_strides: tuple[int, ...] = tuple(layer_strides[i] for i in self.out_indices)
        self.output_stride: int = stride
        for m in self.modules():  # MMSeg init_cfg: Kaiming for convs, constant 1 for BN
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        """Return the feature maps of the layers in ``out_indices``."""
        x = self.conv1(x)
        outs = []
        for i in range(len(ARCH_SETTINGS)):
            x = getattr(self, f"layer{i + 1}")(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)
