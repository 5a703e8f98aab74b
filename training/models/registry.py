"""Name -> builder registry for segmentors, and builders for the backbones they share.

Builders are keyword-only typed functions registered with ``@register("name", capabilities=...)``; ``build`` and
``build_from_config`` (for YAML configs) check every key against the builder's signature and raise ``ValueError``
naming any unknown key. :func:`model_info` says what each model supports (ONNX export, dynamic H/W,
``torch.compile``); ``tests/test_model_matrix.py`` checks every registered model against its declaration.

Head widths default to MMSeg's configs: ``channels = in_channels // 4`` on ResNet (512 for R50/R101, 128 for R18),
512 on MobileNetV2 and for UPerNet (256 for their auxiliary heads), 128 + a 256-channel neck for semantic FPN;
defaults given in absolute channels are multiplied by the backbone's ``width_scale`` (``base_channels / 64``,
``widen_factor``), so narrow test models get narrow heads.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from torch import nn

from .backbones.mobilenet_v2 import MobileNetV2
from .backbones.resnet import ResNet
from .heads.aspp import ASPPHead
from .heads.base import BaseDecodeHead
from .heads.fcn import FCNHead
from .heads.fpn_head import FPNHead
from .heads.psp import PSPHead
from .heads.sep_aspp import DepthwiseSeparableASPPHead
from .heads.uper import UPerHead
from .layers import ALIGN_CORNERS
from .necks.fpn import FPN
from .segmentor import Segmentor

Builder = Callable[..., Segmentor]
Backbone = ResNet | MobileNetV2
_REGISTRY: dict[str, Builder] = {}
_CAPABILITIES: dict[str, dict[str, bool]] = {}
_COMMON_KEYS = ("num_classes", "backbone", "backbone_kwargs", "aux")
#: What every model declares: ONNX export (opset 18, standard ops only), dynamic H/W in that export (else only the
#: batch is dynamic), and ``torch.compile(fullgraph=True)``. ``tests/test_model_matrix.py`` holds models to it.
CAPABILITY_KEYS = ("onnx", "dynamic_hw", "compile")
#: Declaration of the models built only from convs, BN, ReLU, bilinear/nearest resizes and global means.
FULLY_EXPORTABLE: dict[str, bool] = {"onnx": True, "dynamic_hw": True, "compile": True}

# Dilated ResNet, output stride 8 (MMSeg "-d8"): the default for FCN, PSPNet, DeepLabV3(+).
D8 = {"strides": (1, 2, 1, 1), "dilations": (1, 1, 2, 4)}
# Output stride 16 (MMSeg "-d16"), e.g. ``backbone_kwargs=D16``.
D16 = {"strides": (1, 2, 2, 1), "dilations": (1, 1, 1, 2)}
# Plain ResNet, output stride 32: the default for UPerNet and semantic FPN.
D32 = {"strides": (1, 2, 2, 2), "dilations": (1, 1, 1, 1)}
# MobileNetV2 presets: MMSeg's "m-v2-d8" configs, an analogous D16, and MMSeg's undilated default.
MV2_D8 = {"strides": (1, 2, 2, 1, 1, 1, 1), "dilations": (1, 1, 1, 2, 2, 4, 4)}
MV2_D16 = {"strides": (1, 2, 2, 2, 1, 1, 1), "dilations": (1, 1, 1, 1, 1, 2, 2)}
MV2_D32 = {"strides": (1, 2, 2, 2, 1, 2, 1), "dilations": (1, 1, 1, 1, 1, 1, 1)}
_PRESETS = {"resnet": {8: D8, 16: D16, 32: D32}, "mobilenetv2": {8: MV2_D8, 16: MV2_D16, 32: MV2_D32}}

_BACKBONE_RE = re.compile(r"^(?:resnet(18|34|50|101)(?:-(v1b|v1c))?|(mobilenetv2))$")


def register(name: str, capabilities: Mapping[str, bool]) -> Callable[[Builder], Builder]:
    """Decorator registering a segmentor builder under ``name``; ``capabilities`` must give every key of
    :data:`CAPABILITY_KEYS` as a bool (e.g. :data:`FULLY_EXPORTABLE`)."""
    if set(capabilities) != set(CAPABILITY_KEYS) or not all(isinstance(v, bool) for v in capabilities.values()):
        raise ValueError(f"model {name!r}: capabilities must map exactly {list(CAPABILITY_KEYS)} to bools, "
                         f"got {dict(capabilities)}")
    caps = dict(capabilities)

    def deco(fn: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        params = inspect.signature(fn).parameters
        missing = [k for k in _COMMON_KEYS if k not in params]
        if missing:
            raise TypeError(f"builder for {name!r} must accept keyword arguments {missing}")
        _REGISTRY[name] = fn
        _CAPABILITIES[name] = caps
        return fn

    return deco


def list_models() -> list[str]:
    """Names of all registered segmentors, sorted."""
    return sorted(_REGISTRY)


def _check_name(name: str) -> None:
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; registered models: {list_models()}")


def model_info(name: str) -> dict[str, Any]:
    """What the registry knows about model ``name``: ``capabilities`` (``onnx``, ``dynamic_hw``, ``compile``),
    ``defaults`` (every builder keyword with its default), ``options`` (the model-specific keywords) and ``doc``."""
    _check_name(name)
    fn = _REGISTRY[name]
    params = inspect.signature(fn).parameters
    return {
        "name": name,
        "capabilities": dict(_CAPABILITIES[name]),
        "defaults": {k: p.default for k, p in params.items() if p.default is not inspect.Parameter.empty},
        "options": _head_keys(name),
        "doc": (inspect.getdoc(fn) or "").split("\n")[0],
    }


def _head_keys(name: str) -> list[str]:
    params = inspect.signature(_REGISTRY[name]).parameters
    return [k for k in params if k not in _COMMON_KEYS]


def build(
    name: str,
    *,
    num_classes: int,
    backbone: str | None = None,
    backbone_kwargs: dict[str, Any] | None = None,
    aux: bool | None = None,
    **head_kwargs: Any,
) -> Segmentor:
    """Build the segmentor registered as ``name``, e.g. ``build("deeplabv3", num_classes=19)`` (DeepLabV3 R50-D8).

    Args:
        name: registered model name (see :func:`list_models`).
        num_classes: number of output classes.
        backbone: ``"resnet18"``, ``"resnet34"``, ``"resnet50"``, ``"resnet101"`` (v1c), the same with a ``"-v1b"``
            suffix (7x7 stem), or ``"mobilenetv2"``; ``None`` means the model's default (``"resnet50"``).
        backbone_kwargs: overrides for the backbone (:class:`ResNet`: ``base_channels``, ``stem_channels``,
            ``strides``, ...; :class:`MobileNetV2`: ``widen_factor``, ``strides``, ...), plus ``output_stride``
            (8, 16 or 32) picking a stride/dilation preset (the model's default otherwise).
        aux: add MMSeg's FCN auxiliary head on the stride-16 level (training only); ``None``: the model's default.
        **head_kwargs: model-specific head options (see the builder's signature or :func:`model_info`).
    """
    _check_name(name)
    allowed = _head_keys(name)
    unknown = sorted(set(head_kwargs) - set(allowed))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for model {name!r}; allowed: {sorted(allowed)}")
    common = {"backbone": backbone, "backbone_kwargs": backbone_kwargs, "aux": aux}
    common = {k: v for k, v in common.items() if v is not None}
    return _REGISTRY[name](num_classes=num_classes, **common, **head_kwargs)


def build_from_config(cfg: Mapping[str, Any]) -> Segmentor:
    """Build from a config mapping: ``name``, ``num_classes``, optional ``backbone``, ``backbone_kwargs``, ``aux``
    and the model's head options. Raises ``ValueError`` naming any missing or unknown key."""
    if not isinstance(cfg, Mapping):
        raise ValueError(f"model config must be a mapping, got {type(cfg).__name__}")
    for key in ("name", "num_classes"):
        if key not in cfg:
            raise ValueError(f"model config is missing required key {key!r}")
    name = cfg["name"]
    if name not in _REGISTRY:
        raise ValueError(f"model config: unknown model {name!r}; registered models: {list_models()}")
    allowed = {"name", *_COMMON_KEYS, *_head_keys(name)}
    unknown = sorted(set(cfg) - allowed)
    if unknown:
        raise ValueError(f"model config: unknown key(s) {unknown} for model {name!r}; allowed: {sorted(allowed)}")
    kwargs = {k: v for k, v in cfg.items() if k != "name"}
    return build(name, **kwargs)


def build_backbone(spec: str, overrides: Mapping[str, Any] | None = None, output_stride: int = 8) -> Backbone:
    """Build a backbone from a string such as ``"resnet50"`` (v1c), ``"resnet50-v1b"`` or ``"mobilenetv2"``.

    ``output_stride`` (or ``overrides["output_stride"]``) picks the stride/dilation preset (8, 16 or 32);
    explicit ``strides``/``dilations`` in ``overrides`` win over the preset.
    """
    m = _BACKBONE_RE.match(spec)
    if m is None:
        raise ValueError(
            f"unknown backbone {spec!r}; expected resnet18|34|50|101 with optional -v1b/-v1c suffix, or mobilenetv2"
        )
    family, cls = ("mobilenetv2", MobileNetV2) if m.group(3) else ("resnet", ResNet)
    overrides = dict(overrides or {})
    output_stride = overrides.pop("output_stride", output_stride)
    if output_stride not in _PRESETS[family]:
        raise ValueError(f"backbone {spec!r}: output_stride must be one of {sorted(_PRESETS[family])}, "
                         f"got {output_stride!r}")
    kwargs: dict[str, Any] = dict(_PRESETS[family][output_stride])
    if family == "resnet":
        kwargs.update(depth=int(m.group(1)), deep_stem=m.group(2) != "v1b")
    params = set(inspect.signature(cls).parameters) - {"depth"}  # depth comes from the name
    unknown = sorted(set(overrides) - params)
    if unknown:
        raise ValueError(f"unknown backbone_kwargs {unknown} for {spec!r}; allowed: "
                         f"{sorted(params | {'output_stride'})}")
    kwargs.update(overrides)
    return cls(**kwargs)


def _level(backbone: Backbone, level: int, what: str) -> int:
    """Index into the backbone's output tuple of pyramid level ``level`` (0..3: nominal strides 4..32)."""
    layer = backbone.level_indices[level]
    if layer not in backbone.out_indices:
        raise ValueError(f"{what} needs backbone layer {layer} (level {level}) in out_indices, "
                         f"got {backbone.out_indices}")
    return backbone.out_indices.index(layer)


def _scaled(backbone: Backbone, channels: int) -> int:
    """An MMSeg config width (for the full-width backbone) scaled by the backbone's ``width_scale``."""
    return max(1, round(channels * backbone.width_scale))


def _default_channels(backbone: Backbone, in_channels: int, full: int) -> int:
    """MMSeg's head width: ``in_channels // 4`` on ResNet (512 for R50, 128 for R18), else ``full`` scaled."""
    return in_channels // 4 if isinstance(backbone, ResNet) else _scaled(backbone, full)


def _aux_head(
    backbone: Backbone, num_classes: int, channels: int | None, align_corners: bool, default: int | None = None
) -> FCNHead:
    """MMSeg's auxiliary head: FCNHead on the stride-16 level (R50 stage 3: 1024 -> 256), one conv, dropout 0.1."""
    idx = _level(backbone, 2, "auxiliary head")
    in_ch = backbone.out_channels[idx]
    channels = channels or (_scaled(backbone, default) if default else _default_channels(backbone, in_ch, 256))
    return FCNHead(
        in_ch, channels, num_classes=num_classes, in_index=idx, num_convs=1, concat_input=False,
        dropout_ratio=0.1, align_corners=align_corners,
    )


def _segmentor(
    bb: Backbone, head: BaseDecodeHead, aux: bool, num_classes: int, aux_channels: int | None, align_corners: bool,
    aux_default: int | None = None, neck: nn.Module | None = None,
) -> Segmentor:
    aux_head = _aux_head(bb, num_classes, aux_channels, align_corners, aux_default) if aux else None
    return Segmentor(bb, head, aux_head, neck=neck)


def _top(bb: Backbone, what: str) -> tuple[int, int]:
    """(output index, channels) of the coarsest pyramid level, which single-input decode heads read."""
    idx = _level(bb, 3, what)
    return idx, bb.out_channels[idx]


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
    idx, in_ch = _top(bb, "PSPHead")
    head = PSPHead(
        in_ch, channels or _default_channels(bb, in_ch, 512), num_classes=num_classes, in_index=idx,
        pool_scales=tuple(pool_scales), dropout_ratio=dropout_ratio, align_corners=align_corners,
    )
    return _segmentor(bb, head, aux, num_classes, aux_channels, align_corners)


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
    idx, in_ch = _top(bb, "FCNHead")
    head = FCNHead(
        in_ch, channels or _default_channels(bb, in_ch, 512), num_classes=num_classes, in_index=idx,
        num_convs=num_convs, kernel_size=kernel_size, concat_input=concat_input, dilation=dilation,
        dropout_ratio=dropout_ratio, align_corners=align_corners,
    )
    return _segmentor(bb, head, aux, num_classes, aux_channels, align_corners)


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
    idx, in_ch = _top(bb, "ASPPHead")
    head = ASPPHead(
        in_ch, channels or _default_channels(bb, in_ch, 512), num_classes=num_classes, in_index=idx,
        dilations=_aspp_dilations(bb, dilations), dropout_ratio=dropout_ratio, align_corners=align_corners,
    )
    return _segmentor(bb, head, aux, num_classes, aux_channels, align_corners)


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
    idx, in_ch = _top(bb, "DepthwiseSeparableASPPHead")
    c1_idx = _level(bb, 0, "DepthwiseSeparableASPPHead low-level branch")
    c1_in = bb.out_channels[c1_idx]
    if c1_channels is None:
        c1_channels = max(1, c1_in * 48 // 256) if isinstance(bb, ResNet) else _scaled(bb, 48)
    head = DepthwiseSeparableASPPHead(
        in_ch, channels or _default_channels(bb, in_ch, 512), num_classes=num_classes, in_index=idx,
        c1_in_channels=c1_in, c1_channels=c1_channels, c1_in_index=c1_idx, dilations=_aspp_dilations(bb, dilations),
        dropout_ratio=dropout_ratio, align_corners=align_corners,
    )
    return _segmentor(bb, head, aux, num_classes, aux_channels, align_corners)


@register("upernet", capabilities=FULLY_EXPORTABLE)
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
    idx = tuple(_level(bb, lvl, "UPerHead") for lvl in range(4))
    head = UPerHead(
        [bb.out_channels[i] for i in idx], channels or _scaled(bb, 512), num_classes=num_classes, in_index=idx,
        pool_scales=tuple(pool_scales), dropout_ratio=dropout_ratio, align_corners=align_corners,
    )
    return _segmentor(bb, head, aux, num_classes, aux_channels, align_corners, aux_default=256)


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
    idx = tuple(_level(bb, lvl, "FPN") for lvl in range(4))
    if idx != tuple(range(len(bb.out_indices))):
        raise ValueError(f"fpn: the backbone must output exactly its 4 pyramid levels, got out_indices "
                         f"{bb.out_indices}")
    neck_ch = neck_channels or _scaled(bb, 256)
    neck = FPN(bb.out_channels, neck_ch)
    head = FPNHead(
        [neck_ch] * 4, channels or _scaled(bb, 128), num_classes=num_classes, in_index=idx,
        feature_strides=bb.out_strides, dropout_ratio=dropout_ratio, align_corners=align_corners,
    )
    aux_head = None
    if aux:
        aux_head = FCNHead(neck_ch, aux_channels or _scaled(bb, 256), num_classes=num_classes, in_index=idx[2],
                           num_convs=1, concat_input=False, dropout_ratio=0.1, align_corners=align_corners)
    return Segmentor(bb, head, aux_head, neck=neck)
