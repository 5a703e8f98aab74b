"""SegFormer (MMSeg ``segformer_mit-b*``): the MiT encoder (backbones ``mit-b0`` .. ``mit-b5``) + the all-MLP head.

The ``mit-b{n}`` backbones take MMSeg's config values (embed dims 32 for B0 and 64 for B1-B5, heads (1, 2, 5, 8),
the per-variant layer counts, drop path 0.1); ``backbone_kwargs`` override any :class:`MixVisionTransformer`
argument (``embed_dims``, ``num_layers``, ``num_heads``, ``stage_dims``, ``norm_eps``, ...). Their
``width_scale`` is the last stage's width over the variant's own (256 for B0, 512 for B1-B5), so the head's
default 256 channels (MMSeg's value for every variant) shrinks with narrowed test models. Like the other
fixed-stride backbones (``stdc``, ``bisenetv2``), the MiT ignores ``output_stride`` (no dilated variant).
"""

from __future__ import annotations

import re
from typing import Any

from torch import nn

from ..backbones.mit import MIT_ARCH, MIT_HEADS, MixVisionTransformer
from ..heads.segformer import SegformerHead
from ..layers import ALIGN_CORNERS
from ..registry import FULLY_EXPORTABLE, build_backbone, check_overrides, register, register_backbone
from ..segmentor import Segmentor
from .common import level, scaled, segmentor

#: MMSeg's SegFormer config values shared by every variant.
MIT_DEFAULTS: dict[str, Any] = {"num_heads": MIT_HEADS, "drop_path_rate": 0.1, "qkv_bias": True, "mlp_ratio": 4}
#: A tiny MiT for tests (8-wide heads, one layer per stage: 8/16/40/64 channels).
TINY_MIT: dict[str, Any] = {"embed_dims": 8, "num_layers": (1, 1, 1, 1)}


def _mit_factory(m: re.Match, overrides: dict[str, Any], output_stride: int) -> nn.Module:
    variant = f"b{m.group(1)}"
    check_overrides(m.group(0), MixVisionTransformer, overrides)
    embed_dims, num_layers = MIT_ARCH[variant]
    kwargs: dict[str, Any] = {**MIT_DEFAULTS, "embed_dims": embed_dims, "num_layers": num_layers, **overrides}
    bb = MixVisionTransformer(**kwargs)  # fixed strides (4..32, set by ``strides``): ``output_stride`` does not apply
    bb.width_scale = bb.stage_dims[-1] / (embed_dims * MIT_HEADS[-1])
    return bb


register_backbone(r"mit-b([0-5])", _mit_factory, "mit-b0..b5 (SegFormer's Mix Transformer)")


@register(
    "segformer",
    capabilities=FULLY_EXPORTABLE,
    tiny=[
        {"backbone": "mit-b0", "backbone_kwargs": TINY_MIT, "channels": 16},
        {"backbone": "mit-b2", "backbone_kwargs": {**TINY_MIT, "qkv_bias": False, "norm_eps": 1e-5},
         "channels": 16, "linear_levels": True},
    ],
)
def segformer(
    *,
    num_classes: int,
    backbone: str = "mit-b0",
    backbone_kwargs: dict[str, Any] | None = None,
    aux: bool = False,
    channels: int | None = None,
    dropout_ratio: float = 0.1,
    linear_levels: bool = False,
    aux_channels: int | None = None,
    align_corners: bool = ALIGN_CORNERS,
) -> Segmentor:
    """SegFormer (MMSeg ``segformer_mit-b*``): all four MiT stages fused at stride 4.

    ``channels`` defaults to MMSeg's 256 (scaled with the backbone width); ``linear_levels=True`` gives the
    original / Hugging Face decoder (per-level linear projections without BN and ReLU). MMSeg's configs have no
    auxiliary head; ``aux=True`` adds the usual FCN head on the stride-16 level.
    """
    bb = build_backbone(backbone, backbone_kwargs, 32)  # CNN backbones: their undilated preset
    idx = [level(bb, i, "SegformerHead") for i in range(4)]
    head = SegformerHead(
        [bb.out_channels[i] for i in idx], channels or scaled(bb, 256), num_classes=num_classes, in_index=idx,
        dropout_ratio=dropout_ratio, align_corners=align_corners, linear_levels=linear_levels,
    )
    return segmentor(bb, head, aux, num_classes, aux_channels, align_corners, aux_default=256)
