"""DANet head (MMSeg ``DAHead``): position attention (PAM) and channel attention (CAM) branches, summed."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..layers import ConvModule
from .base import BaseDecodeHead
from .cc import Scale


class PAM(nn.Module):
    """Position attention module: non-local attention over all ``H * W`` pixels, ``gamma * attn + x``.

    MMSeg's ``PAM`` (a ``SelfAttentionBlock`` with plain 1x1 convs with bias, no ``1/sqrt(d)`` scaling, no output
    projection): ``query_project``/``key_project`` map ``C -> channels``, ``value_project`` keeps ``C``; ``gamma``
    starts at 0.
    """

    def __init__(self, in_channels: int, channels: int) -> None:
        super().__init__()
        self.key_project = nn.Conv2d(in_channels, channels, 1)
        self.query_project = nn.Conv2d(in_channels, channels, 1)
        self.value_project = nn.Conv2d(in_channels, in_channels, 1)
        self.gamma = Scale(0.0)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C, H, W] -> [B, C, H, W]``."""
        query = self.query_project(x).flatten(2).transpose(1, 2)  # [B, HW, c]
        key = self.key_project(x).flatten(2)  # [B, c, HW]
        value = self.value_project(x).flatten(2)  # [B, C, HW]
        attn = torch.softmax(torch.matmul(query, key), dim=-1)  # [B, HW(query), HW(key)]
        context = torch.matmul(value, attn.transpose(1, 2)).reshape(x.shape)
        return self.gamma(context) + x


class CAM(nn.Module):
    """Channel attention module: ``softmax(max(E) - E)`` over the ``C x C`` Gram matrix ``E``, ``gamma * attn + x``."""

    def __init__(self) -> None:
        super().__init__()
        self.gamma = Scale(0.0)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C, H, W] -> [B, C, H, W]``."""
        flat = x.flatten(2)  # [B, C, HW]
        energy = torch.matmul(flat, flat.transpose(1, 2))  # [B, C, C]
        energy = energy.amax(dim=-1, keepdim=True) - energy
        out = torch.matmul(torch.softmax(energy, dim=-1), flat).reshape(x.shape)
        return self.gamma(out) + x


class DAHead(BaseDecodeHead):
    """Dual Attention Network head (Fu et al., 2019).

    Two branches on the selected map, each ``{pam,cam}_in_conv`` (3x3) -> attention -> ``{pam,cam}_out_conv`` (3x3);
    the sum of their features goes through ``conv_seg``. The branches also have their own classifiers
    ``pam_conv_seg``/``cam_conv_seg``, trained with extra losses: :meth:`forward_train` returns their logits beside the
    main ones, :meth:`forward` (inference, export) only the main logits.

    Args:
        pam_channels: query/key channels of the position attention (MMSeg: 64 for 512 head channels).
        **kwargs: see :class:`BaseDecodeHead`.
    """

    def __init__(self, in_channels: int, channels: int, *, pam_channels: int, **kwargs) -> None:
        super().__init__(in_channels, channels, **kwargs)
        if pam_channels < 1:
            raise ValueError(f"DAHead: pam_channels must be >= 1, got {pam_channels}")
        self.pam_channels = pam_channels
        self.pam_in_conv = ConvModule(in_channels, channels, 3, padding=1)
        self.pam = PAM(channels, pam_channels)
        self.pam_out_conv = ConvModule(channels, channels, 3, padding=1)
        self.pam_conv_seg = nn.Conv2d(channels, self.num_classes, kernel_size=1)
        self.cam_in_conv = ConvModule(in_channels, channels, 3, padding=1)
        self.cam = CAM()
        self.cam_out_conv = ConvModule(channels, channels, 3, padding=1)
        self.cam_conv_seg = nn.Conv2d(channels, self.num_classes, kernel_size=1)

    def _branches(self, inputs: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        x = self._select(inputs)
        pam_feat = self.pam_out_conv(self.pam(self.pam_in_conv(x)))
        cam_feat = self.cam_out_conv(self.cam(self.cam_in_conv(x)))
        return pam_feat, cam_feat

    def _classify(self, conv: nn.Conv2d, feat: Tensor) -> Tensor:
        if self.dropout is not None:
            feat = self.dropout(feat)
        return conv(feat)

    def pam_cls_seg(self, feat: Tensor) -> Tensor:
        """Dropout, then the PAM branch's classifier."""
        return self._classify(self.pam_conv_seg, feat)

    def cam_cls_seg(self, feat: Tensor) -> Tensor:
        """Dropout, then the CAM branch's classifier."""
        return self._classify(self.cam_conv_seg, feat)

    def forward(self, inputs: Sequence[Tensor]) -> Tensor:
        """Logits of the summed branches (MMSeg's ``pam_cam`` output, the one used for prediction)."""
        pam_feat, cam_feat = self._branches(inputs)
        return self.cls_seg(pam_feat + cam_feat)

    def forward_train(self, inputs: Sequence[Tensor]) -> tuple[Tensor, list[Tensor]]:
        """``(pam_cam logits, [pam logits, cam logits])``: MMSeg's three training outputs (each with its own loss)."""
        pam_feat, cam_feat = self._branches(inputs)
        return self.cls_seg(pam_feat + cam_feat), [self.pam_cls_seg(pam_feat), self.cam_cls_seg(cam_feat)]
