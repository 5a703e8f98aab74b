"""Lite R-ASPP head of MobileNetV3 (MMSeg ``LRASPPHead``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..backbones.mobilenet_v3 import ConvNormAct
from ..layers import resize
from .base import BaseDecodeHead


def _windows(length: int | torch.SymInt, kernel: int, stride: int) -> tuple[int | torch.SymInt, ...]:
    """(k, n): the window ``min(kernel, length)`` and the number of windows ``(length - k) // stride + 1``."""
    k = torch.sym_min(kernel, length)
    return k, (length - k) // stride + 1


def _pool_matrix(length: int | torch.SymInt, kernel: int, stride: int, like: Tensor) -> Tensor:
    """[n + 1, length] matrix whose row i averages window ``min(i, n - 1)``: ``[j * stride, j * stride + k)``."""
    k, n = _windows(length, kernel, stride)
    start = torch.clamp(torch.arange(n + 1, device=like.device), max=n - 1).unsqueeze(1) * stride
    pos = torch.arange(length, device=like.device).unsqueeze(0)
    inside = ((pos >= start) & (pos < start + k)).to(like.dtype)
    return inside / inside.sum(dim=1, keepdim=True)  # each row holds k ones


def _upsample_matrix(size: int | torch.SymInt, n: int | torch.SymInt, like: Tensor, align_corners: bool) -> Tensor:
    """[size, n + 1] bilinear weights from ``n`` points to ``size`` (as ``F.interpolate``); column n is never used."""
    dst = torch.arange(size, device=like.device).to(like.dtype)
    if align_corners:
        scale = torch.full((), n - 1, dtype=like.dtype, device=like.device) / torch.sym_max(size - 1, 1)
        src = scale * dst
    else:
        scale = torch.full((), n, dtype=like.dtype, device=like.device) / size
        src = (scale * (dst + 0.5) - 0.5).clamp(min=0)
    j0 = src.floor()
    lam = (src - j0).unsqueeze(1)
    j0 = j0.long().unsqueeze(1)
    j1 = torch.clamp(j0 + 1, max=n - 1)
    cols = torch.arange(n + 1, device=like.device).unsqueeze(0)
    return (cols == j0).to(like.dtype) * (1 - lam) + (cols == j1).to(like.dtype) * lam


class WindowAvgPool2d(nn.Module):
    """``nn.AvgPool2d(kernel, stride)`` (no padding, floor mode) and the bilinear resize of its output back to the
    input size, both as matmuls with matrices built from ``arange``, so ``torch.export``/ONNX keep H and W
    symbolic and emit no ``AveragePool``.

    :meth:`forward` returns ``n_h + 1`` x ``n_w + 1`` cells: the ``n`` windows of the pooling op, then one more
    copy of the last window, so that no dimension is 1 while tracing (``torch.export`` specialises a size that
    is 1 in the example input to the constant 1, and MMSeg's 49x49 window gives ``n_h = 1`` at 512x1024);
    :meth:`upsample` reads only the first ``n`` and gives ``F.interpolate(pooled, size, mode="bilinear")``.
    Along a side shorter than the window (where ``AvgPool2d``, and so MMSeg, fails) the window shrinks to the
    whole side: small inputs get a global average there.
    """

    def __init__(self, kernel_size: int, stride: tuple[int, int]) -> None:
        super().__init__()
        if kernel_size < 1 or min(stride) < 1:
            raise ValueError(f"WindowAvgPool2d: kernel and strides must be >= 1, got {kernel_size}, {stride}")
        self.kernel_size = kernel_size
        self.stride = tuple(stride)

    def forward(self, x: Tensor) -> Tensor:
        """Window averages of ``x``: ``[B, C, n_h + 1, n_w + 1]`` (the last row and column repeat the last)."""
        pool_h = _pool_matrix(x.shape[-2], self.kernel_size, self.stride[0], x)
        pool_w = _pool_matrix(x.shape[-1], self.kernel_size, self.stride[1], x)
        return torch.matmul(torch.matmul(pool_h, x), pool_w.transpose(0, 1))

    def upsample(self, y: Tensor, size: Sequence[int | torch.SymInt], align_corners: bool = False) -> Tensor:
        """Bilinear resize of the ``n_h x n_w`` windows in ``y`` (a per-window map from :meth:`forward`) to the
        ``size`` of the pooled input."""
        (h, w), (sh, sw) = size, self.stride
        up_h = _upsample_matrix(h, _windows(h, self.kernel_size, sh)[1], y, align_corners)
        up_w = _upsample_matrix(w, _windows(w, self.kernel_size, sw)[1], y, align_corners)
        return torch.matmul(torch.matmul(up_h, y), up_w.transpose(0, 1))

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}"


class LRASPPHead(BaseDecodeHead):
    """Lite R-ASPP (Howard et al., 2019) as MMSeg: the last map goes through ``aspp_conv`` gated by
    ``image_pool`` (a 49x49 average pool with strides (16, 20), a 1x1 conv and a sigmoid, resized back
    bilinearly; see :class:`WindowAvgPool2d`), then is
    upsampled and fused with each earlier map (``convs.conv{i}`` to ``branch_channels[i]``, concat,
    ``conv_ups.conv_up{i}``), finest last; logits at the resolution of the first map.

    Args:
        in_channels: channels of every input map, finest first (MMSeg: (16, 24, 960)).
        branch_channels: one per input except the last (MMSeg: (32, 64)).
        pool_kernel, pool_stride: the image-pool window (MMSeg's fixed 49 and (16, 20)); see
            :class:`WindowAvgPool2d` for maps smaller than the window.
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
        pool, gate = self.image_pool
        x = self.aspp_conv(x) * pool.upsample(gate(pool(x)), x.shape[2:], self.align_corners)
        x = self.conv_up_input(x)
        for i in range(len(self.branch_channels) - 1, -1, -1):
            x = resize(x, feats[i].shape[2:], self.align_corners)
            x = self.conv_ups[i](torch.cat([x, self.convs[i](feats[i])], dim=1))
        return self.cls_seg(x)
