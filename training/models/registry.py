"""Name -> builder registries for segmentors and backbones.

Segmentor builders are keyword-only typed functions registered with ``@register("name", capabilities=..., tiny=...)``
(they live in ``training/models/zoo/``, one module per family, all imported by ``training.models``); ``build`` and
``build_from_config`` (for YAML configs) check every key against the builder's signature and raise ``ValueError``
naming any unknown key. :func:`model_info` says what each model supports (ONNX export, dynamic H/W,
``torch.compile``) and gives the tiny configurations ``tests/test_model_matrix.py`` checks it with.

Backbone families register a name pattern with :func:`register_backbone`; ``build_backbone("resnet50")``,
``build_backbone("mit-b0")`` and so on dispatch on it. Every backbone returns a tuple of NCHW maps and exposes
``out_channels``, ``out_strides``, ``out_indices``, ``level_indices`` (output layer of each pyramid level 0..3, strides
4..32), ``in_channels``, ``output_stride`` and ``width_scale`` (1.0 at the reference width), and optionally
``size_divisor`` (input H, W must be multiples of it, e.g. ConvNeXt's 32).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from torch import nn

from .backbones.mobilenet_v2 import MobileNetV2
from .backbones.resnet import ResNet
from .segmentor import Segmentor

Builder = Callable[..., Segmentor]
#: ``factory(match, overrides, output_stride) -> backbone`` for a name matched by a registered pattern.
BackboneFactory = Callable[[re.Match, dict[str, Any], int], nn.Module]
_REGISTRY: dict[str, Builder] = {}
_CAPABILITIES: dict[str, dict[str, bool]] = {}
_TINY: dict[str, list[dict[str, Any]]] = {}
_BACKBONES: list[tuple[re.Pattern, BackboneFactory, str]] = []
_COMMON_KEYS = ("num_classes", "backbone", "backbone_kwargs", "aux")
#: What every model declares: ONNX export (opset 18, standard ops only), dynamic H/W in that export (else only the
#: batch is dynamic), and ``torch.compile(fullgraph=True)``. ``tests/test_model_matrix.py`` holds models to it.
CAPABILITY_KEYS = ("onnx", "dynamic_hw", "compile")
#: Declaration of the models built only from convs, BN, ReLU, bilinear/nearest resizes and global means.
FULLY_EXPORTABLE: dict[str, bool] = {"onnx": True, "dynamic_hw": True, "compile": True}

#: Tiny test configurations (build keywords) on the two CNN backbones shared by most models.
TINY_RESNET: dict[str, Any] = {"backbone": "resnet18", "backbone_kwargs": {"base_channels": 8, "stem_channels": 8}}
TINY_MOBILENETV2: dict[str, Any] = {"backbone": "mobilenetv2", "backbone_kwargs": {"widen_factor": 0.25}}
TINY_CNN = (TINY_RESNET, TINY_MOBILENETV2)

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


def register(
    name: str, capabilities: Mapping[str, bool], tiny: Sequence[Mapping[str, Any]] = TINY_CNN
) -> Callable[[Builder], Builder]:
    """Decorator registering a segmentor builder under ``name``.

    ``capabilities`` must give every key of :data:`CAPABILITY_KEYS` as a bool (e.g. :data:`FULLY_EXPORTABLE`);
    ``tiny`` lists build keywords (``backbone``, ``backbone_kwargs``, head options) of small instances for the test
    matrix, the first of which is also exported to ONNX.
    """
    if set(capabilities) != set(CAPABILITY_KEYS) or not all(isinstance(v, bool) for v in capabilities.values()):
        raise ValueError(f"model {name!r}: capabilities must map exactly {list(CAPABILITY_KEYS)} to bools, "
                         f"got {dict(capabilities)}")
    if not tiny:
        raise ValueError(f"model {name!r}: give at least one tiny test configuration")
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
        _TINY[name] = [dict(t) for t in tiny]
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
    ``defaults`` (every builder keyword with its default), ``options`` (the model-specific keywords), ``tiny``
    (small test configurations) and ``doc``."""
    _check_name(name)
    fn = _REGISTRY[name]
    params = inspect.signature(fn).parameters
    return {
        "name": name,
        "capabilities": dict(_CAPABILITIES[name]),
        "defaults": {k: p.default for k, p in params.items() if p.default is not inspect.Parameter.empty},
        "options": _head_keys(name),
        "tiny": [dict(t) for t in _TINY[name]],
        "doc": (inspect.getdoc(fn) or "").split("\n")[0],
    }


