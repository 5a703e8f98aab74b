"""torchvision's segmentation models (``torchvision.models.segmentation``) rebuilt from our parts.

``tv_fcn``, ``tv_deeplabv3`` and ``tv_lraspp`` give the same logits (before torchvision's final resize to the
input size) and parameter counts as ``fcn_resnet50/101``, ``deeplabv3_resnet50/101``,
``deeplabv3_mobilenet_v3_large`` and ``lraspp_mobilenet_v3_large``; ``training.convert.torchvision`` renames
their checkpoints. The backbones are ours: ResNet v1b (7x7 stem) with ``replace_stride_with_dilation=[False,
True, True]``, which is our output-stride-8 preset with ``contract_dilation`` (the first block of a dilated
stage keeps the previous dilation), and MobileNetV3-Large at output stride 16 with torchvision's symmetric
padding, read at layer 4 (stride 8, 40 channels: torchvision's ``stage_indices[-4]``) and layer 16.
Auxiliary heads (torchvision's ``aux_loss=True``, as its pretrained weights): its FCNHead on ResNet's layer3
(1024 -> 256) or MobileNetV3's layer 4.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from ..backbones.mobilenet_v3 import MobileNetV3, torchvision_out_indices
from ..heads.base import BaseDecodeHead
from ..heads.tv import TVDeepLabHead, TVFCNHead, TVLRASPPHead
from ..layers import ALIGN_CORNERS
from ..registry import FULLY_EXPORTABLE, TINY_RESNET, build_backbone, register
from ..segmentor import Segmentor
from .common import level, scaled

TINY_RESNET_V1B: dict[str, Any] = {**TINY_RESNET, "backbone": "resnet18-v1b"}
TINY_MOBILENETV3: dict[str, Any] = {"backbone": "mobilenetv3-large", "backbone_kwargs": {"widen_factor": 0.25}}


def tv_backbone(backbone: str, backbone_kwargs: dict[str, Any] | None) -> nn.Module:
    """Our backbone as torchvision builds it: ResNet at output stride 8, MobileNetV3 at 16 with symmetric
    padding returning torchvision's (low, high) layers; ``backbone_kwargs`` override those defaults."""
    kwargs = dict(backbone_kwargs or {})
    if backbone.startswith("mobilenetv3-"):
        kwargs.setdefault("adaptive_padding", False)
        kwargs.setdefault("out_indices", torchvision_out_indices(backbone.split("-", 1)[1]))
        return build_backbone(backbone, kwargs, 16)
    return build_backbone(backbone, kwargs, 8)


def _indices(bb: nn.Module, what: str) -> tuple[int, int]:
    """(low/aux, high/main) output indices: ResNet layer3/layer4, MobileNetV3 torchvision's low/high layers."""
    if isinstance(bb, MobileNetV3):
        low, high = torchvision_out_indices(bb.arch)
        missing = [i for i in (low, high) if i not in bb.out_indices]
        if missing:
            raise ValueError(f"{what} needs MobileNetV3 layers {(low, high)} in out_indices, got {bb.out_indices}")
        return bb.out_indices.index(low), bb.out_indices.index(high)
    return level(bb, 2, what), level(bb, 3, what)


def _tv_aux(bb: nn.Module, idx: int, num_classes: int, align_corners: bool) -> TVFCNHead:
    in_ch = bb.out_channels[idx]
    return TVFCNHead(in_ch, in_ch // 4, num_classes=num_classes, in_index=idx, align_corners=align_corners)


def _segmentor(bb: nn.Module, head: BaseDecodeHead, aux: bool, aux_idx: int, num_classes: int,
               align_corners: bool) -> Segmentor:
    return Segmentor(bb, head, _tv_aux(bb, aux_idx, num_classes, align_corners) if aux else None)


@register("tv_fcn", capabilities=FULLY_EXPORTABLE, tiny=[TINY_RESNET_V1B])
def tv_fcn(
    *,
    num_classes: int,
    backbone: str = "resnet50-v1b",
    backbone_kwargs: dict[str, Any] | None = None,
    aux: bool = True,
    align_corners: bool = ALIGN_CORNERS,
) -> Segmentor:
    """torchvision ``fcn_resnet50`` / ``fcn_resnet101`` (``backbone="resnet101-v1b"``): output stride 8."""
    bb = tv_backbone(backbone, backbone_kwargs)
    aux_idx, idx = _indices(bb, "tv_fcn")
    in_ch = bb.out_channels[idx]
    head = TVFCNHead(in_ch, in_ch // 4, num_classes=num_classes, in_index=idx, align_corners=align_corners)
    return _segmentor(bb, head, aux, aux_idx, num_classes, align_corners)


@register("tv_deeplabv3", capabilities=FULLY_EXPORTABLE, tiny=[TINY_RESNET_V1B, TINY_MOBILENETV3])
def tv_deeplabv3(
    *,
    num_classes: int,
    backbone: str = "resnet50-v1b",
    backbone_kwargs: dict[str, Any] | None = None,
    aux: bool = True,
    channels: int | None = None,
    dilations: Sequence[int] = (12, 24, 36),
    align_corners: bool = ALIGN_CORNERS,
) -> Segmentor:
    """torchvision ``deeplabv3_resnet50/101`` (output stride 8) and ``deeplabv3_mobilenet_v3_large``
    (``backbone="mobilenetv3-large"``, output stride 16); ``channels`` defaults to 256 (scaled with the width)."""
    bb = tv_backbone(backbone, backbone_kwargs)
    aux_idx, idx = _indices(bb, "tv_deeplabv3")
    head = TVDeepLabHead(bb.out_channels[idx], channels or scaled(bb, 256), num_classes=num_classes, in_index=idx,
                         dilations=tuple(dilations), align_corners=align_corners)
    return _segmentor(bb, head, aux, aux_idx, num_classes, align_corners)


@register("tv_lraspp", capabilities=FULLY_EXPORTABLE, tiny=[TINY_MOBILENETV3])
def tv_lraspp(
    *,
    num_classes: int,
    backbone: str = "mobilenetv3-large",
    backbone_kwargs: dict[str, Any] | None = None,
    aux: bool = False,
    channels: int | None = None,
    align_corners: bool = ALIGN_CORNERS,
) -> Segmentor:
    """torchvision ``lraspp_mobilenet_v3_large``: high level at stride 16, logits at 8; ``channels``
    (its ``inter_channels``) defaults to 128 scaled with the width. torchvision has no auxiliary head
    (``aux=True`` adds its FCNHead on the low-level map)."""
    bb = tv_backbone(backbone, backbone_kwargs)
    low, high = _indices(bb, "tv_lraspp")
    head = TVLRASPPHead([bb.out_channels[low], bb.out_channels[high]], channels or scaled(bb, 128),
                        num_classes=num_classes, in_index=(low, high), align_corners=align_corners)
    return _segmentor(bb, head, aux, low, num_classes, align_corners)
