"""CCNet head (MMSeg ``CCHead``): an FCN head whose two convs enclose recurrent criss-cross attention."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from training.ops import criss_cross_attention

from .fcn import FCNHead


class Scale(nn.Module):
    """A learnable scalar factor (mmcv's ``Scale``: one 0-dim parameter ``scale``)."""

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(float(scale)))

    def forward(self, x: Tensor) -> Tensor:
        """``x * scale``."""
        return x * self.scale


class CrissCrossAttention(nn.Module):
    """Criss-cross attention block with mmcv's layout: ``query_conv``/``key_conv`` (1x1, ``C -> C // 8``),
    ``value_conv`` (1x1, ``C -> C``) and a residual weighted by ``gamma`` (initially 0): ``gamma * cca(q, k, v) + x``.

    The attention itself is segrt's native op :func:`training.ops.criss_cross_attention` (same math as mmcv's
    einsum version; differentiable, ``torch.compile``-able, and exported to standard ONNX ops with dynamic H/W).
    """

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        if in_channels < 8:
            raise ValueError(f"CrissCrossAttention: in_channels must be >= 8 (query/key use C // 8), got {in_channels}")
        self.in_channels = in_channels
        self.query_conv = nn.Conv2d(in_channels, in_channels // 8, 1)
        self.key_conv = nn.Conv2d(in_channels, in_channels // 8, 1)
        self.value_conv = nn.Conv2d(in_channels, in_channels, 1)
        self.gamma = Scale(0.0)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C, H, W] -> [B, C, H, W]``."""
        out = criss_cross_attention(self.query_conv(x), self.key_conv(x), self.value_conv(x))
        return self.gamma(out) + x


class CCHead(FCNHead):
    """CCNet head (Huang et al., 2019): ``convs.0`` -> ``recurrence`` x criss-cross attention (shared weights,
    ``cca.*``) -> ``convs.1`` -> ``conv_cat`` over ``[input, features]`` -> ``conv_seg``.

    Args:
        recurrence: how many times the attention block is applied (MMSeg's default 2 lets every pixel see all).
        **kwargs: see :class:`FCNHead` (``num_convs`` is fixed at 2) and :class:`BaseDecodeHead`.
    """

    def __init__(self, in_channels: int, channels: int, *, recurrence: int = 2, **kwargs) -> None:
        if "num_convs" in kwargs:
            raise ValueError("CCHead: num_convs is fixed at 2 (the attention sits between the two convs)")
        if recurrence < 0:
            raise ValueError(f"CCHead: recurrence must be >= 0, got {recurrence}")
        super().__init__(in_channels, channels, num_convs=2, **kwargs)
        self.recurrence = recurrence
        self.cca = CrissCrossAttention(channels)

    def forward(self, inputs: Sequence[Tensor]) -> Tensor:
        """Logits at the resolution of the selected feature map."""
        x = self._select(inputs)
        feat = self.convs[0](x)
        for _ in range(self.recurrence):
            feat = self.cca(feat)
        feat = self.convs[1](feat)
        if self.concat_input:
            feat = self.conv_cat(torch.cat([x, feat], dim=1))
        return self.cls_seg(feat)
