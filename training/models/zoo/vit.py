"""ViT segmentors: SETR (naive, PUP, MLA) and Segmenter (linear, mask transformer), plus the ``vit-*`` backbones.

Defaults are MMSeg's ADE20K 512x512 configs: ``setr/setr_vit-l_{naive,pup}_8xb2-160k_ade20k-512x512.py``,
``setr/setr_vit-l-mla_8xb1-160k_ade20k-512x512.py`` (ViT-L, bilinear position-embedding resize, SETR's auxiliary
heads on the other backbone outputs), ``segmenter/segmenter_vit-t_mask_8xb1-160k_ade20k-512x512.py`` and
``segmenter/segmenter_vit-s_fcn_8xb1-160k_ade20k-512x512.py`` (bicubic resize, final norm, drop path 0.1).
Head widths given in absolute channels (256 for SETR) are multiplied by the backbone's ``width_scale``
(``embed_dims`` over the variant's), so narrow test models get narrow heads. Every output of a ViT has stride 16.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from torch import nn

from ..backbones.vit import VisionTransformer
from ..heads.fcn import FCNHead
from ..heads.segmenter import SegmenterMaskTransformerHead
from ..heads.setr import SETRMLAHead, SETRUPHead
from ..layers import ALIGN_CORNERS
from ..necks.mla import MLANeck
from ..registry import FULLY_EXPORTABLE, build_backbone, check_overrides, register, register_backbone
from ..segmentor import Segmentor
from .common import aux_head, scaled

#: ``vit-<variant>`` -> (embed_dims, num_layers, num_heads).
VIT_VARIANTS: dict[str, tuple[int, int, int]] = {
    "tiny": (192, 12, 3), "small": (384, 12, 6), "base": (768, 12, 12), "large": (1024, 24, 16),
}
VIT_PATTERN = r"vit-(tiny|small|base|large)"
#: Tiny test backbone: 2 layers of 32 dims, a 4x4 position-embedding grid (so 64x80 inputs resize it).
TINY_VIT: dict[str, Any] = {"embed_dims": 32, "num_layers": 2, "num_heads": 2, "img_size": 64}


def _vit_factory(m: re.Match, overrides: dict[str, Any], output_stride: int) -> nn.Module:
    spec = m.group(0)
    dims, depth, heads = VIT_VARIANTS[m.group(1)]
    check_overrides(spec, VisionTransformer, overrides)
    kwargs: dict[str, Any] = {"embed_dims": dims, "num_layers": depth, "num_heads": heads, **overrides}
    patch = kwargs.get("patch_size", 16)
    if output_stride != patch:
        raise ValueError(f"backbone {spec!r}: the output stride of a ViT is its patch_size ({patch}), got "
                         f"output_stride={output_stride}; pass backbone_kwargs={{'output_stride': {patch}}}")
    bb = VisionTransformer(**kwargs)
    bb.width_scale = bb.embed_dims / dims
    return bb


register_backbone(VIT_PATTERN, _vit_factory, "vit-tiny|small|base|large (MMSeg VisionTransformer, patch 16)")


def _vit(
    model: str, backbone: str, backbone_kwargs: dict[str, Any] | None, defaults: dict[str, Any],
    out_indices: Callable[[int], tuple[int, ...]] | None = None,
) -> VisionTransformer:
    """Build a ``vit-*`` backbone with the model's defaults under the user's ``backbone_kwargs``; ``out_indices``
    (a function of the depth) gives the default output layers."""
    m = re.fullmatch(VIT_PATTERN, backbone) if isinstance(backbone, str) else None
    if m is None:
        raise ValueError(f"{model}: backbone must be one of vit-tiny|small|base|large, got {backbone!r}")
    kwargs = {**defaults, **(backbone_kwargs or {})}
    if out_indices is not None and "out_indices" not in kwargs:
        kwargs["out_indices"] = out_indices(kwargs.get("num_layers", VIT_VARIANTS[m.group(1)][1]))
    return build_backbone(backbone, kwargs, kwargs.get("patch_size", 16))


def _spread(depth: int, deepest: tuple[int, ...]) -> tuple[int, ...]:
    """Four output layers: MMSeg's ``deepest`` for 24 layers, else every ``depth // 4``-th (all when depth < 4)."""
    if depth == 24:
        return deepest
    if depth < 4:
        return tuple(range(depth))
    return tuple(depth // 4 * (i + 1) - 1 for i in range(4))


_SETR_VIT = {"img_size": 512, "drop_rate": 0.0, "with_cls_token": True, "interpolate_mode": "bilinear"}


def _setr_up(
    num_classes: int, backbone: str, backbone_kwargs: dict[str, Any] | None, aux: bool, channels: int | None,
    num_convs: int, up_scale: int, kernel_size: int, aux_channels: int | None, aux_num_convs: int,
    aux_up_scale: int, aux_kernel_size: int, align_corners: bool, model: str,
) -> Segmentor:
    bb = _vit(model, backbone, backbone_kwargs, _SETR_VIT, lambda d: _spread(d, (9, 14, 19, 23)))
    n, dims = len(bb.out_indices), bb.embed_dims

    def up_head(index: int, width: int, convs: int, scale: int, kernel: int) -> SETRUPHead:
        return SETRUPHead(dims, width, num_classes=num_classes, in_index=index, num_convs=convs, up_scale=scale,
                          kernel_size=kernel, dropout_ratio=0.0, align_corners=align_corners)

    head = up_head(n - 1, channels or scaled(bb, 256), num_convs, up_scale, kernel_size)
    aux_heads = None
    if aux and n > 1:  # MMSeg: one auxiliary head on each backbone output but the decoded one
        width = aux_channels or scaled(bb, 256)
        aux_heads = nn.ModuleList(up_head(i, width, aux_num_convs, aux_up_scale, aux_kernel_size) for i in range(n - 1))
    return Segmentor(bb, head, aux_heads)


_TINY_SETR = [{"backbone_kwargs": TINY_VIT}]


@register("setr_naive", capabilities=FULLY_EXPORTABLE, tiny=_TINY_SETR)
def setr_naive(
    *,
    num_classes: int,
    backbone: str = "vit-large",
    backbone_kwargs: dict[str, Any] | None = None,
    aux: bool = True,
    channels: int | None = None,
    num_convs: int = 1,
    up_scale: int = 4,
    kernel_size: int = 1,
    aux_channels: int | None = None,
    aux_num_convs: int = 2,
    aux_up_scale: int = 4,
    aux_kernel_size: int = 1,
    align_corners: bool = ALIGN_CORNERS,
) -> Segmentor:
    """SETR-Naive (MMSeg ``setr_vit-l_naive``): ViT-L outputs of layers 9/14/19/23, SETRUPHead (1x1 conv, x4) on the
    last, three auxiliary SETRUPHeads (two 1x1 convs, x4 each) on the others; logits at stride 4."""
    return _setr_up(num_classes, backbone, backbone_kwargs, aux, channels, num_convs, up_scale, kernel_size,
                    aux_channels, aux_num_convs, aux_up_scale, aux_kernel_size, align_corners, "setr_naive")


@register("setr_pup", capabilities=FULLY_EXPORTABLE, tiny=_TINY_SETR)
def setr_pup(
    *,
    num_classes: int,
    backbone: str = "vit-large",
    backbone_kwargs: dict[str, Any] | None = None,
    aux: bool = True,
    channels: int | None = None,
    num_convs: int = 4,
    up_scale: int = 2,
    kernel_size: int = 3,
    aux_channels: int | None = None,
    aux_num_convs: int = 2,
    aux_up_scale: int = 4,
    aux_kernel_size: int = 3,
    align_corners: bool = ALIGN_CORNERS,
) -> Segmentor:
    """SETR-PUP (MMSeg ``setr_vit-l_pup``): progressive upsampling head (four 3x3 convs, x2 each) on ViT-L layer 23,
    auxiliary heads (two 3x3 convs, x4 each) on layers 9/14/19; logits at the input resolution (stride 1)."""
    return _setr_up(num_classes, backbone, backbone_kwargs, aux, channels, num_convs, up_scale, kernel_size,
                    aux_channels, aux_num_convs, aux_up_scale, aux_kernel_size, align_corners, "setr_pup")


@register("setr_mla", capabilities=FULLY_EXPORTABLE, tiny=_TINY_SETR)
def setr_mla(
    *,
    num_classes: int,
    backbone: str = "vit-large",
    backbone_kwargs: dict[str, Any] | None = None,
    aux: bool = True,
    neck_channels: int | None = None,
    mla_channels: int | None = None,
    up_scale: int = 4,
    aux_channels: int | None = None,
    align_corners: bool = ALIGN_CORNERS,
) -> Segmentor:
    """SETR-MLA (MMSeg ``setr_vit-l-mla``): ViT-L (no class token) layers 5/11/17/23, MLA neck (256), SETRMLAHead
    (4 x 128 channels, x4), one linear FCN auxiliary head per neck output; logits at stride 4."""
    defaults = {**_SETR_VIT, "with_cls_token": False}
    bb = _vit("setr_mla", backbone, backbone_kwargs, defaults, lambda d: _spread(d, (5, 11, 17, 23)))
    n = len(bb.out_indices)
    neck_ch = neck_channels or scaled(bb, 256)
    mla_ch = mla_channels or scaled(bb, 128)
    neck = MLANeck([bb.embed_dims] * n, neck_ch)
    head = SETRMLAHead([neck_ch] * n, n * mla_ch, num_classes=num_classes, in_index=tuple(range(n)),
                       mla_channels=mla_ch, up_scale=up_scale, dropout_ratio=0.0, align_corners=align_corners)
    aux_heads = None
    if aux:
        width = aux_channels or neck_ch
        if width != neck_ch:
            raise ValueError(f"setr_mla: the auxiliary heads are linear (num_convs=0), so aux_channels must equal "
                             f"neck_channels ({neck_ch}), got {width}")
        aux_heads = nn.ModuleList(
            FCNHead(neck_ch, neck_ch, num_classes=num_classes, in_index=i, num_convs=0, kernel_size=1,
                    concat_input=False, dropout_ratio=0.0, align_corners=align_corners)
            for i in range(n)
        )
    return Segmentor(bb, head, aux_heads, neck=neck)


_SEGMENTER_VIT = {"img_size": 512, "drop_rate": 0.0, "drop_path_rate": 0.1, "final_norm": True,
                  "with_cls_token": True, "interpolate_mode": "bicubic", "out_indices": -1}


def _segmenter_aux(bb: VisionTransformer, aux: bool, num_classes: int, aux_channels: int | None,
                   align_corners: bool) -> FCNHead | None:
    """MMSeg's Segmenter configs have no auxiliary head; ``aux=True`` adds the usual FCN one on the last output."""
    return aux_head(bb, num_classes, aux_channels, align_corners, default=256) if aux else None


@register("segmenter_linear", capabilities=FULLY_EXPORTABLE,
          tiny=[{"backbone_kwargs": TINY_VIT}, {"backbone_kwargs": {**TINY_VIT, "interpolate_mode": "bilinear"}}])
def segmenter_linear(
    *,
    num_classes: int,
    backbone: str = "vit-small",
    backbone_kwargs: dict[str, Any] | None = None,
    aux: bool = False,
    dropout_ratio: float = 0.0,
    aux_channels: int | None = None,
    align_corners: bool = ALIGN_CORNERS,
) -> Segmentor:
    """Segmenter, linear decoder (MMSeg ``segmenter_vit-s_fcn``): ViT-S with final norm, FCNHead with no convs (a
    1x1 classifier over the patch tokens); logits at stride 16."""
    bb = _vit("segmenter_linear", backbone, backbone_kwargs, _SEGMENTER_VIT)
    dims = bb.embed_dims
    head = FCNHead(dims, dims, num_classes=num_classes, in_index=len(bb.out_channels) - 1, num_convs=0,
                   concat_input=False, dropout_ratio=dropout_ratio, align_corners=align_corners)
    return Segmentor(bb, head, _segmenter_aux(bb, aux, num_classes, aux_channels, align_corners))


@register("segmenter_mask", capabilities=FULLY_EXPORTABLE, tiny=[{"backbone_kwargs": TINY_VIT, "num_layers": 1}])
def segmenter_mask(
    *,
    num_classes: int,
    backbone: str = "vit-tiny",
    backbone_kwargs: dict[str, Any] | None = None,
    aux: bool = False,
    num_layers: int = 2,
    num_heads: int | None = None,
    embed_dims: int | None = None,
    drop_path_rate: float = 0.1,
    aux_channels: int | None = None,
    align_corners: bool = ALIGN_CORNERS,
) -> Segmentor:
    """Segmenter, mask transformer (MMSeg ``segmenter_vit-t_mask``; ``backbone="vit-small"|"vit-base"`` for the
    S/B configs): 2 decoder layers with the backbone's heads and width; logits (class masks) at stride 16."""
    bb = _vit("segmenter_mask", backbone, backbone_kwargs, _SEGMENTER_VIT)
    dims = bb.embed_dims
    head = SegmenterMaskTransformerHead(
        dims, dims, num_classes=num_classes, in_index=len(bb.out_channels) - 1, num_layers=num_layers,
        num_heads=num_heads or bb.num_heads, embed_dims=embed_dims or dims, drop_path_rate=drop_path_rate,
        dropout_ratio=0.0, align_corners=align_corners,
    )
    return Segmentor(bb, head, _segmenter_aux(bb, aux, num_classes, aux_channels, align_corners))
