"""The real-time two-branch family: BiSeNetV1, BiSeNetV2 and STDC (MMSeg 1.x configs and state-dict layout).

Defaults follow MMSeg's Cityscapes configs (``bisenetv1_r18-d32``, ``bisenetv2_fcn``, ``stdc1``/``stdc2``), their
lists of auxiliary heads included (``auxiliary_head.0.*``, ...). Widths given in absolute channels are scaled with
the backbone's ``width_scale``, so narrow test models get narrow heads.

Backbone names registered here: ``bisenetv2`` and ``stdc1`` / ``stdc2`` (fixed strides; ``output_stride`` does not
apply to them). BiSeNetV1 wraps any 4-level CNN backbone (MMSeg: ``resnet18-v1b``) in its context path.

STDC's third auxiliary head (``boundary_head``) predicts 2 classes (boundary / not) and is trained with its own
:meth:`STDCHead.loss` on Laplacian edges of the labels, not with the segmentation loss of the other heads.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from torch import nn

from ..backbones.bisenetv1 import BiSeNetV1
from ..backbones.bisenetv2 import BiSeNetV2
from ..backbones.stdc import STDCContextPathNet, STDCNet
from ..heads.fcn import FCNHead
from ..heads.stdc import STDCHead
from ..layers import ALIGN_CORNERS
from ..registry import FULLY_EXPORTABLE, build_backbone, check_overrides, register, register_backbone
from ..segmentor import Segmentor
from .common import scaled


def _bisenetv2_factory(m: re.Match, overrides: dict[str, Any], output_stride: int) -> nn.Module:
    check_overrides(m.group(0), BiSeNetV2, overrides)
    return BiSeNetV2(**overrides)


def _stdc_factory(m: re.Match, overrides: dict[str, Any], output_stride: int) -> nn.Module:
    check_overrides(m.group(0), STDCNet, overrides, fixed=("variant",))
    return STDCNet(variant=m.group(0), **overrides)


register_backbone(r"bisenetv2", _bisenetv2_factory, "bisenetv2 (fixed strides)")
register_backbone(r"stdc[12]", _stdc_factory, "stdc1|stdc2 (fixed output stride 32)")


def _fcn(in_channels: int, channels: int, num_classes: int, in_index: int, num_convs: int, dropout_ratio: float,
         align_corners: bool) -> FCNHead:
    return FCNHead(in_channels, channels, num_classes=num_classes, in_index=in_index, num_convs=num_convs,
                   concat_input=False, dropout_ratio=dropout_ratio, align_corners=align_corners)


@register("bisenetv1", capabilities=FULLY_EXPORTABLE, tiny=[
    {"backbone": "resnet18-v1b", "backbone_kwargs": {"base_channels": 8, "stem_channels": 8}},
    {"backbone": "mobilenetv2", "backbone_kwargs": {"widen_factor": 0.25}},
])
def bisenetv1(
    *,
    num_classes: int,
    backbone: str = "resnet18-v1b",
    backbone_kwargs: dict[str, Any] | None = None,
    aux: bool = True,
    spatial_channels: Sequence[int] | None = None,
    fusion_channels: int | None = None,
    channels: int | None = None,
    aux_channels: int | None = None,
    dropout_ratio: float = 0.1,
    align_corners: bool = ALIGN_CORNERS,
) -> Segmentor:
    """BiSeNetV1 (MMSeg ``bisenetv1_r18-d32``; ``backbone="resnet50-v1b"`` for ``r50-d32``), logits at stride 8.

    The context path reads the backbone's strides 8/16/32 (ARM width ``c`` = its stride-8 width: 128 on R18, 512
    on R50); as in MMSeg's configs the spatial path is ``(c/2, c/2, c/2, c)``, the fused map (``fusion_channels``)
    and the FCN decode head (``channels``, one conv) are ``2c`` wide and the two auxiliary FCN heads (on the
    stride-8 and stride-16 context maps) ``c/2``.
    """
    inner = build_backbone(backbone, backbone_kwargs, 32)
    if len(inner.out_channels) != 4:
        raise ValueError(f"bisenetv1: the context backbone must return its 4 pyramid levels, got out_channels "
                         f"{inner.out_channels}")
    context = tuple(inner.out_channels[1:])
    c = context[0]
    spatial = tuple(spatial_channels) if spatial_channels is not None else (c // 2, c // 2, c // 2, c)
    bb = BiSeNetV1(inner, in_channels=inner.in_channels, spatial_channels=spatial, context_channels=context,
                   out_channels=fusion_channels or 2 * c)
    head = _fcn(bb.out_channels[0], channels or bb.out_channels[0], num_classes, 0, 1, dropout_ratio, align_corners)
    aux_heads = None
    if aux:
        aux_heads = nn.ModuleList([_fcn(c, aux_channels or max(1, c // 2), num_classes, i, 1, 0.1, align_corners)
                                   for i in (1, 2)])
    return Segmentor(bb, head, aux_heads)


@register("bisenetv2", capabilities=FULLY_EXPORTABLE, tiny=[
    {"backbone_kwargs": {"detail_channels": (8, 8, 16), "semantic_channels": (4, 8, 8, 16), "bga_channels": 16,
                         "semantic_expansion_ratio": 2}},
])
def bisenetv2(
    *,
    num_classes: int,
    backbone: str = "bisenetv2",
    backbone_kwargs: dict[str, Any] | None = None,
    aux: bool = True,
    channels: int | None = None,
    aux_channels: Sequence[int] | None = None,
    dropout_ratio: float = 0.1,
    align_corners: bool = ALIGN_CORNERS,
) -> Segmentor:
    """BiSeNetV2 (MMSeg ``bisenetv2_fcn``): FCN decode head (1024, one conv) on the BGA map, logits at stride 8.

    Four auxiliary FCN heads (two convs each) read the semantic stages 1..4 with ``aux_channels`` (16, 64, 256,
    1024), as MMSeg's booster heads; widths scale with ``bga_channels / 128``.
    """
    bb = build_backbone(backbone, backbone_kwargs)
    if not isinstance(bb, BiSeNetV2):
        raise ValueError(f"bisenetv2: backbone must be 'bisenetv2', got {backbone!r}")
    head = _fcn(bb.out_channels[0], channels or scaled(bb, 1024), num_classes, 0, 1, dropout_ratio, align_corners)
    aux_heads = None
    if aux:
        widths = tuple(aux_channels) if aux_channels is not None else tuple(scaled(bb, w) for w in (16, 64, 256, 1024))
        if len(widths) != 4:
            raise ValueError(f"bisenetv2: aux_channels needs 4 entries, got {widths}")
        aux_heads = nn.ModuleList([_fcn(bb.out_channels[i], w, num_classes, i, 2, 0.1, align_corners)
                                   for i, w in zip((1, 2, 3, 4), widths)])
    return Segmentor(bb, head, aux_heads)


_TINY_STDC = {"channels": (8, 8, 16, 32, 64)}


# The test matrix, like the training loop, trains the 2-class boundary head with its own loss (STDCHead.loss).
@register("stdc", capabilities=FULLY_EXPORTABLE, tiny=[
    {"backbone": "stdc1", "backbone_kwargs": _TINY_STDC},
    {"backbone": "stdc2", "backbone_kwargs": _TINY_STDC, "boundary_head": False},
])
def stdc(
    *,
    num_classes: int,
    backbone: str = "stdc1",
    backbone_kwargs: dict[str, Any] | None = None,
    aux: bool = True,
    context_channels: int | None = None,
    fusion_channels: int | None = None,
    channels: int | None = None,
    aux_channels: int | None = None,
    boundary_head: bool = True,
    boundary_threshold: float = 0.1,
    dropout_ratio: float = 0.1,
    align_corners: bool = ALIGN_CORNERS,
) -> Segmentor:
    """STDC1 / STDC2 (MMSeg ``stdc1``, ``stdc2``; ``backbone="stdc2"``): context path + FFM, logits at stride 8.

    ``context_channels`` (128) is the ARM width, ``fusion_channels`` (256) the fused map's and the decode FCN
    head's (``channels``, one conv). Auxiliary heads (``aux_channels`` 64): FCN heads on the stride-8 and
    stride-16 context maps and, with ``boundary_head``, MMSeg's 2-class :class:`STDCHead` on stage 2. MMSeg's
    configs resize the decode/boundary logits with ``align_corners=True``; segrt's policy default is False.
    """
    inner = build_backbone(backbone, backbone_kwargs)
    if not isinstance(inner, STDCNet):
        raise ValueError(f"stdc: backbone must be 'stdc1' or 'stdc2', got {backbone!r}")
    bb = STDCContextPathNet(inner, out_channels=context_channels or scaled(inner, 128),
                            fusion_channels=fusion_channels or scaled(inner, 256))
    head = _fcn(bb.out_channels[3], channels or bb.out_channels[3], num_classes, 3, 1, dropout_ratio, align_corners)
    aux_heads = None
    if aux:
        width = aux_channels or scaled(bb, 64)
        heads: list[nn.Module] = [_fcn(bb.out_channels[i], width, num_classes, i, 1, 0.1, align_corners)
                                  for i in (2, 1)]
        if boundary_head:
            heads.append(STDCHead(bb.out_channels[0], width, num_classes=2, in_index=0, num_convs=1,
                                  concat_input=False, boundary_threshold=boundary_threshold,
                                  align_corners=align_corners))
        aux_heads = nn.ModuleList(heads)
    return Segmentor(bb, head, aux_heads)
