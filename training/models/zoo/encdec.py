"""Encoder-decoder segmentors: U-Net (MMSeg ``unet-s5-d16``), ENet, SegNet, LinkNet and PAN.

U-Net follows MMSeg 1.x exactly (state dict, parameters, logits). The others are not in MMSeg and are built per
their papers (layer choices documented in their backbone/head modules): ENet (Paszke et al. 2016), SegNet
(Badrinarayanan et al. 2017, VGG16-BN), LinkNet (Chaurasia & Culurciello 2017) and PAN (Li et al. 2018), the last
two as segmentation_models.pytorch builds them (same module names, so its checkpoints load after a prefix rename).

Each model without an auxiliary head in its paper takes ``aux=True`` to add MMSeg's usual one (FCNHead, one conv,
dropout 0.1) on its stride-16 map (stride 8 for ENet).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from ..backbones.enet import ENet
from ..backbones.resnet import ResNet
from ..backbones.segnet import VGGEncoder
from ..backbones.unet import UNet
from ..heads.aspp import ASPPHead
from ..heads.enet import ENetHead
from ..heads.fcn import FCNHead
from ..heads.linknet import LinkNetHead
from ..heads.pan import PANHead
from ..heads.psp import PSPHead
from ..heads.segnet import SegNetHead
from ..layers import ALIGN_CORNERS
from ..registry import (
    D32,
    FULLY_EXPORTABLE,
    TINY_MOBILENETV2,
    build_backbone,
    check_overrides,
    register,
    register_backbone,
)
from ..segmentor import Segmentor
from .common import default_channels, level, scaled

Backbone = nn.Module


def _fixed_stride(name: str, backbone_kwargs: dict[str, Any] | None) -> dict[str, Any]:
    kwargs = dict(backbone_kwargs or {})
    if "output_stride" in kwargs:
        raise ValueError(f"{name}: the backbone's output stride is fixed by the architecture; drop "
                         f"backbone_kwargs['output_stride'] ({kwargs['output_stride']!r})")
    return kwargs


def _fixed_factory(cls: type) -> Any:
    def factory(m: re.Match, overrides: dict[str, Any], output_stride: int) -> nn.Module:
        check_overrides(m.group(0), cls, overrides)
        return cls(**overrides)

    return factory


register_backbone(r"unet", _fixed_factory(UNet), "unet (MMSeg UNet, S5-D16 by default)")
register_backbone(r"enet", _fixed_factory(ENet), "enet (ENet encoder)")
register_backbone(r"vgg16-bn", _fixed_factory(VGGEncoder), "vgg16-bn (SegNet's encoder)")


def _check(name: str, bb: Backbone, cls: type) -> None:
    if not isinstance(bb, cls):
        raise ValueError(f"{name}: needs a {cls.__name__} backbone, got {type(bb).__name__}")


def _fcn_aux(bb: Backbone, index: int, num_classes: int, channels: int | None, align_corners: bool,
             default: int = 256) -> FCNHead:
    """MMSeg's auxiliary FCNHead (one conv, no concat, dropout 0.1) on output ``index`` of ``bb``."""
    in_ch = bb.out_channels[index]
    return FCNHead(in_ch, channels or default_channels(bb, in_ch, default), num_classes=num_classes,
                   in_index=index, num_convs=1, concat_input=False, dropout_ratio=0.1, align_corners=align_corners)


