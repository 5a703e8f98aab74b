"""Export a trained segmentor to ONNX: opset 18, dynamic batch/H/W, low-resolution logits, metadata inside."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import onnx
import torch

from engine.fileio import atomic_path
from engine.metadata import ModelMeta, round_up
from training.checkpoint import load_checkpoint
from training.config import config_from_dict

OPSET = 18


def load_trained(ckpt_path: str | Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild the model a segrt checkpoint was trained as, with its weights, in eval mode; also its metadata."""
    from training.train import build_model

    ckpt = load_checkpoint(ckpt_path)
    cfg = config_from_dict(ckpt["config"])
    meta = dict(ckpt.get("meta") or {})
    model = build_model(cfg, len(meta["classes"]))
    missing, unexpected = model.load_state_dict(ckpt["state_dict"], strict=False)
    if missing or unexpected:
        raise ValueError(f"{ckpt_path}: weights do not match the model: missing {missing[:10]}, "
                         f"unexpected {unexpected[:10]}")
    return model.eval(), meta


def _name_input_dims(proto: onnx.ModelProto) -> None:
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    for d, name in zip(dims, ("batch", None, "height", "width")):
        if name and not d.HasField("dim_value"):
            d.dim_param = name


def export_onnx(model: torch.nn.Module, meta: dict[str, Any] | ModelMeta, out: str | Path,
                sample_size: tuple[int, int] = (256, 512)) -> Path:
    """Trace ``model`` with dynamic batch, height and width; write ``out`` atomically with metadata_props."""
    out = Path(out)
    meta = meta if isinstance(meta, ModelMeta) else ModelMeta(**meta)
    meta.size_divisor = int(getattr(model, "size_divisor", 1))
    sample_size = round_up(sample_size, meta.size_divisor)
    model = model.eval()
    x = torch.randn(1, 3, *sample_size)
    dyn = torch.export.Dim.DYNAMIC
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model, (x,), dynamo=True, opset_version=OPSET, input_names=["input"],
                                    output_names=["logits"], dynamic_shapes={"x": {0: dyn, 2: dyn, 3: dyn}},
                                    verbose=False)
    program.optimize()
    proto = program.model_proto
    _name_input_dims(proto)
    for key, value in meta.to_props().items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "segrt"
    onnx.checker.check_model(proto, full_check=True)
    with atomic_path(out) as tmp:
        onnx.save(proto, tmp)
    return out


def export_checkpoint(ckpt_path: str | Path, out: str | Path) -> Path:
    """``segrt export``: checkpoint -> ONNX, sample size taken from the training input size."""
    model, meta = load_trained(ckpt_path)
    size = tuple(meta.get("input_size") or (256, 512))  # any size works: H and W are dynamic
    return export_onnx(model, meta, out, sample_size=size)
