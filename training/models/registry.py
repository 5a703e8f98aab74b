"""Name -> builder registry for segmentors, and builders for the backbones they share.

Builders are keyword-only typed functions registered with ``@register("name")``; ``build`` and
``build_from_config`` (for YAML configs) check every key against the builder's signature and raise ``ValueError``
naming any unknown key.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .backbones.resnet import ResNet
from .heads.fcn import FCNHead
from .heads.psp import PSPHead
from .layers import ALIGN_CORNERS
from .segmentor import Segmentor

Builder = Callable[..., Segmentor]
_REGISTRY: dict[str, Builder] = {}
_COMMON_KEYS = ("num_classes", "backbone", "backbone_kwargs", "aux")

# Dilated ResNet, output stride 8 (MMSeg "-d8"): the default for every segmentor here.
D8 = {"strides": (1, 2, 1, 1), "dilations": (1, 1, 2, 4)}
# Output stride 16 (MMSeg "-d16"), e.g. ``backbone_kwargs=D16``.
D16 = {"strides": (1, 2, 2, 1), "dilations": (1, 1, 1, 2)}

_BACKBONE_RE = re.compile(r"^resnet(18|34|50|101)(?:-(v1b|v1c))?$")


def register(name: str) -> Callable[[Builder], Builder]:
    """Decorator registering a segmentor builder under ``name``."""

    def deco(fn: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        params = inspect.signature(fn).parameters
        missing = [k for k in _COMMON_KEYS if k not in params]
        if missing:
            raise TypeError(f"builder for {name!r} must accept keyword arguments {missing}")
        _REGISTRY[name] = fn
        return fn

    return deco


def list_models() -> list[str]:
    """Names of all registered segmentors, sorted."""
    return sorted(_REGISTRY)


def _head_keys(name: str) -> list[str]:
    params = inspect.signature(_REGISTRY[name]).parameters
    return [k for k in params if k not in _COMMON_KEYS]


def build(
    name: str,
    *,
    num_classes: int,
    backbone: str = "resnet50",
    backbone_kwargs: dict[str, Any] | None = None,
    aux: bool = True,
    **head_kwargs: Any,
) -> Segmentor:
    """Build the segmentor registered as ``name``, e.g. ``build("pspnet", num_classes=19)`` (PSPNet R50-D8).

    Args:
        name: registered model name (see :func:`list_models`).
        num_classes: number of output classes.
        backbone: ``"resnet18"``, ``"resnet34"``, ``"resnet50"``, ``"resnet101"`` (v1c, output stride 8) or the same
            with a ``"-v1b"`` suffix (7x7 stem).
        backbone_kwargs: overrides for :class:`ResNet` (``base_channels``, ``stem_channels``, ``strides``, ...).
        aux: add the FCN auxiliary head on stage 3 (training only).
        **head_kwargs: model-specific head options (see the builder's signature).
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; registered models: {list_models()}")
    allowed = _head_keys(name)
    unknown = sorted(set(head_kwargs) - set(allowed))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for model {name!r}; allowed: {sorted(allowed)}")
    return _REGISTRY[name](
        num_classes=num_classes, backbone=backbone, backbone_kwargs=backbone_kwargs, aux=aux, **head_kwargs
    )


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


def build_backbone(spec: str, overrides: Mapping[str, Any] | None = None) -> ResNet:
    """Build a backbone from a string such as ``"resnet50"`` (v1c, D8) or ``"resnet50-v1b"``."""
    m = _BACKBONE_RE.match(spec)
    if m is None:
        raise ValueError(f"unknown backbone {spec!r}; expected resnet18|34|50|101 with optional -v1b/-v1c suffix")
    kwargs: dict[str, Any] = {"depth": int(m.group(1)), "deep_stem": m.group(2) != "v1b", **D8}
    overrides = dict(overrides or {})
    params = set(inspect.signature(ResNet).parameters) - {"depth"}  # depth comes from the name
    unknown = sorted(set(overrides) - params)
    if unknown:
        raise ValueError(f"unknown backbone_kwargs {unknown} for {spec!r}; allowed: {sorted(params)}")
    kwargs.update(overrides)
    return ResNet(**kwargs)


def _stage_index(backbone: ResNet, stage: int, what: str) -> int:
    """Index into the backbone's output tuple of ResNet stage ``stage`` (0-based)."""
    if stage not in backbone.out_indices:
        raise ValueError(f"{what} needs ResNet stage {stage} in out_indices, got {backbone.out_indices}")
    return backbone.out_indices.index(stage)


def _aux_head(backbone: ResNet, num_classes: int, channels: int | None, align_corners: bool) -> FCNHead:
    """MMSeg's auxiliary head: FCNHead on stage 3 (1024 -> 256 for R50), one conv, no concat, dropout 0.1."""
    idx = _stage_index(backbone, 2, "auxiliary head")
    in_ch = backbone.out_channels[idx]
    return FCNHead(
        in_ch, channels or in_ch // 4, num_classes=num_classes, in_index=idx, num_convs=1, concat_input=False,
        dropout_ratio=0.1, align_corners=align_corners,
    )


@register("pspnet")
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
    """PSPNet (MMSeg ``pspnet_r*-d8``). ``channels`` defaults to in_channels // 4 (512 for R50, 128 for R18)."""
    bb = build_backbone(backbone, backbone_kwargs)
    idx = _stage_index(bb, 3, "PSPHead")
    in_ch = bb.out_channels[idx]
    head = PSPHead(
        in_ch, channels or in_ch // 4, num_classes=num_classes, in_index=idx, pool_scales=tuple(pool_scales),
        dropout_ratio=dropout_ratio, align_corners=align_corners,
    )
    aux_head = _aux_head(bb, num_classes, aux_channels, align_corners) if aux else None
    return Segmentor(bb, head, aux_head)


@register("fcn")
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
    """FCN (MMSeg ``fcn_r*-d8``). ``channels`` defaults to in_channels // 4 (512 for R50, 128 for R18)."""
    bb = build_backbone(backbone, backbone_kwargs)
    idx = _stage_index(bb, 3, "FCNHead")
    in_ch = bb.out_channels[idx]
    head = FCNHead(
        in_ch, channels or in_ch // 4, num_classes=num_classes, in_index=idx, num_convs=num_convs,
        kernel_size=kernel_size, concat_input=concat_input, dilation=dilation, dropout_ratio=dropout_ratio,
        align_corners=align_corners,
    )
    aux_head = _aux_head(bb, num_classes, aux_channels, align_corners) if aux else None
    return Segmentor(bb, head, aux_head)
