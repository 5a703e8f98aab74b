"""Import of Hugging Face ``SegformerForSemanticSegmentation`` checkpoints into segrt's ``segformer`` model.

Both namings are read: the Hub's checkpoint files (transformers 4.x: ``segformer.encoder.patch_embeddings.{i}``,
``segformer.encoder.block.{i}.{j}.attention.self.query``, ``segformer.encoder.layer_norm.{i}``,
``decode_head.linear_c.{i}``) and the in-memory names of transformers 5.x (``segformer.stages.{i}.blocks.{j}
.attention.q_proj``, ``decode_head.linear_projections.{i}``). The mapping onto MMSeg's layout:

- the separate query/key/value projections are stacked into ``attn.attn.in_proj_weight``/``in_proj_bias``;
- the Linear layers of the Mix-FFN and of the decoder become 1x1 convs (``ffn.layers.0/4``, ``convs.{i}.conv``);
- HF's decoder concatenates the levels deepest first, ours in level order, so the input-channel blocks of
  ``linear_fuse`` are reversed into ``fusion_conv.conv``;
- HF's per-level projections have a bias and no BN/ReLU: the head is built with ``linear_levels=True``;
- HF's LayerNorms all use torch's default eps 1e-5 (its config's ``layer_norm_eps`` is not read by the model),
  so the backbone is built with ``norm_eps=1e-5`` and the converted model reproduces HF's logits.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from ..models import build
from ..models.backbones.mit import MIT_ARCH, MIT_HEADS
from ..models.segmentor import Segmentor

#: ``SegformerConfig`` defaults (MiT-B0 with a 256-wide decoder).
HF_DEFAULTS: dict[str, Any] = {
    "num_channels": 3, "num_encoder_blocks": 4, "depths": [2, 2, 2, 2], "sr_ratios": [8, 4, 2, 1],
    "hidden_sizes": [32, 64, 160, 256], "patch_sizes": [7, 3, 3, 3], "strides": [4, 2, 2, 2],
    "num_attention_heads": [1, 2, 5, 8], "mlp_ratios": [4, 4, 4, 4], "hidden_act": "gelu",
    "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0, "classifier_dropout_prob": 0.1,
    "drop_path_rate": 0.1, "decoder_hidden_size": 256,
}
HF_NORM_EPS = 1e-5

# Hub (transformers 4.x) names -> transformers 5.x names.
_LEGACY = [(re.compile(a), b) for a, b in (
    (r"^segformer\.encoder\.patch_embeddings\.(\d+)\.", r"segformer.stages.\1.patch_embeddings."),
    (r"^segformer\.encoder\.block\.(\d+)\.(\d+)\.", r"segformer.stages.\1.blocks.\2."),
    (r"^segformer\.encoder\.layer_norm\.(\d+)\.", r"segformer.stages.\1.layer_norm."),
    (r"\.attention\.self\.(query|key|value)\.", lambda m: f".attention.{m.group(1)[0]}_proj."),
    (r"\.attention\.self\.sr\.", ".attention.sequence_reduction.sequence_reduction."),
    (r"\.attention\.self\.layer_norm\.", ".attention.sequence_reduction.layer_norm."),
    (r"\.attention\.output\.dense\.", ".attention.o_proj."),
    (r"\.mlp\.dense([12])\.", r".mlp.fc\1."),
    (r"\.layer_norm_1\.", ".layernorm_before."),
    (r"\.layer_norm_2\.", ".layernorm_after."),
    (r"^decode_head\.linear_c\.", "decode_head.linear_projections."),
)]
_BLOCK = r"segformer\.stages\.(\d+)\.blocks\.(\d+)\."
_OURS_BLOCK = r"backbone.layers.\1.1.\2."
# transformers 5.x names -> ours (q/k/v and linear_fuse are handled separately).
_DIRECT = [(re.compile("^" + a), b) for a, b in (
    (r"segformer\.stages\.(\d+)\.patch_embeddings\.proj\.", r"backbone.layers.\1.0.projection."),
    (r"segformer\.stages\.(\d+)\.patch_embeddings\.layer_norm\.", r"backbone.layers.\1.0.norm."),
    (r"segformer\.stages\.(\d+)\.layer_norm\.", r"backbone.layers.\1.2."),
    (_BLOCK + r"layernorm_before\.", _OURS_BLOCK + "norm1."),
    (_BLOCK + r"layernorm_after\.", _OURS_BLOCK + "norm2."),
    (_BLOCK + r"attention\.o_proj\.", _OURS_BLOCK + "attn.attn.out_proj."),
    (_BLOCK + r"attention\.sequence_reduction\.sequence_reduction\.", _OURS_BLOCK + "attn.sr."),
    (_BLOCK + r"attention\.sequence_reduction\.layer_norm\.", _OURS_BLOCK + "attn.norm."),
    (_BLOCK + r"mlp\.fc1\.", _OURS_BLOCK + "ffn.layers.0."),
    (_BLOCK + r"mlp\.dwconv\.dwconv\.", _OURS_BLOCK + "ffn.layers.1."),
    (_BLOCK + r"mlp\.fc2\.", _OURS_BLOCK + "ffn.layers.4."),
    (r"decode_head\.linear_projections\.(\d+)\.proj\.", r"decode_head.convs.\1.conv."),
    (r"decode_head\.batch_norm\.", "decode_head.fusion_conv.bn."),
    (r"decode_head\.classifier\.", "decode_head.conv_seg."),
)]
_QKV = re.compile(_BLOCK + r"attention\.([qkv])_proj\.(weight|bias)$")
_FUSE = "decode_head.linear_fuse.weight"
_LEAVES = {"weight", "bias", "running_mean", "running_var", "num_batches_tracked"}


def _config_dict(config: Any) -> dict[str, Any]:
    """A plain dict from a mapping, a ``SegformerConfig``-like object or the path of a ``config.json``."""
    if isinstance(config, str | os.PathLike):
        with open(config, encoding="utf-8") as f:
            config = json.load(f)
    if isinstance(config, Mapping):
        c = dict(config)
    elif hasattr(config, "to_dict"):
        c = dict(config.to_dict())
        if hasattr(config, "num_labels"):
            c["num_labels"] = config.num_labels
    else:
        raise ValueError(f"HF SegFormer config must be a mapping, a SegformerConfig or a config.json path, "
                         f"got {type(config).__name__}")
    out = {**HF_DEFAULTS, **{k: v for k, v in c.items() if v is not None}}
    if "num_labels" not in out:
        if not c.get("id2label"):
            raise ValueError("HF SegFormer config gives neither num_labels nor id2label")
        out["num_labels"] = len(c["id2label"])
    return out


def _variant(hidden_sizes: list[int], depths: list[int]) -> str:
    """The MiT variant name with these widths and depths (MMSeg's names), else ``mit-b0`` (overridden)."""
    for name, (embed, layers) in MIT_ARCH.items():
        if list(hidden_sizes) == [embed * h for h in MIT_HEADS] and list(depths) == list(layers):
            return f"mit-{name}"
    return "mit-b0"


def segformer_from_hf_config(config: Any) -> Segmentor:
    """Our ``segformer`` model with the architecture of a Hugging Face ``SegformerConfig`` (mapping, config
    object or ``config.json`` path): ``num_channels``, ``hidden_sizes``, ``depths``, ``num_attention_heads``,
    ``sr_ratios``, ``patch_sizes``, ``strides``, ``mlp_ratios``, dropouts, ``decoder_hidden_size``, ``num_labels``."""
    c = _config_dict(config)
    n = int(c["num_encoder_blocks"])
    per_stage = ("depths", "sr_ratios", "hidden_sizes", "patch_sizes", "strides", "num_attention_heads", "mlp_ratios")
    bad = [k for k in per_stage if len(c[k]) != n]
    if n != 4 or bad:
        raise ValueError(f"HF SegFormer config: need 4 encoder blocks with one value each in {list(per_stage)}; "
                         f"got num_encoder_blocks={n}, mismatched {bad}")
    if c["hidden_act"] != "gelu":
        raise ValueError(f"HF SegFormer config: only hidden_act='gelu' is supported, got {c['hidden_act']!r}")
    backbone_kwargs = {
        "in_channels": int(c["num_channels"]), "stage_dims": tuple(c["hidden_sizes"]),
        "num_layers": tuple(c["depths"]), "num_heads": tuple(c["num_attention_heads"]),
        "patch_sizes": tuple(c["patch_sizes"]), "strides": tuple(c["strides"]), "sr_ratios": tuple(c["sr_ratios"]),
        "mlp_ratio": tuple(c["mlp_ratios"]), "qkv_bias": True, "drop_rate": float(c["hidden_dropout_prob"]),
        "attn_drop_rate": float(c["attention_probs_dropout_prob"]), "drop_path_rate": float(c["drop_path_rate"]),
        "norm_eps": HF_NORM_EPS,
    }
    return build(
        "segformer", num_classes=int(c["num_labels"]), backbone=_variant(c["hidden_sizes"], c["depths"]),
        backbone_kwargs=backbone_kwargs, channels=int(c["decoder_hidden_size"]),
        dropout_ratio=float(c["classifier_dropout_prob"]), linear_levels=True,
    )


def _rename(state_dict: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], str]:
    """Source keys in transformers 5.x naming, and which naming the source used."""
    legacy = any(k.startswith("segformer.encoder.") or k.startswith("decode_head.linear_c.") for k in state_dict)
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        new = key
        if legacy:
            for pattern, repl in _LEGACY:
                new = pattern.sub(repl, new)
        out[new] = value
    return out, "transformers-4 (Hub files)" if legacy else "transformers-5"


