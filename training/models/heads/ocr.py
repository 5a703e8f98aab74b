"""OCRNet head (MMSeg ``OCRHead``): object-contextual representations from a coarse prediction of an earlier head.

The head is the second stage of a :class:`~training.models.cascade.CascadeSegmentor`: ``forward(inputs, prev_logits)``
gathers one feature vector per class (pixels weighted by the softmax of ``prev_logits`` over the image), lets every
pixel attend to those class vectors, and classifies ``[context, features]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..layers import ConvModule
from .base import BaseDecodeHead


class SpatialGatherModule(nn.Module):
    """Class centres: ``softmax(scale * probs)`` over the pixels of each class map, times the features.

    ``feats [B, C, H, W]``, ``probs [B, K, H, W]`` (same H, W) -> ``[B, C, K, 1]``. Parameter-free.
    """

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, feats: Tensor, probs: Tensor) -> Tensor:
        """Soft-weighted average of the features per class."""
        weights = torch.softmax(self.scale * probs.flatten(2), dim=2)  # [B, K, HW]
        context = torch.matmul(weights, feats.flatten(2).transpose(1, 2))  # [B, K, C]
        return context.transpose(1, 2).unsqueeze(3)


def _project(in_channels: int, channels: int, num_convs: int) -> nn.Module:
    """1x1 ConvModule(s) with BN + ReLU; one is a bare ConvModule, several a ``Sequential`` (MMSeg's naming)."""
    convs = [ConvModule(in_channels if i == 0 else channels, channels, 1) for i in range(num_convs)]
    return convs[0] if num_convs == 1 else nn.Sequential(*convs)


class ObjectAttentionBlock(nn.Module):
    """Pixel-to-object attention (MMSeg's ``ObjectAttentionBlock`` at ``scale=1``).

    Queries from the pixel features (``query_project``: two 1x1 ConvModules), keys (same) and values
    (``value_project``: one) from the class centres; attention scaled by ``channels ** -0.5``; the context is mapped
    back by ``out_project`` and fused with the pixel features by the 1x1 ``bottleneck`` over ``[context, feats]``.
    """

    def __init__(self, in_channels: int, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.key_project = _project(in_channels, channels, 2)
        self.query_project = _project(in_channels, channels, 2)
        self.value_project = _project(in_channels, channels, 1)
        self.out_project = _project(channels, in_channels, 1)
        self.bottleneck = ConvModule(in_channels * 2, in_channels, 1)

    def forward(self, feats: Tensor, centres: Tensor) -> Tensor:
        """``feats [B, C, H, W]``, ``centres [B, C, K, 1]`` -> ``[B, C, H, W]``."""
        query = self.query_project(feats).flatten(2).transpose(1, 2)  # [B, HW, c]
        key = self.key_project(centres).flatten(2)  # [B, c, K]
        value = self.value_project(centres).flatten(2)  # [B, c, K]
        attn = torch.softmax(torch.matmul(query, key) * self.channels**-0.5, dim=-1)  # [B, HW, K]
        context = torch.matmul(value, attn.transpose(1, 2))  # [B, c, HW]
        context = context.reshape(context.shape[0], context.shape[1], feats.shape[2], feats.shape[3])
        return self.bottleneck(torch.cat([self.out_project(context), feats], dim=1))


class OCRHead(BaseDecodeHead):
    """Object-Contextual Representations head (Yuan et al., 2020), a cascade stage.

    ``bottleneck`` (3x3) -> ``spatial_gather_module`` (class centres from ``prev_logits``) ->
    ``object_context_block`` -> ``conv_seg``. ``prev_logits`` must have the resolution of the selected map.

    Args:
        ocr_channels: query/key/value channels of the object attention (MMSeg: 256 for 512 head channels).
        scale: temperature of the spatial softmax in the gather module. MMSeg also downsamples the queries when
            ``scale > 1``, which its own block cannot run; only 1 (every MMSeg config) is supported.
        **kwargs: see :class:`BaseDecodeHead`.
    """

    def __init__(self, in_channels: int, channels: int, *, ocr_channels: int, scale: int = 1, **kwargs) -> None:
        super().__init__(in_channels, channels, **kwargs)
        if ocr_channels < 1:
            raise ValueError(f"OCRHead: ocr_channels must be >= 1, got {ocr_channels}")
        if scale != 1:
            raise ValueError(f"OCRHead: only scale=1 is supported (MMSeg's scale > 1 path is broken), got {scale}")
        self.ocr_channels = ocr_channels
        self.scale = scale
        self.object_context_block = ObjectAttentionBlock(channels, ocr_channels)
        self.spatial_gather_module = SpatialGatherModule(scale)
        self.bottleneck = ConvModule(in_channels, channels, 3, padding=1)

    def forward(self, inputs: Sequence[Tensor], prev_logits: Tensor) -> Tensor:  # type: ignore[override]
        """Logits at the resolution of the selected feature map, refined from ``prev_logits``."""
        x = self._select(inputs)
        if prev_logits.dim() != 4 or prev_logits.shape[1] != self.num_classes:
            raise ValueError(f"OCRHead: expected previous logits [B, {self.num_classes}, H, W], "
                             f"got shape {tuple(prev_logits.shape)}")
        if prev_logits.shape[2:] != x.shape[2:]:
            raise ValueError(f"OCRHead: previous logits {tuple(prev_logits.shape)} must have the H, W of the "
                             f"features {tuple(x.shape)}")
        feats = self.bottleneck(x)
        centres = self.spatial_gather_module(feats, prev_logits)
        return self.cls_seg(self.object_context_block(feats, centres))
