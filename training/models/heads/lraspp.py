"""Lite R-ASPP head of MobileNetV3 (MMSeg ``LRASPPHead``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..backbones.mobilenet_v3 import ConvNormAct
from ..layers import resize
from .base import BaseDecodeHead


def _window_matrix(length: int | torch.SymInt, kernel: int, stride: int, like: Tensor) -> Tensor:
    """[n, length] matrix whose row i averages ``[i*stride, i*stride + kernel)``, n = (length - kernel)//stride + 1."""
    n = (length - kernel) // stride + 1
    start = torch.arange(n, device=like.device) * stride
    pos = torch.arange(length, device=like.device).unsqueeze(0)
    inside = (pos >= start.unsqueeze(1)) & (pos < start.unsqueeze(1) + kernel)
    return inside.to(like.dtype) / kernel


class WindowAvgPool2d(nn.Module):
    """``nn.AvgPool2d(kernel, stride)`` (no padding, floor mode) as two matmuls with averaging matrices.

    Same windows and values as the pooling op (up to float rounding), but ``torch.export``/ONNX keep H and W
    symbolic and emit no ``AveragePool``. A map smaller than the window raises ``ValueError`` (as the pooling
    op would fail).
    """

    def __init__(self, kernel_size: int, stride: tuple[int, int]) -> None:
        super().__init__()
        if kernel_size < 1 or min(stride) < 1:
            raise ValueError(f"WindowAvgPool2d: kernel and strides must be >= 1, got {kernel_size}, {stride}")
        self.kernel_size = kernel_size
        self.stride = tuple(stride)

    def forward(self, x: Tensor) -> Tensor:
        """Average ``kernel x kernel`` windows of ``x`` with the given strides."""
        h, w = x.shape[-2], x.shape[-1]
        if isinstance(h, int) and isinstance(w, int) and min(h, w) < self.kernel_size:
            raise ValueError(f"LRASPP image pool: the {self.kernel_size}x{self.kernel_size} window does not fit "
                             f"the {h}x{w} feature map; use a larger input")
        pool_h = _window_matrix(h, self.kernel_size, self.stride[0], x)
        pool_w = _window_matrix(w, self.kernel_size, self.stride[1], x)
        return torch.matmul(torch.matmul(pool_h, x), pool_w.transpose(0, 1))

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}"


class LRASPPHead(BaseDecodeHead):
    """Lite R-ASPP (Howard et al., 2019) as MMSeg: the last map goes through ``aspp_conv`` gated by
    ``image_pool`` (a 49x49 average pool with strides (16, 20), a 1x1 conv and a sigmoid, resized back), then is
    upsampled and fused with each earlier map (``convs.conv{i}`` to ``branch_channels[i]``, concat,
    ``conv_ups.conv_up{i}``), finest last; logits at the resolution of the first map.

    Args:
        in_channels: channels of every input map, finest first (MMSeg: (16, 24, 960)).
        branch_channels: one per input except the last (MMSeg: (32, 64)).
        pool_kernel, pool_stride: the image-pool window (MMSeg's fixed 49 and (16, 20)).
        norm_eps: BatchNorm eps (0.001 in MMSeg's lraspp configs).
        **kwargs: see :class:`BaseDecodeHead` (``in_index`` must select several maps).
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        channels: int,
        *,
        branch_channels: Sequence[int] = (32, 64),
        pool_kernel: int = 49,
        pool_stride: tuple[int, int] = (16, 20),
        norm_eps: float = 1e-3,
        **kwargs,
    ) -> None:
        super().__init__(in_channels, channels, **kwargs)
        if not isinstance(self.in_channels, tuple) or len(branch_channels) != len(self.in_channels) - 1:
            raise ValueError(f"LRASPPHead: need one branch channel count per input but the last, got "
                             f"branch_channels {tuple(branch_channels)} for in_channels {in_channels}")
        self.branch_channels = tuple(branch_channels)
        self.convs = nn.Sequential()
        self.conv_ups = nn.Sequential()
        for i, branch in enumerate(self.branch_channels):
            self.convs.add_module(f"conv{i}", nn.Conv2d(self.in_channels[i], branch, 1, bias=False))
            self.conv_ups.add_module(f"conv_up{i}", ConvNormAct(channels + branch, channels, 1, eps=norm_eps))
        self.conv_up_input = nn.Conv2d(channels, channels, 1)
        self.aspp_conv = ConvNormAct(self.in_channels[-1], channels, 1, eps=norm_eps)
        self.image_pool = nn.Sequential(
            WindowAvgPool2d(pool_kernel, pool_stride),
            ConvNormAct(self.in_channels[-1], channels, 1, norm=False, bias=False, act="sigmoid"),
        )

    def forward(self, inputs: Sequence[Tensor]) -> Tensor:
        """Logits at the resolution of the first selected map."""
        feats = self._select_all(inputs)
        x = feats[-1]
        x = self.aspp_conv(x) * resize(self.image_pool(x), x.shape[2:], self.align_corners)
        x = self.conv_up_input(x)
        for i in range(len(self.branch_channels) - 1, -1, -1):
            x = resize(x, feats[i].shape[2:], self.align_corners)
            x = self.conv_ups[i](torch.cat([x, self.convs[i](feats[i])], dim=1))
        return self.cls_seg(x)
