"""Helpers shared by the segmentor builders: pyramid-level lookup, MMSeg's default head widths, the auxiliary head."""

from __future__ import annotations

from torch import nn

from ..backbones.resnet import ResNet
from ..heads.base import BaseDecodeHead
from ..heads.fcn import FCNHead
from ..segmentor import Segmentor

Backbone = nn.Module


def level(backbone: Backbone, level: int, what: str) -> int:
    """Index into the backbone's output tuple of pyramid level ``level`` (0..3: nominal strides 4..32)."""
    if not 0 <= level < len(backbone.level_indices):
        raise ValueError(f"{what} needs pyramid level {level} (stride {4 * 2**level}), which backbone "
                         f"{type(backbone).__name__} does not have (its levels: {len(backbone.level_indices)})")
    layer = backbone.level_indices[level]
    if layer not in backbone.out_indices:
        raise ValueError(f"{what} needs backbone layer {layer} (level {level}) in out_indices, "
                         f"got {backbone.out_indices}")
    return backbone.out_indices.index(layer)


def scaled(backbone: Backbone, channels: int) -> int:
    """An MMSeg config width (for the full-width backbone) scaled by the backbone's ``width_scale``."""
    return max(1, round(channels * backbone.width_scale))


def default_channels(backbone: Backbone, in_channels: int, full: int) -> int:
    """MMSeg's head width: ``in_channels // 4`` on ResNet (512 for R50, 128 for R18), else ``full`` scaled."""
    return in_channels // 4 if isinstance(backbone, ResNet) else scaled(backbone, full)


def aux_head(
    backbone: Backbone, num_classes: int, channels: int | None, align_corners: bool, default: int | None = None
) -> FCNHead:
    """MMSeg's auxiliary head: FCNHead on the stride-16 level (R50 stage 3: 1024 -> 256), one conv, dropout 0.1."""
    idx = level(backbone, 2, "auxiliary head")
    in_ch = backbone.out_channels[idx]
    channels = channels or (scaled(backbone, default) if default else default_channels(backbone, in_ch, 256))
    return FCNHead(
        in_ch, channels, num_classes=num_classes, in_index=idx, num_convs=1, concat_input=False,
        dropout_ratio=0.1, align_corners=align_corners,
    )


def segmentor(
    bb: Backbone, head: BaseDecodeHead, aux: bool, num_classes: int, aux_channels: int | None, align_corners: bool,
    aux_default: int | None = None, neck: nn.Module | None = None,
) -> Segmentor:
    """The segmentor of ``bb`` + ``head`` (+ MMSeg's FCN auxiliary head on the stride-16 level when ``aux``)."""
    aux_module = aux_head(bb, num_classes, aux_channels, align_corners, aux_default) if aux else None
    return Segmentor(bb, head, aux_module, neck=neck)


def top(bb: Backbone, what: str) -> tuple[int, int]:
    """(output index, channels) of the coarsest pyramid level, which single-input decode heads read."""
    idx = level(bb, 3, what)
    return idx, bb.out_channels[idx]