@register("unet", capabilities=FULLY_EXPORTABLE, tiny=[
    {"backbone_kwargs": {"base_channels": 8}},
    {"backbone_kwargs": {"base_channels": 8}, "decoder": "aspp"},
    {"backbone_kwargs": {"base_channels": 8}, "decoder": "psp"},
])
def unet(
    *,
    num_classes: int,
    backbone: str = "unet",
    backbone_kwargs: dict[str, Any] | None = None,
    aux: bool = True,
    decoder: str = "fcn",
    channels: int | None = None,
    dilations: Sequence[int] = (1, 12, 24, 36),
    pool_scales: Sequence[int] = (1, 2, 3, 6),
    dropout_ratio: float = 0.1,
    aux_channels: int | None = None,
    align_corners: bool = ALIGN_CORNERS,
) -> Segmentor:
    """U-Net S5-D16 (MMSeg ``unet-s5-d16_{fcn,deeplabv3,pspnet}``): ``decoder`` "fcn", "aspp" or "psp".

    The head reads the full-resolution decoder output (64 channels; FCN width 64, ASPP/PSP width 16 as MMSeg's
    configs, scaled with ``base_channels``); the auxiliary FCNHead (width 64) reads the stride-2 output.
    H and W must be multiples of 16.
    """
    bb = build_backbone(backbone, _fixed_stride("unet", backbone_kwargs), 16)
    _check("unet", bb, UNet)
    last = bb.num_stages - 1
    if last not in bb.out_indices or (aux and last - 1 not in bb.out_indices):
        raise ValueError(f"unet: the backbone must output decoder levels {last - 1} and {last}, got out_indices "
                         f"{bb.out_indices}")
    idx = bb.out_indices.index(last)
    in_ch = bb.out_channels[idx]
    common = dict(num_classes=num_classes, in_index=idx, dropout_ratio=dropout_ratio, align_corners=align_corners)
    if decoder == "fcn":
        head: nn.Module = FCNHead(in_ch, channels or scaled(bb, 64), num_convs=1, concat_input=False, **common)
    elif decoder == "aspp":
        head = ASPPHead(in_ch, channels or scaled(bb, 16), dilations=tuple(dilations), **common)
    elif decoder == "psp":
        head = PSPHead(in_ch, channels or scaled(bb, 16), pool_scales=tuple(pool_scales), **common)
    else:
        raise ValueError(f"unet: decoder must be 'fcn', 'aspp' or 'psp', got {decoder!r}")
    aux_head = None
    if aux:
        aux_head = _fcn_aux(bb, bb.out_indices.index(last - 1), num_classes, aux_channels or scaled(bb, 64),
                            align_corners)
    return Segmentor(bb, head, aux_head, size_divisor=bb.size_divisor)


@register("enet", capabilities=FULLY_EXPORTABLE, tiny=[
    {"backbone_kwargs": {"channels": [8, 16, 32], "depths": [1, 4, 1]}, "decoder_depths": [1, 1]},
])
def enet(
    *,
    num_classes: int,
    backbone: str = "enet",
    backbone_kwargs: dict[str, Any] | None = None,
    aux: bool = False,
    decoder_depths: Sequence[int] = (2, 1),
    aux_channels: int | None = None,
    align_corners: bool = ALIGN_CORNERS,
) -> Segmentor:
    """ENet (Paszke et al. 2016): 0.36M parameters, logits at full resolution; H, W multiples of 8."""
    bb = build_backbone(backbone, _fixed_stride("enet", backbone_kwargs), 8)
    _check("enet", bb, ENet)
    if bb.out_indices != (0, 1, 3):
        raise ValueError(f"enet: the decoder needs backbone out_indices (0, 1, 3), got {bb.out_indices}")
    head = ENetHead(bb.out_channels, bb.out_channels[0], num_classes=num_classes, in_index=(0, 1, 2),
                    depths=tuple(decoder_depths), align_corners=align_corners)
    aux_head = _fcn_aux(bb, 2, num_classes, aux_channels, align_corners, 32) if aux else None
    return Segmentor(bb, head, aux_head, size_divisor=bb.size_divisor)


@register("segnet", capabilities=FULLY_EXPORTABLE, tiny=[
    {"backbone_kwargs": {"channels": [8, 8, 16, 16, 16], "depths": [1, 1, 1, 1, 1]}},
])
def segnet(
    *,
    num_classes: int,
    backbone: str = "vgg16-bn",
    backbone_kwargs: dict[str, Any] | None = None,
    aux: bool = False,
    aux_channels: int | None = None,
    align_corners: bool = ALIGN_CORNERS,
) -> Segmentor:
    """SegNet (Badrinarayanan et al. 2017): VGG16-BN encoder, mirrored max-unpooling decoder, logits at stride 1."""
    bb = build_backbone(backbone, _fixed_stride("segnet", backbone_kwargs), 32)
    _check("segnet", bb, VGGEncoder)
    n = len(bb.depths)
    if bb.out_indices != tuple(range(n + 1)):
        raise ValueError(f"segnet: the decoder needs every encoder output, got out_indices {bb.out_indices}")
    head = SegNetHead(bb.out_channels, bb.out_channels[0], num_classes=num_classes, in_index=tuple(range(n + 1)),
                      depths=bb.depths, align_corners=align_corners)
    aux_head = _fcn_aux(bb, level(bb, 2, "auxiliary head"), num_classes, aux_channels, align_corners) if aux else None
    return Segmentor(bb, head, aux_head)