def builder(name: str) -> Builder:
    """The builder function registered as ``name`` (e.g. to inspect its signature)."""
    _check_name(name)
    return _REGISTRY[name]


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
        backbone: a backbone name (see :func:`backbone_names`), e.g. ``"resnet50"`` (v1c), ``"resnet50-v1b"``
            (7x7 stem), ``"mobilenetv2"``; ``None`` means the model's default.
        backbone_kwargs: overrides for the backbone (:class:`ResNet`: ``base_channels``, ``stem_channels``,
            ``strides``, ...; :class:`MobileNetV2`: ``widen_factor``, ``strides``, ...), plus ``output_stride``
            (8, 16 or 32) picking a stride/dilation preset on the CNN backbones.
        aux: add the model's auxiliary head (training only); ``None``: the model's default.
        **head_kwargs: model-specific head options (see the builder's signature or :func:`model_info`).
    """
    _check_name(name)
    allowed = _head_keys(name)
    unknown = sorted(set(head_kwargs) - set(allowed))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for model {name!r}; allowed: {sorted(allowed)}")
    common = {"backbone": backbone, "backbone_kwargs": backbone_kwargs, "aux": aux}
    common = {k: v for k, v in common.items() if v is not None}
    model = _REGISTRY[name](num_classes=num_classes, **common, **head_kwargs)
    # What rebuilds this model (checkpoints written by the converters store it as the model config).
    model.build_spec = {"name": name, "num_classes": num_classes, **common, "head_kwargs": dict(head_kwargs)}
    return model


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


def register_backbone(pattern: str, factory: BackboneFactory, describe: str) -> None:
    """Register a backbone family: names fully matching regex ``pattern`` are built by ``factory(match,
    overrides, output_stride)``; ``describe`` is the human form shown in errors (e.g. ``"mit-b0..b5"``)."""
    _BACKBONES.append((re.compile(pattern), factory, describe))


def backbone_names() -> list[str]:
    """Human descriptions of every registered backbone family."""
    return [describe for _, _, describe in _BACKBONES]


def is_backbone(spec: str) -> bool:
    """Whether ``spec`` names a registered backbone."""
    return any(pattern.fullmatch(spec) for pattern, _, _ in _BACKBONES)


def check_overrides(spec: str, cls: type, overrides: Mapping[str, Any], fixed: Sequence[str] = ()) -> None:
    """Raise ``ValueError`` naming the keys of ``overrides`` that ``cls``'s constructor does not take (or that the
    backbone name already fixes, ``fixed``)."""
    params = set(inspect.signature(cls).parameters) - set(fixed)
    unknown = sorted(set(overrides) - params)
    if unknown:
        allowed = sorted(params | {"output_stride"})
        raise ValueError(f"unknown backbone_kwargs {unknown} for {spec!r}; allowed: {allowed}")


def build_backbone(spec: str, overrides: Mapping[str, Any] | None = None, output_stride: int = 8) -> nn.Module:
    """Build a backbone from its name, e.g. ``"resnet50"`` (v1c), ``"resnet50-v1b"`` or ``"mobilenetv2"``.

    ``output_stride`` (or ``overrides["output_stride"]``) picks the stride/dilation preset of the CNN backbones
    (8, 16 or 32); explicit ``strides``/``dilations`` in ``overrides`` win over the preset.
    """
    if not isinstance(spec, str):
        raise ValueError(f"backbone must be a name (str), got {type(spec).__name__}")
    overrides = dict(overrides or {})
    output_stride = overrides.pop("output_stride", output_stride)
    for pattern, factory, _ in _BACKBONES:
        m = pattern.fullmatch(spec)
        if m is not None:
            return factory(m, overrides, output_stride)
    raise ValueError(f"unknown backbone {spec!r}; expected one of: {', '.join(backbone_names())}")


def _cnn_factory(family: str) -> BackboneFactory:
    def factory(m: re.Match, overrides: dict[str, Any], output_stride: int) -> nn.Module:
        spec = m.group(0)
        if output_stride not in _PRESETS[family]:
            raise ValueError(f"backbone {spec!r}: output_stride must be one of {sorted(_PRESETS[family])}, "
                             f"got {output_stride!r}")
        kwargs: dict[str, Any] = dict(_PRESETS[family][output_stride])
        cls: type = MobileNetV2
        if family == "resnet":
            cls = ResNet
            kwargs.update(depth=int(m.group(1)), deep_stem=m.group(2) != "v1b")
        check_overrides(spec, cls, overrides, fixed=("depth",))
        kwargs.update(overrides)
        return cls(**kwargs)

    return factory


register_backbone(r"resnet(18|34|50|101)(?:-(v1b|v1c))?", _cnn_factory("resnet"),
                  "resnet18|34|50|101 with optional -v1b/-v1c suffix")
register_backbone(r"mobilenetv2", _cnn_factory("mobilenetv2"), "mobilenetv2")
