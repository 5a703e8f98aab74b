"""Checkpoint import: ``segrt convert {mmseg,torchvision,hf} CKPT [--config CFG] -o model.pt``.

- ``mmseg``: an MMSegmentation 1.x ``.pth`` with its config file (:mod:`training.convert.mmseg`);
- ``torchvision``: a ``torchvision.models.segmentation`` state dict, ``--arch`` naming the builder
  (:mod:`training.convert.torchvision`);
- ``hf``: a Hugging Face ``SegformerForSemanticSegmentation`` or ``UperNetForSemanticSegmentation`` (ConvNeXt)
  folder with ``config.json`` and ``model.safetensors`` / ``pytorch_model.bin``, or a weights file with
  ``--config config.json`` (:mod:`training.convert.hf_segformer`, :mod:`training.convert.hf_upernet`).

Every file is untrusted: ``.pth``/``.bin`` load with ``torch.load(weights_only=True)``, ``.safetensors`` with
safetensors. The result is a segrt checkpoint (weights, the model config that rebuilds it, class names, palette and
preprocessing) written atomically, which ``segrt export`` turns into ONNX.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from engine.metadata import IMAGENET_MEAN, IMAGENET_STD
from engine.palettes import VOC_CLASSES, resolve_palette
from training.checkpoint import save_atomic
from training.config import Config, DataCfg, ModelCfg
from training.models import Segmentor

SOURCES = ("mmseg", "torchvision", "hf")
_HF_ARCHS = ("SegformerForSemanticSegmentation", "UperNetForSemanticSegmentation")


def load_weights(path: str | Path) -> dict[str, Tensor]:
    """A state dict from ``.safetensors`` or a torch file (``weights_only=True``; a ``state_dict``/``model`` entry
    is unwrapped). Raises ``FileNotFoundError``/``ValueError`` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise ValueError(f"{path}: reading .safetensors needs the 'safetensors' package") from None
        try:
            return load_file(str(path))
        except Exception as e:
            raise ValueError(f"{path}: not a readable safetensors file ({type(e).__name__}: {e})") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"{path}: not a readable weights file ({type(e).__name__}: {e}); files are loaded with "
                         "weights_only=True, so pickled code is refused") from None
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ValueError(f"{path}: expected a state dict of tensors")
    return obj


