"""Import torchvision segmentation checkpoints (``torchvision.models.segmentation``) into our models.

``convert_torchvision(state_dict, "deeplabv3_resnet50")`` builds the matching registered model (``tv_fcn``,
``tv_deeplabv3``, ``tv_lraspp``), renames every tensor and loads it strictly; the logits equal torchvision's
classifier output before its resize to the input size. torchvision is not needed: only the state dict.

Renaming: ``backbone.*`` of the ResNets is unchanged (our v1b ResNet has torchvision's names);
MobileNetV3's ``backbone.{i}.block.{j}.{0,1}`` become ``backbone.layer{i}.<part>.{conv,bn}`` where the parts
are ``expand_conv`` (if the block widens), ``depthwise_conv``, ``se`` (``fc1``/``fc2`` -> ``conv1.conv``/
``conv2.conv``) and ``linear_conv``; ``classifier.*`` -> ``decode_head.*`` and ``aux_classifier.*`` ->
``auxiliary_head.*`` per :mod:`training.models.heads.tv`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from ..models import build
from ..models.backbones.mobilenet_v3 import InvertedResidual, MobileNetV3
from ..models.segmentor import Segmentor

#: torchvision builder name -> (our model, our backbone).
ARCHS: dict[str, tuple[str, str]] = {
    "fcn_resnet50": ("tv_fcn", "resnet50-v1b"),
    "fcn_resnet101": ("tv_fcn", "resnet101-v1b"),
    "deeplabv3_resnet50": ("tv_deeplabv3", "resnet50-v1b"),
    "deeplabv3_resnet101": ("tv_deeplabv3", "resnet101-v1b"),
    "deeplabv3_mobilenet_v3_large": ("tv_deeplabv3", "mobilenetv3-large"),
    "lraspp_mobilenet_v3_large": ("tv_lraspp", "mobilenetv3-large"),
}
_CONV_BN = {"0.": "conv.", "1.": "bn."}
_FCN = {"0.": "convs.0.conv.", "1.": "convs.0.bn.", "4.": "conv_seg."}
_DEEPLAB = {
    **{f"0.convs.{i}.{j}.": f"aspp_modules.{i}.{part}." for i in range(4) for j, part in ((0, "conv"), (1, "bn"))},
    "0.convs.4.1.": "image_pool.1.conv.", "0.convs.4.2.": "image_pool.1.bn.",
    "0.project.0.": "project.conv.", "0.project.1.": "project.bn.",
    "1.": "bottleneck.conv.", "2.": "bottleneck.bn.", "4.": "conv_seg.",
}
_LRASPP = {"cbr.0.": "cbr.conv.", "cbr.1.": "cbr.bn.", "scale.1.": "scale.1.", "low_classifier.": "low_classifier.",
           "high_classifier.": "conv_seg."}
_CLASSIFIER_WEIGHT = {"tv_fcn": "classifier.4.weight", "tv_deeplabv3": "classifier.4.weight",
                      "tv_lraspp": "classifier.high_classifier.weight"}


def _check_arch(arch: str) -> tuple[str, str]:
    if arch not in ARCHS:
        raise ValueError(f"unknown torchvision architecture {arch!r}; supported: {sorted(ARCHS)}")
    return ARCHS[arch]


def build_torchvision_model(arch: str, num_classes: int, aux: bool) -> Segmentor:
    """Our (randomly initialised) twin of torchvision's ``arch`` with ``num_classes`` classes and, if ``aux``,
    its auxiliary classifier."""
    name, backbone = _check_arch(arch)
    return build(name, num_classes=num_classes, backbone=backbone, aux=aux)


def _mobilenet_prefixes(bb: MobileNetV3) -> dict[str, str]:
    table: dict[str, str] = {}
    for i in range(bb.num_layers):
        layer = getattr(bb, f"layer{i}")
        if not isinstance(layer, InvertedResidual):
            table.update({f"{i}.{k}": f"layer{i}.{v}" for k, v in _CONV_BN.items()})
            continue
        parts = ["expand_conv"] * layer.with_expand_conv + ["depthwise_conv"] + ["se"] * (layer.se is not None)
        for j, part in enumerate([*parts, "linear_conv"]):
            if part == "se":
                table.update({f"{i}.block.{j}.fc1.": f"layer{i}.se.conv1.conv.",
                              f"{i}.block.{j}.fc2.": f"layer{i}.se.conv2.conv."})
            else:
                table.update({f"{i}.block.{j}.{k}": f"layer{i}.{part}.{v}" for k, v in _CONV_BN.items()})
    return table


def prefix_table(model: Segmentor, arch: str) -> dict[str, str]:
    """torchvision key prefix -> our key prefix for ``model`` (built by :func:`build_torchvision_model`)."""
    name, _ = _check_arch(arch)
    table = {"backbone.": "backbone."}
    if isinstance(model.backbone, MobileNetV3):
        table = {f"backbone.{k}": f"backbone.{v}" for k, v in _mobilenet_prefixes(model.backbone).items()}
    head = {"tv_fcn": _FCN, "tv_deeplabv3": _DEEPLAB, "tv_lraspp": _LRASPP}[name]
    table.update({f"classifier.{k}": f"decode_head.{v}" for k, v in head.items()})
    if model.auxiliary_head is not None:
        table.update({f"aux_classifier.{k}": f"auxiliary_head.{v}" for k, v in _FCN.items()})
    return table


def rename_keys(keys: list[str], table: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """Map torchvision keys through the longest matching prefix of ``table``: (renamed, unmatched keys)."""
    ordered = sorted(table, key=len, reverse=True)
    renamed, unmatched = {}, []
    for key in keys:
        prefix = next((p for p in ordered if key.startswith(p)), None)
        if prefix is None:
            unmatched.append(key)
        else:
            renamed[key] = table[prefix] + key[len(prefix):]
    return renamed, unmatched


def _unwrap(state_dict: Mapping[str, Any]) -> dict[str, Tensor]:
    if not isinstance(state_dict, Mapping):
        raise ValueError(f"expected a state dict (mapping of names to tensors), got {type(state_dict).__name__}")
    for wrapper in ("model", "state_dict"):  # torchvision's reference scripts save {"model": ..., ...}
        if isinstance(state_dict.get(wrapper), Mapping):
            state_dict = state_dict[wrapper]
    sd = {k.removeprefix("module."): v for k, v in state_dict.items()}
    bad = sorted(k for k, v in sd.items() if not isinstance(v, Tensor))
    if bad:
        raise ValueError(f"state dict entries that are not tensors: {bad[:10]}")
    return sd


def convert_torchvision(
    state_dict: Mapping[str, Any], arch: str, num_classes: int | None = None
) -> tuple[Segmentor, dict[str, Any]]:
    """Build our twin of torchvision's ``arch`` (see :data:`ARCHS`) and load ``state_dict`` into it.

    ``num_classes`` is read from the classifier when None (else checked against it); the auxiliary head is kept
    when the checkpoint has ``aux_classifier.*`` (torchvision's pretrained weights do). Raises ``ValueError``
    listing missing or unexpected keys and shape mismatches. Returns the model in eval mode and a report
    (arch, model, backbone, num_classes, aux, tensors, params).
    """
    name, backbone = _check_arch(arch)
    sd = _unwrap(state_dict)
    cls_key = _CLASSIFIER_WEIGHT[name]
    if cls_key not in sd:
        raise ValueError(f"{arch}: the checkpoint has no {cls_key!r}, so it is not a torchvision {arch} state dict; "
                         f"first keys: {sorted(sd)[:5]}")
    found = int(sd[cls_key].shape[0])
    if num_classes is not None and num_classes != found:
        raise ValueError(f"{arch}: num_classes={num_classes} but the checkpoint's classifier has {found} classes")
    aux = any(k.startswith("aux_classifier.") for k in sd) and name != "tv_lraspp"
    model = build_torchvision_model(arch, found, aux)
    renamed, unexpected = rename_keys(list(sd), prefix_table(model, arch))
    ours = model.state_dict()
    unexpected += [k for k, v in renamed.items() if v not in ours]
    missing = sorted(set(ours) - set(renamed.values()))
    if missing or unexpected:
        raise ValueError(f"{arch}: checkpoint does not match torchvision's architecture; "
                         f"missing keys: {missing}; unexpected keys: {sorted(unexpected)}")
    mismatched = [f"{k} {tuple(sd[k].shape)} vs {tuple(ours[v].shape)}" for k, v in renamed.items()
                  if sd[k].shape != ours[v].shape]
    if mismatched:
        raise ValueError(f"{arch}: shape mismatches (checkpoint vs model): {mismatched}")
    with torch.no_grad():
        model.load_state_dict({v: sd[k] for k, v in renamed.items()}, strict=True)
    report = {
        "arch": arch, "model": name, "backbone": backbone, "num_classes": found, "aux": aux,
        "tensors": len(renamed), "params": sum(p.numel() for p in model.parameters()),
    }
    return model.eval(), report
