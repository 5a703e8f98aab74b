"""MobileNetV3 backbones (``mobilenetv3-large``, ``mobilenetv3-small``) and LR-ASPP (MMSeg ``lraspp_m-v3-d8``)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from torch import nn

from ..backbones.mobilenet_v3 import MobileNetV3
from ..heads.lraspp import LRASPPHead
from ..layers import ALIGN_CORNERS
from ..registry import FULLY_EXPORTABLE, build_backbone, check_overrides, register, register_backbone
from ..segmentor import Segmentor
from .common import scaled, segmentor

#: Tiny test configurations: quarter-width MobileNetV3 (8-40 channels in the first stages).
TINY_MOBILENETV3_LARGE: dict[str, Any] = {"backbone": "mobilenetv3-large", "backbone_kwargs": {"widen_factor": 0.25}}
TINY_MOBILENETV3_SMALL: dict[str, Any] = {"backbone": "mobilenetv3-small", "backbone_kwargs": {"widen_factor": 0.25}}
# The 64x80 test images give 8x10 maps at stride 8, smaller than MMSeg's 49x49 image pool (which then averages
# the whole map, as tiny[0] checks); tiny[1] uses several 5x5 windows instead.
_TINY_POOL: dict[str, Any] = {"pool_kernel": 5, "pool_stride": (2, 3)}


def _mobilenetv3_factory(m: re.Match, overrides: dict[str, Any], output_stride: int) -> nn.Module:
    check_overrides(m.group(0), MobileNetV3, overrides, fixed=("arch", "output_stride"))
    return MobileNetV3(arch=m.group(1), output_stride=output_stride, **overrides)


register_backbone(r"mobilenetv3-(large|small)", _mobilenetv3_factory, "mobilenetv3-large|small")


@register("lraspp", capabilities=FULLY_EXPORTABLE,
          tiny=[TINY_MOBILENETV3_LARGE, {**TINY_MOBILENETV3_SMALL, **_TINY_POOL}])
def lraspp(
    *,
    num_classes: int,
    backbone: str = "mobilenetv3-large",
    backbone_kwargs: dict[str, Any] | None = None,
    aux: bool = False,
    channels: int | None = None,
    branch_channels: Sequence[int] | None = None,
    pool_kernel: int = 49,
    pool_stride: Sequence[int] = (16, 20),
    dropout_ratio: float = 0.1,
    aux_channels: int | None = None,
    align_corners: bool = ALIGN_CORNERS,
) -> Segmentor:
    """LR-ASPP (MMSeg ``lraspp_m-v3-d8`` / ``lraspp_m-v3s-d8``): MobileNetV3 at output stride 8, logits at 2/4.

    The head reads every backbone output (Large: layers 1, 3, 16; Small: 0, 1, 12); ``channels`` defaults to 128
    and ``branch_channels`` to (32, 64), both scaled with the backbone width. The image pool is MMSeg's 49x49
    window with strides (16, 20) (``pool_kernel``/``pool_stride``); on stride-8 maps shorter than the window
    (inputs under 385 px, where MMSeg fails) it averages the whole side. MMSeg's config has no auxiliary head.
    """
    bb = build_backbone(backbone, backbone_kwargs, 8)
    n = len(bb.out_indices)
    if branch_channels is None:
        if n != 3:
            raise ValueError(f"lraspp: give branch_channels (one per backbone output but the last) for a backbone "
                             f"with {n} outputs")
        branch_channels = (scaled(bb, 32), scaled(bb, 64))
    head = LRASPPHead(
        list(bb.out_channels), channels or scaled(bb, 128), num_classes=num_classes, in_index=tuple(range(n)),
        branch_channels=tuple(branch_channels), pool_kernel=pool_kernel, pool_stride=tuple(pool_stride),
        norm_eps=1e-3, dropout_ratio=dropout_ratio, align_corners=align_corners,
    )
    return segmentor(bb, head, aux, num_classes, aux_channels, align_corners)
