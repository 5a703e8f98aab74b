"""The CNN classics on ResNet / MobileNetV2: FCN, PSPNet, DeepLabV3, DeepLabV3+, UPerNet and semantic FPN.

Head widths default to MMSeg's configs: ``channels = in_channels // 4`` on ResNet (512 for R50/R101, 128 for R18),
512 on MobileNetV2 and for UPerNet (256 for their auxiliary heads), 128 + a 256-channel neck for semantic FPN;
defaults given in absolute channels are multiplied by the backbone's ``width_scale`` (``base_channels / 64``,
``widen_factor``), so narrow test models get narrow heads.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..backbones.resnet import ResNet
from ..heads.aspp import ASPPHead
from ..heads.fcn import FCNHead
from ..heads.fpn_head import FPNHead
from ..heads.psp import PSPHead
from ..heads.sep_aspp import DepthwiseSeparableASPPHead
from ..heads.uper import UPerHead
from ..layers import ALIGN_CORNERS
from ..necks.fpn import FPN
from ..registry import FULLY_EXPORTABLE, TINY_CNN, build_backbone, register
from ..segmentor import Segmentor
from .common import Backbone, default_channels, level, scaled, segmentor, top
from .convnext import TINY_CONVNEXT


@register("pspnet", capabilities=FULLY_EXPORTABLE)
def pspnet(
    *,
    num_classes: int,
    backbone: str = "resnet50",
    backbone_kwargs: dict[str, Any] | None = None,
    aux: bool = True,
    channels: int | None = None,
    pool_scales: Sequence[int] = (1, 2, 3, 6),
    dropout_ratio: float = 0.1,
    aux_channels: int | None = None,
    align_corners: bool = ALIGN_CORNERS,
) -> Segmentor:
    """PSPNet (MMSeg ``pspnet_r*-d8``, ``mobilenet-v2-d8_pspnet``), output stride 8."""
    bb = build_backbone(backbone, backbone_kwargs, 8)
    idx, in_ch = top(bb, "PSPHead")
    head = PSPHead(
        in_ch, channels or default_channels(bb, in_ch, 512), num_classes=num_classes, in_index=idx,
        pool_scales=tuple(pool_scales), dropout_ratio=dropout_ratio, align_corners=align_corners,
    )
    return segmentor(bb, head, aux, num_classes, aux_channels, align_corners)


@register("fcn", capabilities=FULLY_EXPORTABLE)
def fcn(
    *,
    num_classes: int,
    backbone: str = "resnet50",
    backbone_kwargs: dict[str, Any] | None = None,
    aux: bool = True,
    channels: int | None = None,
    num_convs: int = 2,
    kernel_size: int = 3,
    concat_input: bool = True,
    dilation: int = 1,
    dropout_ratio: float = 0.1,
    aux_channels: int | None = None,
    align_corners: bool = ALIGN_CORNERS,
) -> Segmentor:
    """FCN (MMSeg ``fcn_r*-d8``; ``backbone_kwargs={"output_stride": 16}`` for ``-d16``), output stride 8."""
    bb = build_backbone(backbone, backbone_kwargs, 8)
    idx, in_ch = top(bb, "FCNHead")
    head = FCNHead(
        in_ch, channels or default_channels(bb, in_ch, 512), num_classes=num_classes, in_index=idx,
        num_convs=num_convs, kernel_size=kernel_size, concat_input=concat_input, dilation=dilation,
        dropout_ratio=dropout_ratio, align_corners=align_corners,
    )
    return segmentor(bb, head, aux, num_classes, aux_channels, align_corners)


def _aspp_dilations(bb: Backbone, dilations: Sequence[int] | None) -> tuple[int, ...]:
    """MMSeg's ASPP rates: (1, 12, 24, 36) at output stride 8, (1, 6, 12, 18) at 16 (``-d16`` configs)."""
    if dilations is not None:
        return tuple(dilations)
    return {16: (1, 6, 12, 18), 32: (1, 3, 6, 9)}.get(bb.output_stride, (1, 12, 24, 36))


@register("deeplabv3", capabilities=FULLY_EXPORTABLE)
def deeplabv3(
    *,
    num_classes: int,
    backbone: str = "resnet50",
    backbone_kwargs: dict[str, Any] | None = None,
    aux: bool = True,
    channels: int | None = None,
    dilations: Sequence[int] | None = None,
    dropout_ratio: float = 0.1,
    aux_channels: int | None = None,
    align_corners: bool = ALIGN_CORNERS,
) -> Segmentor:
    """DeepLabV3 (MMSeg ``deeplabv3_r*-d8``): ASPP head, output stride 8; ``dilations`` default by stride."""
    bb = build_backbone(backbone, backbone_kwargs, 8)
    idx, in_ch = top(bb, "ASPPHead")
    head = ASPPHead(
        in_ch, channels or default_channels(bb, in_ch, 512), num_classes=num_classes, in_index=idx,
        dilations=_aspp_dilations(bb, dilations), dropout_ratio=dropout_ratio, align_corners=align_corners,
    )
    return segmentor(bb, head, aux, num_classes, aux_channels, align_corners)


