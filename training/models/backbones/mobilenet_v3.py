"""MobileNetV3-Large/Small laid out like MMSegmentation 1.x ``MobileNetV3`` (``mmseg/models/backbones``).

State-dict names: ``layer0`` (3x3 stride-2 stem, ``conv``/``bn``), ``layer1..layerN`` of ``InvertedResidual`` blocks
with ``expand_conv`` (absent when the block does not widen), ``depthwise_conv``, ``se`` (``conv1``/``conv2`` with
biases: ReLU then hard sigmoid) and ``linear_conv`` (BN, no activation), then a last 1x1 ``ConvModule``
(``layer16`` on Large, 960 channels; ``layer12`` on Small, 576).

Output stride: MMSeg always builds the "d8" network (the stride-2 depthwise convs of the last two stages become
stride 1 with dilation 2, then 4, for every block from there on); ``output_stride=16`` dilates only the last
stage (torchvision's ``mobilenet_v3_large(dilated=True)``), 32 keeps the classification network.

Padding: MMSeg's stride-2 convs use mmcv's ``Conv2dAdaptivePadding`` (TensorFlow "same": for an even input the
extra row/column goes at the bottom/right); torchvision pads ``(k - 1) // 2`` on every side
(``adaptive_padding=False``). Both give ``ceil(H / 2)`` rows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from ..layers import global_avg_pool
from .mobilenet_v2 import make_divisible

# (kernel, mid channels, out channels, with SE, activation, stride) per block, as MMSeg's ``arch_settings``.
ARCH_SETTINGS: dict[str, tuple[tuple[int, int, int, bool, str, int], ...]] = {
    "small": (
        (3, 16, 16, True, "relu", 2), (3, 72, 24, False, "relu", 2), (3, 88, 24, False, "relu", 1),
        (5, 96, 40, True, "hswish", 2), (5, 240, 40, True, "hswish", 1), (5, 240, 40, True, "hswish", 1),
        (5, 120, 48, True, "hswish", 1), (5, 144, 48, True, "hswish", 1), (5, 288, 96, True, "hswish", 2),
        (5, 576, 96, True, "hswish", 1), (5, 576, 96, True, "hswish", 1),
    ),
    "large": (
        (3, 16, 16, False, "relu", 1), (3, 64, 24, False, "relu", 2), (3, 72, 24, False, "relu", 1),
        (5, 72, 40, True, "relu", 2), (5, 120, 40, True, "relu", 1), (5, 120, 40, True, "relu", 1),
        (3, 240, 80, False, "hswish", 2), (3, 200, 80, False, "hswish", 1), (3, 184, 80, False, "hswish", 1),
        (3, 184, 80, False, "hswish", 1), (3, 480, 112, True, "hswish", 1), (3, 672, 112, True, "hswish", 1),
        (5, 672, 160, True, "hswish", 2), (5, 960, 160, True, "hswish", 1), (5, 960, 160, True, "hswish", 1),
    ),
}
LAST_CHANNELS = {"small": 576, "large": 960}
# First block (0-based) whose channels MMSeg divides by ``reduction_factor``.
_REDUCED_FROM = {"small": 8, "large": 12}
# MMSeg's lraspp configs: out_indices (0, 1, 12) on Small, (1, 3, 16) on Large.
DEFAULT_OUT_INDICES = {"small": (0, 1, 12), "large": (1, 3, 16)}
# Layer of each pyramid level (strides 4, 8, 16, 32 in the undilated network).
LEVEL_INDICES = {"small": (1, 3, 8, 12), "large": (3, 6, 12, 16)}


def _activation(name: str | None) -> nn.Module:
    acts = {"relu": lambda: nn.ReLU(inplace=True), "hswish": nn.Hardswish, "hsigmoid": nn.Hardsigmoid,
            "sigmoid": nn.Sigmoid}
    if name is None:
        return nn.Identity()
    if name not in acts:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(acts)} or None")
    return acts[name]()


class AdaptivePaddingConv2d(nn.Conv2d):
    """mmcv's ``Conv2dAdaptivePadding``: TensorFlow "same" padding computed from the input size in ``forward``.

    The pads are symbolic in ``torch.export``/ONNX (a ``Pad`` with computed amounts), so H and W stay dynamic.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, dilation: int = 1,
                 groups: int = 1, bias: bool = True) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, 0, dilation, groups, bias)
        if (kernel_size - 1) * dilation + 1 < stride:
            raise ValueError(f"AdaptivePaddingConv2d: kernel {kernel_size} (dilation {dilation}) smaller than "
                             f"stride {stride}")

    def forward(self, x: Tensor) -> Tensor:
        """Pad to ``ceil(size / stride)`` outputs (extra pixel at the bottom/right), then convolve."""
        pads = []
        for size, k, s, d in zip(x.shape[-2:], self.kernel_size, self.stride, self.dilation):
            total = ((size + s - 1) // s - 1) * s + (k - 1) * d + 1 - size
            pads.append((total // 2, total - total // 2))
        (top, bottom), (left, right) = pads
        return super().forward(F.pad(x, [left, right, top, bottom]))


class ConvNormAct(nn.Module):
    """Conv2d + optional BatchNorm + activation with mmcv ``ConvModule`` names (``conv``, ``bn``).

    ``bias`` defaults to ``not norm`` (mmcv's ``bias='auto'``); ``act`` is ``"relu"``, ``"hswish"``,
    ``"hsigmoid"`` (``relu6(x + 3) / 6``), ``"sigmoid"`` or None. ``adaptive_padding`` selects
    :class:`AdaptivePaddingConv2d` for strided convs; otherwise the padding is ``(k - 1) // 2 * dilation``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, dilation: int = 1,
                 groups: int = 1, norm: bool = True, bias: bool | None = None, act: str | None = "relu",
                 eps: float = 1e-5, adaptive_padding: bool = False) -> None:
        super().__init__()
        bias = not norm if bias is None else bias
        if adaptive_padding and stride > 1:
            self.conv: nn.Conv2d = AdaptivePaddingConv2d(in_channels, out_channels, kernel_size, stride, dilation,
                                                         groups, bias)
        else:
            self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, (kernel_size - 1) // 2 * dilation,
                                  dilation, groups, bias)
        self.bn = nn.BatchNorm2d(out_channels, eps=eps) if norm else None
        self.activate = _activation(act)

    def forward(self, x: Tensor) -> Tensor:
        """Conv, BN, activation."""
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return self.activate(x)


class SELayer(nn.Module):
    """Squeeze-and-excitation: global mean, 1x1 conv + ReLU to ``make_divisible(channels // 4, 8)``, 1x1 conv +
    hard sigmoid, channel-wise scale (MMSeg ``SELayer`` with ratio 4; torchvision's ``SqueezeExcitation``)."""

    def __init__(self, channels: int, ratio: int = 4) -> None:
        super().__init__()
        squeeze = make_divisible(channels // ratio, 8)
        self.conv1 = ConvNormAct(channels, squeeze, 1, norm=False, act="relu")
        self.conv2 = ConvNormAct(squeeze, channels, 1, norm=False, act="hsigmoid")

    def forward(self, x: Tensor) -> Tensor:
        """Rescale the channels of ``x``."""
        return x * self.conv2(self.conv1(global_avg_pool(x)))


class InvertedResidual(nn.Module):
    """MobileNetV3 block: [1x1 expand] -> depthwise (strided or dilated) -> [SE] -> 1x1 linear (+ residual).

    ``residual`` is decided by the caller from the block's *original* stride (as MMSeg and torchvision do, so a
    block whose stride was traded for dilation keeps no shortcut).
    """

    def __init__(self, in_channels: int, out_channels: int, mid_channels: int, kernel_size: int, stride: int,
                 dilation: int, with_se: bool, act: str, residual: bool, eps: float, adaptive_padding: bool) -> None:
        super().__init__()
        self.with_res_shortcut = residual
        self.with_expand_conv = in_channels != mid_channels
        if self.with_expand_conv:
            self.expand_conv = ConvNormAct(in_channels, mid_channels, 1, act=act, eps=eps)
        self.depthwise_conv = ConvNormAct(mid_channels, mid_channels, kernel_size, stride, dilation, mid_channels,
                                          act=act, eps=eps, adaptive_padding=adaptive_padding)
        self.se = SELayer(mid_channels) if with_se else None
        self.linear_conv = ConvNormAct(mid_channels, out_channels, 1, act=None, eps=eps)

    def forward(self, x: Tensor) -> Tensor:
        """Block forward."""
        out = self.expand_conv(x) if self.with_expand_conv else x
        out = self.depthwise_conv(out)
        if self.se is not None:
            out = self.se(out)
        out = self.linear_conv(out)
        return x + out if self.with_res_shortcut else out


class MobileNetV3(nn.Module):
    """MobileNetV3 (Howard et al., 2019) returning a tuple of layer outputs (MMSeg layout).

    Args:
        arch: ``"large"`` or ``"small"``.
        output_stride: 8 (MMSeg's "d8" segmentation network, the default), 16 (torchvision's dilated network)
            or 32 (no dilation).
        out_indices: layers to return, 0 (stem) .. 16 (Large) / 12 (Small); default MMSeg's lraspp configs:
            (1, 3, 16) on Large (16/24/960 channels at strides 2/4/8), (0, 1, 12) on Small.
        reduction_factor: divide the channels of the last stage by this (MMSeg's option; 1 = off).
        widen_factor: channel multiplier (rounded to multiples of 8), for narrow test models; 1 = MMSeg.
        norm_eps: BatchNorm eps; 0.001 as MMSeg's lraspp configs and torchvision.
        adaptive_padding: TensorFlow "same" padding on stride-2 convs (MMSeg); False: torchvision's symmetric.
        in_channels: image channels.
    """

    def __init__(
        self,
        arch: str = "large",
        output_stride: int = 8,
        out_indices: Sequence[int] | None = None,
        reduction_factor: int = 1,
        widen_factor: float = 1.0,
        norm_eps: float = 1e-3,
        adaptive_padding: bool = True,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if arch not in ARCH_SETTINGS:
            raise ValueError(f"MobileNetV3: arch must be one of {sorted(ARCH_SETTINGS)}, got {arch!r}")
        if output_stride not in (8, 16, 32):
            raise ValueError(f"MobileNetV3: output_stride must be 8, 16 or 32, got {output_stride!r}")
        if not isinstance(reduction_factor, int) or reduction_factor < 1:
            raise ValueError(f"MobileNetV3: reduction_factor must be a positive int, got {reduction_factor!r}")
        if widen_factor <= 0:
            raise ValueError(f"MobileNetV3: widen_factor must be > 0, got {widen_factor}")
        settings = ARCH_SETTINGS[arch]
        num_layers = len(settings) + 2
        out_indices = DEFAULT_OUT_INDICES[arch] if out_indices is None else tuple(out_indices)
        if not out_indices or any(not 0 <= i < num_layers for i in out_indices):
            raise ValueError(f"MobileNetV3-{arch}: out_indices must be a non-empty subset of 0..{num_layers - 1}, "
                             f"got {out_indices}")
        self.arch = arch
        self.in_channels = in_channels
        self.out_indices = tuple(out_indices)
        self.level_indices: tuple[int, ...] = LEVEL_INDICES[arch]
        self.width_scale = widen_factor
        self.num_layers = num_layers
        #: layers whose depthwise conv has stride 2 in the classification network (torchvision's stage starts).
        self.reduction_layers: tuple[int, ...] = tuple(i + 1 for i, s in enumerate(settings) if s[5] == 2)
        dilated = set(self.reduction_layers[len(self.reduction_layers) - int(math.log2(32 // output_stride)):])

        def width(c: int) -> int:
            return make_divisible(c * widen_factor, 8)

        channels = width(16)
        self.layer0 = ConvNormAct(in_channels, channels, 3, stride=2, act="hswish", eps=norm_eps,
                                  adaptive_padding=adaptive_padding)
        stride, dilation = 2, 1
        layer_channels, layer_strides = [channels], [stride]
        for i, (k, mid, out, with_se, act, s) in enumerate(settings):
            mid, out = width(mid), width(out)
            if i >= _REDUCED_FROM[arch]:
                mid, out = mid // reduction_factor, out // reduction_factor
            block_stride = s
            if i + 1 in dilated:
                dilation, block_stride = dilation * 2, 1
            block = InvertedResidual(channels, out, mid, k, block_stride, dilation, with_se, act,
                                     residual=s == 1 and channels == out, eps=norm_eps,
                                     adaptive_padding=adaptive_padding)
            self.add_module(f"layer{i + 1}", block)
            channels = out
            stride *= block_stride
            layer_channels.append(out)
            layer_strides.append(stride)
        last = width(LAST_CHANNELS[arch])
        self.add_module(f"layer{num_layers - 1}", ConvNormAct(channels, last, 1, act="hswish", eps=norm_eps))
        layer_channels.append(last)
        layer_strides.append(stride)
        self.out_channels: tuple[int, ...] = tuple(layer_channels[i] for i in self.out_indices)
        self.out_strides: tuple[int, ...] = tuple(layer_strides[i] for i in self.out_indices)
        self.output_stride: int = stride
        for m in self.modules():  # MMSeg init_cfg: Kaiming for convs, constant 1 for BN
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        """Return the feature maps of the layers in ``out_indices``."""
        outs = []
        for i in range(self.num_layers):
            x = getattr(self, f"layer{i}")(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)


def torchvision_out_indices(arch: str = "large") -> tuple[int, int]:
    """The (low, high) layers torchvision's segmentation models read from its MobileNetV3: the first block of
    the stride-8 stage (its ``stage_indices[-4]``: layer 4 on Large, 40 channels) and the last layer."""
    num_layers = len(ARCH_SETTINGS[arch]) + 2
    stages = [0, *(i + 1 for i, s in enumerate(ARCH_SETTINGS[arch]) if s[5] == 2), num_layers - 1]
    return stages[-4], stages[-1]
