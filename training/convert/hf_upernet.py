"""Import of Hugging Face ``UperNetForSemanticSegmentation`` checkpoints with a ``ConvNextBackbone`` into segrt's
``upernet`` on ConvNeXt (MMSeg/mmpretrain layout).

transformers names the same layers as MMSeg's ``upernet_convnext`` (the Hub's ``openmmlab/upernet-convnext-*``
weights were converted from it), so the mapping is a renaming:

- ``backbone.embeddings.patch_embeddings``/``layernorm`` -> ``backbone.downsample_layers.0.{0,1}``;
  ``backbone.encoder.stages.{i}.downsampling_layer.{0,1}`` -> ``backbone.downsample_layers.{i}.{0,1}``;
- ``...stages.{i}.layers.{j}.dwconv/layernorm/pwconv1/pwconv2/layer_scale_parameter`` ->
  ``backbone.stages.{i}.{j}.depthwise_conv/norm/pointwise_conv1/pointwise_conv2/gamma``;
- ``backbone.hidden_states_norms.stage{k}`` -> ``backbone.norm{k-1}``;
- head conv modules ``.conv``/``.batch_norm`` -> mmcv's ``.conv``/``.bn``; ``classifier`` -> ``conv_seg``.

Both models use LayerNorm eps 1e-6 in the backbone, BN eps 1e-5, exact GELU and ``align_corners=False``. HF's heads
have no dropout before the classifier (ours: MMSeg's 0.1, training only), so eval logits are the same.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from ..models import build_from_config
from ..models.backbones.convnext import ARCH
from ..models.heads.fcn import FCNHead
from ..models.segmentor import Segmentor

#: ``ConvNextConfig`` defaults (ConvNeXt-T); ``out_features`` must name the four stages for UperNet.
HF_CONVNEXT_DEFAULTS: dict[str, Any] = {
    "num_channels": 3, "patch_size": 4, "num_stages": 4, "hidden_sizes": [96, 192, 384, 768],
    "depths": [3, 3, 9, 3], "hidden_act": "gelu", "layer_scale_init_value": 1e-6, "drop_path_rate": 0.0,
}
#: ``UperNetConfig`` defaults.
HF_UPERNET_DEFAULTS: dict[str, Any] = {
    "hidden_size": 512, "pool_scales": [1, 2, 3, 6], "use_auxiliary_head": True, "auxiliary_in_channels": None,
    "auxiliary_channels": 256, "auxiliary_num_convs": 1, "auxiliary_concat_input": False,
}
_STAGES = ["stage1", "stage2", "stage3", "stage4"]
_LAYER = r"backbone\.encoder\.stages\.(\d+)\.layers\.(\d+)\."
_OURS_LAYER = r"backbone.stages.\1.\2."
_RENAMES = [(re.compile("^" + a + "$"), b) for a, b in (
    (r"backbone\.embeddings\.patch_embeddings\.(weight|bias)", r"backbone.downsample_layers.0.0.\1"),
    (r"backbone\.embeddings\.layernorm\.(weight|bias)", r"backbone.downsample_layers.0.1.\1"),
    (r"backbone\.encoder\.stages\.(\d+)\.downsampling_layer\.([01])\.(weight|bias)",
     r"backbone.downsample_layers.\1.\2.\3"),
    (_LAYER + r"dwconv\.(weight|bias)", _OURS_LAYER + r"depthwise_conv.\3"),
    (_LAYER + r"layernorm\.(weight|bias)", _OURS_LAYER + r"norm.\3"),
    (_LAYER + r"pwconv([12])\.(weight|bias)", _OURS_LAYER + r"pointwise_conv\3.\4"),
    (_LAYER + r"layer_scale_parameter", _OURS_LAYER + "gamma"),
    (r"backbone\.hidden_states_norms\.stage([1-4])\.(weight|bias)", lambda m: f"backbone.norm{int(m[1]) - 1}.{m[2]}"),
    (r"(decode_head|auxiliary_head)\.classifier\.(weight|bias)", r"\1.conv_seg.\2"),
    (r"(decode_head|auxiliary_head)\.(.+)\.conv\.weight", r"\1.\2.conv.weight"),
    (r"(decode_head|auxiliary_head)\.(.+)\.batch_norm\."
     r"(weight|bias|running_mean|running_var|num_batches_tracked)", r"\1.\2.bn.\3"),
)]


def _as_dict(config: Any, what: str) -> dict[str, Any]:
    if isinstance(config, str | os.PathLike):
        with open(config, encoding="utf-8") as f:
            config = json.load(f)
    if isinstance(config, Mapping):
        return dict(config)
    if hasattr(config, "to_dict"):
        out = dict(config.to_dict())
        if hasattr(config, "num_labels"):
            out["num_labels"] = config.num_labels
        return out
    raise ValueError(f"HF {what} config must be a mapping, a config object or a config.json path, "
                     f"got {type(config).__name__}")


def _parse(config: Any) -> tuple[dict[str, Any], tuple[int, bool]]:
    """(segrt model config, (auxiliary_num_convs, auxiliary_concat_input)) of a HF ``UperNetConfig``."""
    c = _as_dict(config, "UperNet")
    bc_raw = c.get("backbone_config")
    if bc_raw is None:
        raise ValueError(f"HF UperNet config has no backbone_config (backbone={c.get('backbone')!r}); only an "
                         f"explicit ConvNextConfig backbone is supported")
    bc = _as_dict(bc_raw, "ConvNext backbone")
    if bc.get("model_type", "convnext") != "convnext":
        raise ValueError(f"HF UperNet config: backbone model_type must be 'convnext', got {bc.get('model_type')!r}")
    b = {**HF_CONVNEXT_DEFAULTS, **{k: v for k, v in bc.items() if v is not None}}
    u = {**HF_UPERNET_DEFAULTS, **{k: v for k, v in c.items() if k != "backbone_config"}}
    depths, widths = [int(d) for d in b["depths"]], [int(w) for w in b["hidden_sizes"]]
    if int(b["num_stages"]) != 4 or len(depths) != 4 or len(widths) != 4:
        raise ValueError(f"HF ConvNext config: need 4 stages, got num_stages={b['num_stages']}, depths={depths}, "
                         f"hidden_sizes={widths}")
    if b["hidden_act"] != "gelu":
        raise ValueError(f"HF ConvNext config: only hidden_act='gelu' is supported, got {b['hidden_act']!r}")
    out_features = list(b.get("out_features") or [])
    out_indices = list(b.get("out_indices") or [])
    if out_features != _STAGES and out_indices != [1, 2, 3, 4]:
        raise ValueError(f"HF ConvNext config: UperNet needs out_features {_STAGES}, got out_features="
                         f"{out_features or None}, out_indices={out_indices or None}")
    if u["auxiliary_in_channels"] not in (None, widths[2]):
        raise ValueError(f"HF UperNet config: auxiliary_in_channels {u['auxiliary_in_channels']} must be the "
                         f"stage-3 width {widths[2]}")
    if "num_labels" not in u:
        if not c.get("id2label"):
            raise ValueError("HF UperNet config gives neither num_labels nor id2label")
        u["num_labels"] = len(c["id2label"])
    arch = next((a for a, (d, w) in ARCH.items() if list(d) == depths and list(w) == widths), "tiny")
    return {
        "name": "upernet",
        "num_classes": int(u["num_labels"]),
        "backbone": f"convnext-{arch}",
        "backbone_kwargs": {
            "depths": tuple(depths), "channels": tuple(widths), "in_channels": int(b["num_channels"]),
            "stem_patch_size": int(b["patch_size"]), "drop_path_rate": float(b["drop_path_rate"]),
            "layer_scale_init_value": float(b["layer_scale_init_value"]),
        },
        "aux": bool(u["use_auxiliary_head"]),
        "channels": int(u["hidden_size"]),
        "pool_scales": tuple(int(s) for s in u["pool_scales"]),
        "aux_channels": int(u["auxiliary_channels"]),
    }, (int(u["auxiliary_num_convs"]), bool(u["auxiliary_concat_input"]))


def hf_upernet_model_config(config: Any) -> dict[str, Any]:
    """segrt model config (``training.models.build_from_config`` keys) for a Hugging Face ``UperNetConfig``
    (mapping, config object or ``config.json`` path) with a ConvNeXt ``backbone_config``.

    Reads ``backbone_config``: ``depths``, ``hidden_sizes``, ``num_channels``, ``patch_size``, ``hidden_act``,
    ``layer_scale_init_value``, ``drop_path_rate``, ``out_features``; and the UperNet ``hidden_size``,
    ``pool_scales``, ``use_auxiliary_head``, ``auxiliary_channels``, ``num_labels``. Raises ``ValueError`` for
    settings our model cannot reproduce (another backbone, other activations, not all four stages, ...).
    A non-default auxiliary head layout (``auxiliary_num_convs``, ``auxiliary_concat_input``) is not part of the
    segrt config; :func:`upernet_from_hf_config` builds it.
    """
    return _parse(config)[0]


def upernet_from_hf_config(config: Any) -> Segmentor:
    """Our ``upernet`` on ConvNeXt with the architecture of a Hugging Face ``UperNetConfig`` (random weights).

    The auxiliary head follows ``auxiliary_num_convs``/``auxiliary_concat_input`` (MMSeg's 1 and False by default).
    """
    cfg, (num_convs, concat) = _parse(config)
    model = build_from_config(cfg)
    if cfg["aux"] and (num_convs, concat) != (1, False):
        old = model.auxiliary_head
        model.auxiliary_head = FCNHead(
            old.in_channels, old.channels, num_classes=old.num_classes, in_index=old.in_index, num_convs=num_convs,
            concat_input=concat, dropout_ratio=old.dropout_ratio, align_corners=old.align_corners,
        )
    return model


def _rename(key: str) -> str | None:
    for pattern, repl in _RENAMES:
        if pattern.fullmatch(key):
            return pattern.sub(repl, key, count=1)
    return None


def convert_hf_upernet(state_dict: Mapping[str, Tensor], config: Any) -> tuple[Segmentor, dict[str, Any]]:
    """Build our model for ``config`` and load a Hugging Face ``UperNetForSemanticSegmentation`` (ConvNeXt) state
    dict into it.

    Returns ``(model in eval mode, report)``; the report gives tensor and parameter counts, the BN counters filled
    in (older files may lack them), ``model_config`` (the segrt model config that rebuilds the architecture) and
    ``aux_layout`` (the auxiliary head's ``num_convs``/``concat_input``; segrt's config assumes MMSeg's 1/False).
    Raises ``ValueError`` listing missing keys, unexpected keys and shape mismatches.
    """
    if not isinstance(state_dict, Mapping) or not all(isinstance(v, Tensor) for v in state_dict.values()):
        raise ValueError("convert_hf_upernet: state_dict must map names to tensors")
    model_config, aux_layout = _parse(config)
    model = upernet_from_hf_config(config)
    target = model.state_dict()
    out: dict[str, Tensor] = {}
    unexpected: list[str] = []
    for key, value in state_dict.items():
        new = _rename(key)
        if new is None or new not in target:
            unexpected.append(key if new is None else f"{key} (-> {new})")
        else:
            out[new] = value
    filled = [k for k in target if k.endswith("num_batches_tracked") and k not in out]
    for k in filled:
        out[k] = torch.zeros_like(target[k])
    missing = sorted(set(target) - set(out))
    shapes = [f"{k}: checkpoint {tuple(out[k].shape)} vs model {tuple(target[k].shape)}"
              for k in sorted(out) if out[k].shape != target[k].shape]
    if missing or unexpected or shapes:
        parts = [f"missing keys {missing}" if missing else "",
                 f"unexpected keys {sorted(unexpected)}" if unexpected else "",
                 f"shape mismatches {shapes}" if shapes else ""]
        raise ValueError("convert_hf_upernet: the state dict does not match the config: "
                         + "; ".join(p for p in parts if p))
    model.load_state_dict(out, strict=True)
    report = {
        "source_tensors": len(state_dict),
        "model_tensors": len(target),
        "params": sum(p.numel() for p in model.parameters()),
        "filled_bn_counters": filled,
        "num_classes": model.num_classes,
        "model_config": model_config,
        "aux_layout": {"num_convs": aux_layout[0], "concat_input": aux_layout[1]},
    }
    return model.eval(), report