def convert_hf_segformer(state_dict: Mapping[str, Tensor], config: Any) -> tuple[Segmentor, dict[str, Any]]:
    """Build our model for ``config`` and load a Hugging Face ``SegformerForSemanticSegmentation`` state dict.

    Returns ``(model in eval mode, report)``; the report gives the source naming, tensor and parameter counts.
    Raises ``ValueError`` listing missing keys, unexpected keys and shape mismatches.
    """
    if not isinstance(state_dict, Mapping) or not all(isinstance(v, Tensor) for v in state_dict.values()):
        raise ValueError("convert_hf_segformer: state_dict must map names to tensors")
    model = segformer_from_hf_config(config)
    target = model.state_dict()
    src, naming = _rename(state_dict)
    out: dict[str, Tensor] = {}
    used: set[str] = set()
    qkv: dict[tuple[str, str, str], dict[str, Tensor]] = {}
    for key, value in src.items():
        m = _QKV.fullmatch(key)
        if m:
            qkv.setdefault((m.group(1), m.group(2), m.group(4)), {})[m.group(3)] = value
            used.add(key)
            continue
        if key == _FUSE:
            levels = len(model.decode_head.in_channels)
            d = value.shape[1] // levels
            out["decode_head.fusion_conv.conv.weight"] = torch.cat(
                [value[:, (levels - 1 - k) * d:(levels - k) * d] for k in range(levels)], dim=1)
            used.add(key)
            continue
        for pattern, repl in _DIRECT:
            m = pattern.match(key)
            if m and key[m.end():] in _LEAVES:
                out[pattern.sub(repl, key, count=1)] = value
                used.add(key)
                break
    problems: list[str] = []
    for (stage, block, kind), parts in sorted(qkv.items()):
        name = f"backbone.layers.{stage}.1.{block}.attn.attn.in_proj_{kind}"
        if set(parts) != {"q", "k", "v"}:
            problems.append(f"{name}: needs q/k/v_proj.{kind}, got only {sorted(parts)}")
            continue
        out[name] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    for name, value in list(out.items()):  # Linear weights -> 1x1 conv weights
        if name in target and value.dim() == 2 and target[name].dim() == 4:
            out[name] = value[:, :, None, None]
    filled = [k for k in target if k.endswith("num_batches_tracked") and k not in out]
    for k in filled:  # older checkpoints may not store the BN counter
        out[k] = torch.zeros_like(target[k])
    missing = sorted(set(target) - set(out))
    unexpected = sorted(set(src) - used) + sorted(set(out) - set(target))
    shapes = [f"{k}: checkpoint {tuple(out[k].shape)} vs model {tuple(target[k].shape)}"
              for k in sorted(set(out) & set(target)) if out[k].shape != target[k].shape]
    if missing or unexpected or shapes or problems:
        parts = [f"missing keys {missing}" if missing else "", f"unexpected keys {unexpected}" if unexpected else "",
                 f"shape mismatches {shapes}" if shapes else "", f"incomplete attention {problems}" if problems else ""]
        raise ValueError("convert_hf_segformer: the state dict does not match the config: "
                         + "; ".join(p for p in parts if p))
    model.load_state_dict(out, strict=True)
    report = {
        "source_naming": naming,
        "source_tensors": len(state_dict),
        "model_tensors": len(target),
        "params": sum(p.numel() for p in model.parameters()),
        "filled_bn_counters": filled,
        "norm_eps": HF_NORM_EPS,
        "num_classes": model.num_classes,
    }
    return model.eval(), report