class ResNetWithStem(ResNet):
    """:class:`ResNet` that also returns its stem output (stride 2, before the max-pool) first, as smp's
    encoders do for LinkNet; same parameters and state-dict names. Outputs: (stem, layer1, ..., layer4)."""

    level_indices: tuple[int, ...] = (1, 2, 3, 4)

    def __init__(self, **kwargs: Any) -> None:
        if tuple(kwargs.get("out_indices", (0, 1, 2, 3))) != (0, 1, 2, 3):
            raise ValueError("ResNetWithStem: out_indices are fixed to all 4 stages")
        super().__init__(**kwargs)
        stem = self.stem[-2] if self.deep_stem else self.bn1
        self.out_channels = (stem.num_features, *self.out_channels)
        self.out_strides = (2, *self.out_strides)
        self.out_indices = (0, 1, 2, 3, 4)

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        """Stem map, then the 4 stage maps."""
        x = self.stem(x) if self.deep_stem else self.relu(self.bn1(self.conv1(x)))
        outs = [x]
        x = self.maxpool(x)
        for i in range(4):
            x = getattr(self, f"layer{i + 1}")(x)
            outs.append(x)
        return tuple(outs)


def _resnet_with_stem(spec: str, backbone_kwargs: dict[str, Any] | None) -> ResNetWithStem:
    m = re.fullmatch(r"resnet(18|34|50|101)(?:-(v1b|v1c))?", spec) if isinstance(spec, str) else None
    if m is None:
        raise ValueError(f"linknet: backbone must be a ResNet (resnet18|34|50|101[-v1b|-v1c]), got {spec!r}")
    kwargs = _fixed_stride("linknet", backbone_kwargs)
    check_overrides(spec, ResNet, kwargs, fixed=("depth",))
    return ResNetWithStem(**{**D32, "depth": int(m.group(1)), "deep_stem": m.group(2) != "v1b", **kwargs})


@register("linknet", capabilities=FULLY_EXPORTABLE, tiny=[
    {"backbone": "resnet18-v1b", "backbone_kwargs": {"base_channels": 8, "stem_channels": 8}},
    {"backbone": "resnet18", "backbone_kwargs": {"base_channels": 8, "stem_channels": 8}},
])
def linknet(
    *,
    num_classes: int,
    backbone: str = "resnet18-v1b",
    backbone_kwargs: dict[str, Any] | None = None,
    aux: bool = False,
    channels: int | None = None,
    aux_channels: int | None = None,
    align_corners: bool = ALIGN_CORNERS,
) -> Segmentor:
    """LinkNet (Chaurasia & Culurciello 2017) as smp's ``Linknet``: undilated ResNet (v1b = smp's encoder),
    5 decoder blocks added to the encoder maps, 32-channel last map, logits at full resolution."""
    bb = _resnet_with_stem(backbone, backbone_kwargs)
    head = LinkNetHead(bb.out_channels, channels or scaled(bb, 32), num_classes=num_classes,
                       in_index=tuple(range(5)), align_corners=align_corners)
    aux_head = _fcn_aux(bb, level(bb, 2, "auxiliary head"), num_classes, aux_channels, align_corners) if aux else None
    return Segmentor(bb, head, aux_head)


@register("pan", capabilities=FULLY_EXPORTABLE, tiny=[
    {"backbone": "resnet18-v1b", "backbone_kwargs": {"base_channels": 8, "stem_channels": 8}},
    TINY_MOBILENETV2,
])
def pan(
    *,
    num_classes: int,
    backbone: str = "resnet50-v1b",
    backbone_kwargs: dict[str, Any] | None = None,
    aux: bool = False,
    channels: int | None = None,
    aux_channels: int | None = None,
    align_corners: bool = ALIGN_CORNERS,
) -> Segmentor:
    """PAN (Li et al. 2018) as smp's ``PAN``: ResNet-50 (v1b) at output stride 16 (every conv of the last stage
    dilated 2, smp's default), FPA + 3 GAUs, 32 channels, 3x3 classifier, logits at stride 4.

    On ResNet-18/34 our BasicBlock dilates only its first conv (MMSeg's ResNet) where smp dilates both, so smp
    PAN checkpoints of those depths load but compute slightly differently; ResNet-50/101 match smp exactly.
    """
    kwargs = dict(backbone_kwargs or {})
    kwargs.setdefault("output_stride", 16)
    if backbone.startswith("resnet"):
        kwargs.setdefault("contract_dilation", False)  # smp dilates the first block of layer4 too
    bb = build_backbone(backbone, kwargs, 16)
    idx = tuple(level(bb, lvl, "PANHead") for lvl in range(4))
    head = PANHead([bb.out_channels[i] for i in idx], channels or scaled(bb, 32), num_classes=num_classes,
                   in_index=idx, align_corners=align_corners)
    aux_head = _fcn_aux(bb, idx[2], num_classes, aux_channels, align_corners) if aux else None
    return Segmentor(bb, head, aux_head)