@register("deeplabv3plus", capabilities=FULLY_EXPORTABLE)
def deeplabv3plus(
    *,
    num_classes: int,
    backbone: str = "resnet50",
    backbone_kwargs: dict[str, Any] | None = None,
    aux: bool = True,
    channels: int | None = None,
    c1_channels: int | None = None,
    dilations: Sequence[int] | None = None,
    dropout_ratio: float = 0.1,
    aux_channels: int | None = None,
    align_corners: bool = ALIGN_CORNERS,
) -> Segmentor:
    """DeepLabV3+ (MMSeg ``deeplabv3plus_r*-d8``, ``mobilenet-v2-d8_deeplabv3plus``): logits at stride 4.

    ``c1_channels`` defaults to MMSeg's 48 for R50/R101 and MobileNetV2 (``c1_in_channels * 48 / 256`` on ResNet:
    12 for R18), scaled with the backbone width.
    """
    bb = build_backbone(backbone, backbone_kwargs, 8)
    idx, in_ch = top(bb, "DepthwiseSeparableASPPHead")
    c1_idx = level(bb, 0, "DepthwiseSeparableASPPHead low-level branch")
    c1_in = bb.out_channels[c1_idx]
    if c1_channels is None:
        c1_channels = max(1, c1_in * 48 // 256) if isinstance(bb, ResNet) else scaled(bb, 48)
    head = DepthwiseSeparableASPPHead(
        in_ch, channels or default_channels(bb, in_ch, 512), num_classes=num_classes, in_index=idx,
        c1_in_channels=c1_in, c1_channels=c1_channels, c1_in_index=c1_idx, dilations=_aspp_dilations(bb, dilations),
        dropout_ratio=dropout_ratio, align_corners=align_corners,
    )
    return segmentor(bb, head, aux, num_classes, aux_channels, align_corners)


@register("upernet", capabilities=FULLY_EXPORTABLE, tiny=[*TINY_CNN, TINY_CONVNEXT])
def upernet(
    *,
    num_classes: int,
    backbone: str = "resnet50",
    backbone_kwargs: dict[str, Any] | None = None,
    aux: bool = True,
    channels: int | None = None,
    pool_scales: Sequence[int] = (1, 2, 3, 6),
    dropout_ratio: float = 0.1,
    aux_channels: int | None = None,
    align_corners: bool = ALIGN_CORNERS,
) -> Segmentor:
    """UPerNet (MMSeg ``upernet_r*``): undilated backbone (output stride 32), UPerHead on 4 levels, logits at 4.

    ``channels`` defaults to 512 and ``aux_channels`` to 256 for every depth (as MMSeg's R18/R50/R101 configs),
    scaled with the backbone width.
    """
    bb = build_backbone(backbone, backbone_kwargs, 32)
    idx = tuple(level(bb, lvl, "UPerHead") for lvl in range(4))
    head = UPerHead(
        [bb.out_channels[i] for i in idx], channels or scaled(bb, 512), num_classes=num_classes, in_index=idx,
        pool_scales=tuple(pool_scales), dropout_ratio=dropout_ratio, align_corners=align_corners,
    )
    return segmentor(bb, head, aux, num_classes, aux_channels, align_corners, aux_default=256)


@register("fpn", capabilities=FULLY_EXPORTABLE)
def fpn(
    *,
    num_classes: int,
    backbone: str = "resnet50",
    backbone_kwargs: dict[str, Any] | None = None,
    aux: bool = False,
    channels: int | None = None,
    neck_channels: int | None = None,
    dropout_ratio: float = 0.1,
    aux_channels: int | None = None,
    align_corners: bool = ALIGN_CORNERS,
) -> Segmentor:
    """Semantic FPN (MMSeg ``fpn_r*``): FPN neck (256) + FPNHead (128) over 4 levels, logits at stride 4.

    MMSeg's config has no auxiliary head (``aux=False``); with ``aux=True`` one reads the neck's stride-16 map.
    """
    bb = build_backbone(backbone, backbone_kwargs, 32)
    idx = tuple(level(bb, lvl, "FPN") for lvl in range(4))
    if idx != tuple(range(len(bb.out_indices))):
        raise ValueError(f"fpn: the backbone must output exactly its 4 pyramid levels, got out_indices "
                         f"{bb.out_indices}")
    neck_ch = neck_channels or scaled(bb, 256)
    neck = FPN(bb.out_channels, neck_ch)
    head = FPNHead(
        [neck_ch] * 4, channels or scaled(bb, 128), num_classes=num_classes, in_index=idx,
        feature_strides=bb.out_strides, dropout_ratio=dropout_ratio, align_corners=align_corners,
    )
    aux_head = None
    if aux:
        aux_head = FCNHead(neck_ch, aux_channels or scaled(bb, 256), num_classes=num_classes, in_index=idx[2],
                           num_convs=1, concat_input=False, dropout_ratio=0.1, align_corners=align_corners)
    return Segmentor(bb, head, aux_head, neck=neck)
