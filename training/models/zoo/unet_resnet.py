"""U-Net with a ResNet encoder, as segmentation_models.pytorch's ``smp.Unet("resnet34")``.

Not MMSeg's U-Net (``unet``: the S5-D16 encoder of its own) but the U-Net decoder of
:mod:`training.models.heads.unet_decoder` on an undilated ResNet that also returns its stride-2 stem map
(:class:`~training.models.zoo.encdec.ResNetWithStem`). With the default ``resnet34-v1b`` (torchvision's ResNet, smp's
encoder) and smp's decoder widths it has smp's parameters and state-dict layout: 24,437,819 parameters for 11
classes (21,284,672 encoder + 3,151,552 decoder + 1,595 classifier).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from ..backbones.resnet import ResNet
from ..heads.unet_decoder import SMP_DECODER_CHANNELS, UNetDecoderHead
from ..layers import ALIGN_CORNERS
from ..registry import D32, FULLY_EXPORTABLE, check_overrides, register
from ..segmentor import Segmentor
from .common import aux_head, scaled
from .encdec import ResNetWithStem

_RESNET = r"resnet(18|34|50|101)(?:-(v1b|v1c))?"


def resnet_encoder(model: str, spec: str, backbone_kwargs: dict[str, Any] | None) -> ResNetWithStem:
    """An undilated ResNet (output stride 32) returning (stem, layer1, ..., layer4), from a ``resnet*`` name."""
    m = re.fullmatch(_RESNET, spec) if isinstance(spec, str) else None
    if m is None:
        raise ValueError(f"{model}: backbone must be a ResNet (resnet18|34|50|101[-v1b|-v1c]), got {spec!r}")
    kwargs = dict(backbone_kwargs or {})
    if "output_stride" in kwargs:
        raise ValueError(f"{model}: the encoder's output stride is fixed to 32 by the U-Net decoder; drop "
                         f"backbone_kwargs['output_stride'] ({kwargs['output_stride']!r})")
    check_overrides(spec, ResNet, kwargs, fixed=("depth",))
    return ResNetWithStem(**{**D32, "depth": int(m.group(1)), "deep_stem": m.group(2) != "v1b", **kwargs})


_TINY = {"base_channels": 8, "stem_channels": 8}


@register("unet_resnet", capabilities=FULLY_EXPORTABLE, tiny=[
    {"backbone": "resnet18-v1b", "backbone_kwargs": _TINY},
    {"backbone": "resnet18", "backbone_kwargs": _TINY, "aux": True},
])
def unet_resnet(
    *,
    num_classes: int,
    backbone: str = "resnet34-v1b",
    backbone_kwargs: dict[str, Any] | None = None,
    aux: bool = False,
    decoder_channels: Sequence[int] | None = None,
    kernel_size: int = 3,
    aux_channels: int | None = None,
    align_corners: bool = ALIGN_CORNERS,
) -> Segmentor:
    """U-Net on a ResNet as smp's ``Unet``: 5 decoder blocks (x2 nearest, concat skip, two 3x3 conv-BN-ReLU) over
    the stem and layer1..4, widths 256/128/64/32/16, 3x3 classifier, logits at full resolution.

    ``decoder_channels`` defaults to smp's widths scaled with the backbone's width (so tiny backbones get tiny
    decoders); ``aux=True`` adds MMSeg's FCN auxiliary head on layer3 (smp has none).
    """
    bb = resnet_encoder("unet_resnet", backbone, backbone_kwargs)
    widths = tuple(decoder_channels) if decoder_channels is not None else tuple(
        scaled(bb, c) for c in SMP_DECODER_CHANNELS)
    head = UNetDecoderHead(bb.out_channels, widths, kernel_size=kernel_size, num_classes=num_classes,
                           in_index=tuple(range(len(bb.out_channels))), align_corners=align_corners)
    aux_module = aux_head(bb, num_classes, aux_channels, align_corners) if aux else None
    return Segmentor(bb, head, aux_module)