def _hf_files(checkpoint: Path, config: str | Path | None) -> tuple[Path, dict[str, Any]]:
    if checkpoint.is_dir():
        cfg_path = Path(config) if config else checkpoint / "config.json"
        weights = [checkpoint / n for n in ("model.safetensors", "pytorch_model.bin") if (checkpoint / n).is_file()]
        if not weights:
            raise FileNotFoundError(f"{checkpoint}: no model.safetensors or pytorch_model.bin in the folder")
        checkpoint = weights[0]
    else:
        if config is None:
            raise ValueError(f"{checkpoint}: a Hugging Face weights file needs --config config.json")
        cfg_path = Path(config)
    if not cfg_path.is_file():
        raise FileNotFoundError(f"Hugging Face config not found: {cfg_path}")
    try:
        cfg = json.loads(cfg_path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{cfg_path}: not a readable JSON config ({e})") from None
    if not isinstance(cfg, dict):
        raise ValueError(f"{cfg_path}: expected a JSON object")
    return checkpoint, cfg


def _hf(checkpoint: Path, config: str | Path | None) -> tuple[Segmentor, dict[str, Any]]:
    weights_path, cfg = _hf_files(checkpoint, config)
    arch = (cfg.get("architectures") or [""])[0]
    kind = cfg.get("model_type")
    state = load_weights(weights_path)
    if arch == "SegformerForSemanticSegmentation" or (not arch and kind == "segformer"):
        from training.convert.hf_segformer import convert_hf_segformer

        model, report = convert_hf_segformer(state, cfg)
    elif arch == "UperNetForSemanticSegmentation" or (not arch and kind == "upernet"):
        from training.convert.hf_upernet import convert_hf_upernet

        model, report = convert_hf_upernet(state, cfg)
    else:
        raise ValueError(f"{weights_path}: Hugging Face architecture {arch or kind!r} is not supported; "
                         f"supported: {list(_HF_ARCHS)}")
    labels = cfg.get("id2label") or {}
    classes = [str(labels.get(str(i), labels.get(i, f"class{i}"))) for i in range(model.num_classes)]
    return model, {"format": "hf", "architecture": arch or kind, "classes": classes, **report}


def save_model(model: Segmentor, path: str | Path, *, classes: list[str] | None = None,
               palette: list[list[int]] | None = None, mean: tuple[float, ...] = IMAGENET_MEAN,
               std: tuple[float, ...] = IMAGENET_STD, input_size: tuple[int, int] | None = None,
               source: dict[str, Any] | None = None) -> Path:
    """Write ``model`` (built by ``training.models.build``, so it carries its ``build_spec``) as a segrt
    checkpoint that ``segrt export`` rebuilds: weights, run config, class names, palette and preprocessing."""
    spec = dict(getattr(model, "build_spec", None) or {})
    if "name" not in spec:
        raise ValueError("save_model: the model was not built by training.models.build (no build_spec)")
    n = model.num_classes
    classes = list(classes or [f"class{i}" for i in range(n)])
    if len(classes) != n:
        raise ValueError(f"save_model: {len(classes)} class names for a {n}-class model")
    palette = [list(map(int, c)) for c in (palette or resolve_palette(n).tolist())]
    mc = ModelCfg(name=spec["name"], backbone=spec.get("backbone"), backbone_kwargs=dict(spec.get("backbone_kwargs")
                  or {}), head_kwargs=dict(spec.get("head_kwargs") or {}), aux=spec.get("aux"))
    data = DataCfg(mean=tuple(mean), std=tuple(std), input_size=tuple(input_size) if input_size else None)
    meta = {"classes": classes, "palette": palette, "mean": list(mean), "std": list(std),
            "input_size": list(input_size) if input_size else None, "output_stride": int(model.output_stride),
            "align_corners": bool(model.align_corners), "model": f"{mc.name}_{mc.backbone or 'default'}",
            "ignore_index": 255, "size_divisor": int(model.size_divisor)}
    ckpt = {"state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "config": Config(model=mc, data=data).to_dict(), "meta": meta, "converted_from": source or {}}
    return save_atomic(ckpt, path)


def convert(source: str, checkpoint: str | Path, *, config: str | Path | None = None, arch: str | None = None,
            output: str | Path | None = None) -> tuple[Segmentor, dict[str, Any]]:
    """Import ``checkpoint`` from ``source`` (``mmseg``, ``torchvision`` or ``hf``); write it to ``output`` (a segrt
    checkpoint) when given. Returns the model (eval mode) and a JSON-friendly report."""
    if source not in SOURCES:
        raise ValueError(f"unknown checkpoint source {source!r}; choose one of {list(SOURCES)}")
    checkpoint = Path(checkpoint)
    if not checkpoint.exists():
        raise FileNotFoundError(f"checkpoint not found: {checkpoint}")
    if source == "mmseg":
        from training.convert.mmseg import convert_mmseg, save_converted

        model, rep = convert_mmseg(checkpoint, config)
        if output is not None:
            save_converted(model, rep, output)
        report = {"format": "mmseg", **rep.to_dict()}
    elif source == "torchvision":
        from training.convert.torchvision import ARCHS, convert_torchvision

        if arch not in ARCHS:
            raise ValueError(f"torchvision import needs --arch, one of {sorted(ARCHS)}; got {arch!r}")
        model, rep = convert_torchvision(load_weights(checkpoint), arch)
        report = {"format": "torchvision", **rep}
        if output is not None:  # torchvision's weights: ImageNet statistics, trained on VOC's 21 classes
            save_model(model, output, classes=VOC_CLASSES if model.num_classes == 21 else None, source=report)
    else:
        model, report = _hf(checkpoint, config)
        if output is not None:
            save_model(model, output, classes=report["classes"], source=report)
    if output is not None:
        report["output"] = str(output)
    return model, report
