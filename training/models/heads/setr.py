"""SETR decode heads (MMSeg ``SETRUPHead``: naive / progressive upsampling, and ``SETRMLAHead``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..layers import ConvModule, resize
from .base import BaseDecodeHead


class Upsample(nn.Module):
    """Bilinear upsampling by an integer factor (MMSeg's ``Upsample(scale_factor, mode='bilinear')``); the output
    size ``(h * s, w * s)`` is computed from the tensor, so it stays symbolic under export."""

    def __init__(self, scale: int, align_corners: bool) -> None:
        super().__init__()
        self.scale = scale
        self.align_corners = align_corners

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C, h, w] -> [B, C, h * scale, w * scale]``."""
        return resize(x, (x.shape[2] * self.scale, x.shape[3] * self.scale), self.align_corners)

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


def layer_norm_2d(norm: nn.LayerNorm, x: Tensor) -> Tensor:
    """A LayerNorm over the channels of an NCHW map (MMSeg's NCHW -> NLC -> LN -> NCHW round trip)."""
    n, c, h, w = x.shape
    x = norm(x.reshape(n, c, h * w).transpose(1, 2))
    return x.transpose(1, 2).reshape(n, c, h, w)


class SETRUPHead(BaseDecodeHead):
    """SETR's naive (``num_convs=1, up_scale=4, kernel_size=1``) or progressive (PUP: ``num_convs=4, up_scale=2,
    kernel_size=3``) upsampling head: an input LayerNorm ``norm`` (eps 1e-6), then ``num_convs`` times
    ConvModule (BN, ReLU) + x``up_scale`` bilinear upsampling (``up_convs.{i}.0`` / ``.1``), then ``conv_seg``.

    The logits are ``up_scale ** num_convs`` times finer than the input map (``self.upsample``).

    Args:
        num_convs: conv + upsample stages.
        up_scale: upsampling factor of each stage.
        kernel_size: 1 or 3.
        norm_eps: eps of the input LayerNorm.
        **kwargs: see :class:`BaseDecodeHead` (single ``in_index``).
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        *,
        num_convs: int = 1,
        up_scale: int = 4,
        kernel_size: int = 3,
        norm_eps: float = 1e-6,
        **kwargs,
    ) -> None:
        super().__init__(in_channels, channels, **kwargs)
        if not isinstance(self.in_channels, int):
            raise ValueError(f"SETRUPHead: needs a single input, got in_channels {in_channels}")
        if kernel_size not in (1, 3) or num_convs < 1 or up_scale < 1:
            raise ValueError(f"SETRUPHead: need kernel_size 1 or 3, num_convs >= 1, up_scale >= 1, got "
                             f"{kernel_size}, {num_convs}, {up_scale}")
        self.norm = nn.LayerNorm(in_channels, eps=norm_eps)
        self.up_convs = nn.ModuleList(
            nn.Sequential(
                ConvModule(in_channels if i == 0 else channels, channels, kernel_size, padding=(kernel_size - 1) // 2),
                Upsample(up_scale, self.align_corners),
            )
            for i in range(num_convs)
        )
        self.up_scale = up_scale
        self.upsample: int = up_scale**num_convs

    def forward(self, inputs: Sequence[Tensor]) -> Tensor:
        """Logits at ``up_scale ** num_convs`` times the input map's resolution."""
        x = layer_norm_2d(self.norm, self._select(inputs))
        for up_conv in self.up_convs:
            x = up_conv(x)
        return self.cls_seg(x)


class SETRMLAHead(BaseDecodeHead):
    """SETR's multi-level aggregation head: per input two 3x3 ConvModules (``in -> mla_channels -> mla_channels``)
    and x``up_scale`` upsampling (``up_convs.{i}.{0,1,2}``), concatenated (``channels = inputs * mla_channels``),
    then ``conv_seg``. The logits are ``up_scale`` times finer than the inputs (``self.upsample``).

    Args:
        mla_channels: channels of each branch.
        up_scale: upsampling factor.
        **kwargs: see :class:`BaseDecodeHead` (``in_index`` a sequence).
    """

    def __init__(
        self, in_channels: Sequence[int], channels: int, *, mla_channels: int = 128, up_scale: int = 4, **kwargs
    ) -> None:
        super().__init__(in_channels, channels, **kwargs)
        if isinstance(self.in_channels, int):
            raise ValueError(f"SETRMLAHead: needs several inputs, got in_channels {in_channels}")
        if channels != len(self.in_channels) * mla_channels:
            raise ValueError(f"SETRMLAHead: channels ({channels}) must be {len(self.in_channels)} inputs x "
                             f"mla_channels ({mla_channels})")
        self.mla_channels = mla_channels
        self.up_scale = up_scale
        self.up_convs = nn.ModuleList(
            nn.Sequential(
                ConvModule(c, mla_channels, 3, padding=1),
                ConvModule(mla_channels, mla_channels, 3, padding=1),
                Upsample(up_scale, self.align_corners),
            )
            for c in self.in_channels
        )
        self.upsample: int = up_scale

    def forward(self, inputs: Sequence[Tensor]) -> Tensor:
        """Logits at ``up_scale`` times the inputs' resolution."""
        feats = [up_conv(x) for x, up_conv in zip(self._select_all(inputs), self.up_convs)]
        return self.cls_seg(torch.cat(feats, dim=1))
