"""Context-module segmentors on CNN backbones: CCNet, DANet, OCRNet (ResNet) and FastFCN (JPU + PSP / ASPP heads).

Defaults follow MMSeg's Cityscapes configs: ResNet-50 v1c D8 with the FCN auxiliary head for CCNet and DANet
(``ccnet_r50-d8``, ``danet_r50-d8``), ResNet-101 v1c D8 for OCRNet (``ocrnet_r101-d8``: a cascade of an FCN stage
and the OCR stage, no auxiliary head), and for FastFCN a ResNet-50 v1c with strides (1, 2, 2, 2) and dilations
(1, 1, 2, 4) (MMSeg's ``-d32``) feeding JPU, whose fused stride-8 map the PSP/ASPP head reads. Head widths scale
with the backbone like the classics (``in_channels // 4`` on ResNet, MMSeg's width x ``width_scale`` elsewhere).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..cascade import CascadeSegmentor
from ..heads.aspp import ASPPHead
from ..heads.base import BaseDecodeHead
from ..heads.cc import CCHead
from ..heads.da import DAHead
from ..heads.fcn import FCNHead
from ..heads.ocr import OCRHead
from ..heads.psp import PSPHead
from ..layers import ALIGN_CORNERS
from ..necks.jpu import JPU
from ..registry import FULLY_EXPORTABLE, build_backbone, register
from ..segmentor import Segmentor
from .common import Backbone, aux_head, default_channels, level, scaled, segmentor, top

#: FastFCN's ResNet (MMSeg ``fastfcn_r50-d32_jpu``): stride 2 in the last three stages *and* dilations (1, 1, 2, 4)
#: (contracted to 1 and 2 in the first block of stages 3 and 4); JPU reads stages 2..4.
FASTFCN_RESNET: dict[str, Any] = {"strides": (1, 2, 2, 2), "dilations": (1, 1, 2, 4), "out_indices": (1, 2, 3)}


@register("ccnet", capabilities=FULLY_EXPORTABLE)
def ccnet(
    *,
    num_classes: int,
    backbone: str = "resnet50",
    backbone_kwargs: dict[str, Any] | None = None,
    aux: bool = True,
    channels: int | None = None,
    recurrence: int = 2,
    concat_input: bool = True,
    dropout_ratio: float = 0.1,
    aux_channels: int | None = None,
    align_corners: bool = ALIGN_CORNERS,
) -> Segmentor:
    """CCNet (MMSeg ``ccnet_r*-d8``): FCN head with recurrent criss-cross attention (native op), output stride 8."""
    bb = build_backbone(backbone, backbone_kwargs, 8)
    idx, in_ch = top(bb, "CCHead")
    head = CCHead(
        in_ch, channels or default_channels(bb, in_ch, 512), num_classes=num_classes, in_index=idx,
        recurrence=recurrence, concat_input=concat_input, dropout_ratio=dropout_ratio, align_corners=align_corners,
    )
    return segmentor(bb, head, aux, num_classes, aux_channels, align_corners)


@register("danet", capabilities=FULLY_EXPORTABLE)
def danet(
    *,
    num_classes: int,
    backbone: str = "resnet50",
    backbone_kwargs: dict[str, Any] | None = None,
    aux: bool = True,
    channels: int | None = None,
    pam_channels: int | None = None,
    dropout_ratio: float = 0.1,
    aux_channels: int | None = None,
    align_corners: bool = ALIGN_CORNERS,
) -> Segmentor:
    """DANet (MMSeg ``danet_r*-d8``): position + channel attention, output stride 8; training adds PAM/CAM logits.

    ``pam_channels`` defaults to ``channels // 8`` (MMSeg's 64 at 512 channels).
    """
    bb = build_backbone(backbone, backbone_kwargs, 8)
    idx, in_ch = top(bb, "DAHead")
    channels = channels or default_channels(bb, in_ch, 512)
    head = DAHead(
        in_ch, channels, num_classes=num_classes, in_index=idx, pam_channels=pam_channels or max(1, channels // 8),
        dropout_ratio=dropout_ratio, align_corners=align_corners,
    )
    return segmentor(bb, head, aux, num_classes, aux_channels, align_corners)


@register("ocrnet", capabilities=FULLY_EXPORTABLE)
def ocrnet(
    *,
    num_classes: int,
    backbone: str = "resnet101",
    backbone_kwargs: dict[str, Any] | None = None,
    aux: bool = False,
    channels: int | None = None,
    ocr_channels: int | None = None,
    fcn_channels: int | None = None,
    dropout_ratio: float = 0.1,
    aux_channels: int | None = None,
    align_corners: bool = ALIGN_CORNERS,
) -> Segmentor:
    """OCRNet on ResNet (MMSeg ``ocrnet_r101-d8``): cascade of an FCN stage (on stage 3) and the OCR stage, stride 8.

    ``decode_head.0`` is the FCN stage whose coarse logits (trained as an auxiliary output) seed the object
    regions of ``decode_head.1``, the OCR head. ``fcn_channels`` defaults to MMSeg's 256 (``in_channels // 4`` on
    ResNet), ``ocr_channels`` to ``channels // 2`` (256). MMSeg has no extra auxiliary head here (``aux=False``).
    """
    bb = build_backbone(backbone, backbone_kwargs, 8)
    idx, in_ch = top(bb, "OCRHead")
    fcn_idx = level(bb, 2, "OCRNet's FCN stage")
    if bb.out_strides[fcn_idx] != bb.out_strides[idx]:
        raise ValueError(f"ocrnet: the FCN stage (stride {bb.out_strides[fcn_idx]}) and the OCR stage (stride "
                         f"{bb.out_strides[idx]}) must read maps of one resolution; use a dilated (D8/D16) backbone")
    fcn_in = bb.out_channels[fcn_idx]
    fcn_head = FCNHead(
        fcn_in, fcn_channels or default_channels(bb, fcn_in, 256), num_classes=num_classes, in_index=fcn_idx,
        num_convs=1, concat_input=False, dropout_ratio=dropout_ratio, align_corners=align_corners,
    )
    channels = channels or default_channels(bb, in_ch, 512)
    ocr_head = OCRHead(
        in_ch, channels, num_classes=num_classes, in_index=idx, ocr_channels=ocr_channels or max(1, channels // 2),
        dropout_ratio=dropout_ratio, align_corners=align_corners,
    )
    extra = aux_head(bb, num_classes, aux_channels, align_corners) if aux else None
    return CascadeSegmentor(bb, [fcn_head, ocr_head], extra)


def _jpu_backbone(backbone: str, backbone_kwargs: dict[str, Any] | None) -> tuple[Backbone, int]:
    """FastFCN's backbone (MMSeg's strides/dilations on ResNet) and the output index of its stride-8 level."""
    kwargs = dict(backbone_kwargs or {})
    if backbone.startswith("resnet"):
        if not {"output_stride", "strides", "dilations"} & set(kwargs):
            kwargs = {**FASTFCN_RESNET, **kwargs}
        kwargs.setdefault("out_indices", FASTFCN_RESNET["out_indices"])
    bb = build_backbone(backbone, kwargs, 32)
    idx = [level(bb, lvl, "JPU") for lvl in (1, 2, 3)]
    if idx != list(range(idx[0], len(bb.out_indices))):
        raise ValueError(f"fastfcn: JPU needs the stride-8, -16 and -32 levels as the backbone's last three outputs, "
                         f"got out_indices {bb.out_indices}")
    return bb, idx[0]


def _fastfcn(
    bb: Backbone, start: int, make_head: Any, neck_channels: int | None, jpu_dilations: Sequence[int], aux: bool,
    num_classes: int, aux_channels: int | None, align_corners: bool,
) -> Segmentor:
    """Backbone + JPU + ``make_head(in_channels, in_index)`` (+ FCN auxiliary head on the stride-16 level)."""
    neck = JPU(bb.out_channels, neck_channels or scaled(bb, 512), start_level=start, dilations=tuple(jpu_dilations),
               align_corners=align_corners, in_strides=bb.out_strides)
    head: BaseDecodeHead = make_head(neck.out_channels[2], 2)
    extra = None
    if aux:
        aux_in = neck.out_channels[1]
        extra = FCNHead(aux_in, aux_channels or default_channels(bb, aux_in, 256), num_classes=num_classes,
                           in_index=1, num_convs=1, concat_input=False, dropout_ratio=0.1, align_corners=align_corners)
    # The neck changes the strides (its fused map has the stride of the JPU's first level): Segmentor reads them
    # from ``neck.out_strides``.
    return Segmentor(bb, head, extra, neck=neck)


@register("fastfcn_psp", capabilities=FULLY_EXPORTABLE)
def fastfcn_psp(
    *,
    num_classes: int,
    backbone: str = "resnet50",
    backbone_kwargs: dict[str, Any] | None = None,
    aux: bool = True,
    channels: int | None = None,
    neck_channels: int | None = None,
    jpu_dilations: Sequence[int] = (1, 2, 4, 8),
    pool_scales: Sequence[int] = (1, 2, 3, 6),
    dropout_ratio: float = 0.1,
    aux_channels: int | None = None,
    align_corners: bool = ALIGN_CORNERS,
) -> Segmentor:
    """FastFCN + PSPNet (MMSeg ``fastfcn_r50-d32_jpu_psp``): JPU neck (512 x 4 channels), PSP head, stride 8."""
    bb, start = _jpu_backbone(backbone, backbone_kwargs)

    def make_head(in_ch: int, in_index: int) -> PSPHead:
        return PSPHead(in_ch, channels or default_channels(bb, in_ch, 512), num_classes=num_classes,
                       in_index=in_index, pool_scales=tuple(pool_scales), dropout_ratio=dropout_ratio,
                       align_corners=align_corners)

    return _fastfcn(bb, start, make_head, neck_channels, jpu_dilations, aux, num_classes, aux_channels, align_corners)


@register("fastfcn_aspp", capabilities=FULLY_EXPORTABLE)
def fastfcn_aspp(
    *,
    num_classes: int,
    backbone: str = "resnet50",
    backbone_kwargs: dict[str, Any] | None = None,
    aux: bool = True,
    channels: int | None = None,
    neck_channels: int | None = None,
    jpu_dilations: Sequence[int] = (1, 2, 4, 8),
    dilations: Sequence[int] = (1, 12, 24, 36),
    dropout_ratio: float = 0.1,
    aux_channels: int | None = None,
    align_corners: bool = ALIGN_CORNERS,
) -> Segmentor:
    """FastFCN + DeepLabV3 (MMSeg ``fastfcn_r50-d32_jpu_aspp``): JPU neck, ASPP head (rates 1/12/24/36), stride 8."""
    bb, start = _jpu_backbone(backbone, backbone_kwargs)

    def make_head(in_ch: int, in_index: int) -> ASPPHead:
        return ASPPHead(in_ch, channels or default_channels(bb, in_ch, 512), num_classes=num_classes,
                        in_index=in_index, dilations=tuple(dilations), dropout_ratio=dropout_ratio,
                        align_corners=align_corners)

    return _fastfcn(bb, start, make_head, neck_channels, jpu_dilations, aux, num_classes, aux_channels, align_corners)
