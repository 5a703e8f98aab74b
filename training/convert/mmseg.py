"""Import MMSegmentation 1.x checkpoints: ``convert_mmseg(checkpoint, config) -> (Segmentor, report)``.

The MMSeg config (a Python file, read without executing it by :mod:`training.convert.mmseg_config`, and mapped
onto one of our registered builders, ``training.models.build``, by the tables of :mod:`training.convert.mmseg_models`)
decides the model: every value the config sets is either passed to the builder or checked against the built
model afterwards, so a config asking for something we cannot build fails with a ``ValueError`` naming the config
key and value instead of loading into a subtly different network. Our state-dict names are MMSeg's, so the
weights then load with ``load_state_dict(strict=True)`` after dropping ``data_preprocessor.*`` (and a DDP
``module.`` prefix).

Checkpoints are read with ``torch.load(weights_only=True)``. MMEngine's runner also pickles a few objects of its
own (``MessageHub`` history buffers, ``ConfigDict``, numpy scalars) beside the weights; those known globals are
bound to inert placeholders (no code of theirs runs), anything else is refused with the names listed.
:func:`save_converted` writes a segrt checkpoint that ``segrt export`` rebuilds from its stored model config.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from engine.metadata import IMAGENET_MEAN, IMAGENET_STD, ModelMeta
from training.checkpoint import save_atomic
from training.config import Config, DataCfg, ModelCfg
from training.convert.mmseg_config import read_config, read_config_text
from training.convert.mmseg_models import model_spec
from training.convert.mmseg_spec import ModelSpec
from training.models import Segmentor, build

__all__ = ["ConversionReport", "convert_mmseg", "load_mmseg_checkpoint", "model_spec", "save_converted"]


@dataclass
class ConversionReport:
    """What :func:`convert_mmseg` built and how: the segrt model config, class names, preprocessing, and every key
    it dropped or renamed."""

    model: dict[str, Any]
    num_classes: int
    classes: list[str]
    palette: list[list[int]]
    mean: list[float]
    std: list[float]
    input_size: list[int] | None
    align_corners: bool
    ignore_index: int
    params: int
    checkpoint: str
    config: str
    dropped_keys: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    mmseg_meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-friendly)."""
        return asdict(self)


# --------------------------------------------------------------------------------------------- checkpoint loading
class _Inert:
    """Stands in for a known non-tensor object of an MMEngine checkpoint (a history buffer, a numpy scalar): it
    only records what the pickle passed it, so loading runs none of that class's code."""

    def __new__(cls, *args: Any, **kwargs: Any) -> _Inert:
        obj = super().__new__(cls)
        obj.args = args
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return "<mmengine/numpy object (not loaded)>"


def _config_dict(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """``mmengine.config.ConfigDict`` pickles as ``ConfigDict({...})``: read it as a plain dict."""
    return dict(*args, **kwargs)


# Globals that MMEngine's runner puts in checkpoints besides tensors. numpy's reconstruct helpers and builtins.getattr
# (numpy 2 pickles dtypes through it) are bound to _Inert too: nothing of numpy or getattr itself is ever called.
_KNOWN_EXACT = {
    "mmengine.config.config.ConfigDict": _config_dict,
    "mmengine.logging.history_buffer.HistoryBuffer": _Inert,
    "mmengine.logging.message_hub.MessageHub": _Inert,
    "mmcv.utils.config.ConfigDict": _config_dict,
    "builtins.getattr": _Inert,
}
_KNOWN_PREFIXES = ("numpy.",)


def _known(name: str) -> Any | None:
    if name in _KNOWN_EXACT:
        return _KNOWN_EXACT[name]
    return _Inert if name.startswith(_KNOWN_PREFIXES) else None


def _torch_load(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as first:  # noqa: BLE001 - re-raised with a clear message below
        try:
            names = sorted(torch.serialization.get_unsafe_globals_in_checkpoint(path))
        except Exception:  # noqa: BLE001 - not a zip checkpoint, or unreadable: report the original error
            raise ValueError(f"{path}: not a readable PyTorch checkpoint ({type(first).__name__}: {first})") from None
        unknown = [n for n in names if _known(n) is None]
        if not names or unknown:
            raise ValueError(
                f"{path}: refused to unpickle {unknown or names}: the file holds objects other than tensors and plain "
                "data (weights_only=True loading). Re-save just the weights, e.g. torch.save({'state_dict': "
                f"ckpt['state_dict'], 'meta': {{'dataset_meta': ...}}}}, ...). Original error: {first}"
            ) from None
        with torch.serialization.safe_globals([(_known(n), n) for n in names]):
            try:
                return torch.load(path, map_location="cpu", weights_only=True)
            except Exception as e:  # noqa: BLE001
                raise ValueError(f"{path}: not a readable checkpoint ({type(e).__name__}: {e})") from None


def load_mmseg_checkpoint(path: str | Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Read an MMSeg checkpoint (``{"meta", "state_dict", ...}`` or a bare state dict) with ``weights_only=True``;
    returns (state dict without a DDP ``module.`` prefix, meta dict)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MMSeg checkpoint not found: {path}")
    ckpt = _torch_load(path)
    if not isinstance(ckpt, Mapping):
        raise ValueError(f"{path}: expected a dict checkpoint, got {type(ckpt).__name__}")
    if "state_dict" in ckpt:
        state, meta = ckpt["state_dict"], ckpt.get("meta") or {}
    elif ckpt and all(isinstance(v, Tensor) for v in ckpt.values()):
        state, meta = ckpt, {}
    else:
        raise ValueError(f"{path}: no 'state_dict' entry (keys: {sorted(map(str, ckpt))[:10]})")
    if not isinstance(state, Mapping) or not state:
        raise ValueError(f"{path}: 'state_dict' is empty or not a mapping")
    bad = [k for k, v in state.items() if not isinstance(v, Tensor)]
    if bad:
        raise ValueError(f"{path}: state_dict entries that are not tensors: {bad[:10]}")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return dict(state), dict(meta) if isinstance(meta, Mapping) else {}


def _match_weights(model: nn.Module, state: dict[str, Tensor], where: str, notes: list[str]) -> dict[str, Tensor]:
    """Check ``state`` has exactly the model's keys and shapes (ValueError listing every difference); cast floating
    tensors to the model's dtype (fp16 checkpoints). Missing BatchNorm ``num_batches_tracked`` counters (absent
    from some converted checkpoints; unused at inference) are filled with zeros."""
    ours = model.state_dict()
    counters = [k for k in set(ours) - set(state) if k.endswith(".num_batches_tracked")]
    if counters:
        state = {**state, **{k: torch.zeros_like(ours[k]) for k in counters}}
        notes.append(f"{len(counters)} BatchNorm num_batches_tracked counters were missing: set to 0")
    missing = sorted(set(ours) - set(state))
    unexpected = sorted(set(state) - set(ours))
    shapes = sorted(f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(ours[k].shape)}"
                    for k in set(ours) & set(state) if state[k].shape != ours[k].shape)
    if missing or unexpected or shapes:
        def show(items: list[str]) -> str:
            return f"{len(items)} {items[:20]}{' ...' if len(items) > 20 else ''}"

        raise ValueError(f"{where}: the checkpoint does not match the model the config describes: "
                         f"missing keys {show(missing)}; unexpected keys {show(unexpected)}; "
                         f"shape mismatches {show(shapes)}")
    casts = sorted({str(v.dtype) for k, v in state.items() if v.is_floating_point() and v.dtype != ours[k].dtype})
    if casts:
        notes.append(f"weights stored as {', '.join(casts)}: converted to the model's dtype")
    return {k: v.to(ours[k].dtype) if v.is_floating_point() else v for k, v in state.items()}


# ------------------------------------------------------------------------------------------------ metadata helpers
_DATASETS = {"CityscapesDataset": "cityscapes", "ADE20KDataset": "ade20k", "PascalVOCDataset": "voc"}


def _dataset_classes(cfg: Mapping[str, Any], num_classes: int) -> tuple[list[str], list[list[int]]] | None:
    """Class names and palette of the config's dataset type when segrt knows it and the count matches."""
    from engine.palettes import CLASSES, PALETTES

    kind = cfg.get("dataset_type")
    loader = cfg.get("train_dataloader")
    if not isinstance(kind, str) and isinstance(loader, Mapping) and isinstance(loader.get("dataset"), Mapping):
        kind = loader["dataset"].get("type")
    name = _DATASETS.get(kind) if isinstance(kind, str) else None
    if name is None:
        return None
    if name == "ade20k":
        from training.data.datasets.ade_meta import ADE_CLASSES as names
    else:
        names = CLASSES[name]
    if len(names) != num_classes:
        return None
    return list(names), [list(c) for c in PALETTES[name][:num_classes]]


def _classes(meta: Mapping[str, Any], cfg: Mapping[str, Any], num_classes: int, notes: list[str]) -> tuple[
        list[str], list[list[int]]]:
    dm = meta.get("dataset_meta") if isinstance(meta.get("dataset_meta"), Mapping) else {}
    classes = dm.get("classes", meta.get("CLASSES"))
    palette = dm.get("palette", meta.get("PALETTE"))
    known = _dataset_classes(cfg, num_classes)
    if isinstance(classes, list | tuple) and len(classes) == num_classes and all(isinstance(c, str) for c in classes):
        classes = list(classes)
    else:
        if classes is not None:
            notes.append(f"checkpoint meta has {len(classes) if hasattr(classes, '__len__') else '?'} class names "
                         f"for {num_classes} classes: ignored")
        classes = known[0] if known else [f"class_{i}" for i in range(num_classes)]
    try:
        palette = [[int(v) for v in c] for c in palette] if palette is not None else None
    except (TypeError, ValueError):
        palette = None
    if not palette or len(palette) < num_classes or any(len(c) != 3 for c in palette):
        palette = known[1] if known else []
    return classes, palette[:num_classes]


def _input_size(cfg: Mapping[str, Any], notes: list[str]) -> list[int] | None:
    """Inference size (H, W). MMSeg's test pipelines resize with ``keep_ratio``, so ``scale`` bounds the long and
    the short side: of aspect <= 2 it is the dataset's image size (Cityscapes' 2048x1024), used in landscape
    orientation (H <= W); a wider one only bounds the short side (ADE20K's 2048x512), so the training crop is
    used instead; without either, None (any size). ``convert_mmseg(input_size=...)`` overrides it."""
    crop = cfg.get("crop_size")
    crop = [int(crop[0]), int(crop[1])] if isinstance(crop, list | tuple) and len(crop) == 2 else None
    scale = None
    for step in cfg.get("test_pipeline") or []:
        if isinstance(step, Mapping) and step.get("type") == "Resize" and isinstance(step.get("scale"), list | tuple):
            scale = sorted(int(v) for v in step["scale"])  # (short, long) = (H, W) in landscape
    if scale and max(scale) <= 2 * min(scale):
        return scale
    if crop:
        notes.append(f"input_size: the training crop {crop} (the test pipeline keeps each image's aspect ratio; "
                     "pass input_size= to choose another)")
    return crop


def _preprocessing(cfg: Mapping[str, Any], state: dict[str, Tensor]) -> tuple[list[float], list[float]]:
    model = cfg.get("model") if isinstance(cfg.get("model"), Mapping) else {}
    dp = model.get("data_preprocessor") or cfg.get("data_preprocessor") or {}
    if not isinstance(dp, Mapping):
        dp = {}
    if dp.get("bgr_to_rgb", True) is not True or dp.get("rgb_to_bgr", False):
        raise ValueError(f"model.data_preprocessor: bgr_to_rgb={dp.get('bgr_to_rgb')!r}: segrt feeds RGB images, "
                         "so only models trained on RGB input (bgr_to_rgb=True) are supported")
    mean, std = dp.get("mean"), dp.get("std")
    if mean is None and "data_preprocessor.mean" in state:
        mean = state["data_preprocessor.mean"].flatten().tolist()
    if std is None and "data_preprocessor.std" in state:
        std = state["data_preprocessor.std"].flatten().tolist()
    mean = [float(v) for v in (mean if mean is not None else IMAGENET_MEAN)]
    std = [float(v) for v in (std if std is not None else IMAGENET_STD)]
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise ValueError(f"model.data_preprocessor: need 3 mean and 3 positive std values, got {mean}, {std}")
    return mean, std


# ------------------------------------------------------------------------------------------------------- converting
def _build(spec: ModelSpec) -> Segmentor:
    m = spec.model
    try:
        return build(m.name, num_classes=spec.num_classes, backbone=m.backbone,
                     backbone_kwargs=dict(m.backbone_kwargs), aux=m.aux, **m.head_kwargs)
    except (ValueError, TypeError) as e:
        raise ValueError(f"the MMSeg config maps to segrt model {m.name!r} (backbone {m.backbone!r}, "
                         f"backbone_kwargs {m.backbone_kwargs}, options {m.head_kwargs}), which cannot be built: "
                         f"{e}") from None


def _config_of(config: str | Path | None, meta: Mapping[str, Any], checkpoint: str | Path) -> dict[str, Any]:
    """The config file's contents, else the config text MMEngine (``meta["cfg"]``) or MMSeg 0.x
    (``meta["config"]``) saved in the checkpoint."""
    if config is not None:
        return read_config(config)
    for key in ("cfg", "config"):
        if isinstance(meta.get(key), str) and "model" in meta[key]:
            return read_config_text(meta[key], f"{Path(checkpoint).name}:meta[{key!r}]")
    raise ValueError(f"{checkpoint}: no config given and the checkpoint's meta carries none (meta keys: "
                     f"{sorted(map(str, meta))}); pass the MMSeg config file it was trained with")


def convert_mmseg(
    checkpoint: str | Path, config: str | Path | None = None, *, drop_aux: bool = False,
    input_size: tuple[int, int] | None = None,
) -> tuple[Segmentor, ConversionReport]:
    """Build the segrt model an MMSeg 1.x ``config`` file describes and load ``checkpoint``'s weights into it.

    Args:
        checkpoint: an MMSeg ``.pth`` file (``{"meta", "state_dict", ...}``), read with ``weights_only=True``.
        config: the MMSeg config file it was trained with (``_base_`` files are resolved beside it); None: the
            config text the checkpoint's meta carries (MMEngine's runner saves it as ``meta["cfg"]``).
        drop_aux: leave out the auxiliary head(s) (training-only) and their weights, e.g. when the config's
            auxiliary head is one segrt's builder cannot reproduce.
        input_size: (H, W) to record as the model's inference size; default from the config's test pipeline.

    Returns the model in eval mode and a :class:`ConversionReport`. Raises ``ValueError`` naming the config key
    for anything segrt cannot build, and listing missing/unexpected/mis-shaped keys if the weights do not fit.
    """
    state, meta = load_mmseg_checkpoint(checkpoint)
    cfg = _config_of(config, meta, checkpoint)
    if not isinstance(cfg.get("model"), Mapping):
        raise ValueError(f"{config or checkpoint}: the config defines no 'model' dict")
    spec = model_spec(cfg["model"], drop_aux=drop_aux)
    notes = list(spec.notes)
    dropped = sorted(k for k in state if k.startswith("data_preprocessor."))
    mean, std = _preprocessing(cfg, state)
    if drop_aux or not spec.model.aux:
        dropped += sorted(k for k in state if k.startswith("auxiliary_head."))
    weights = {k: v for k, v in state.items() if k not in set(dropped)}
    model = _build(spec)
    spec.verify(model)
    model.load_state_dict(_match_weights(model, weights, str(checkpoint), notes), strict=True)
    model.eval()
    classes, palette = _classes(meta, cfg, spec.num_classes, notes)
    safe_meta = {k: v for k, v in meta.items()  # scalars (versions, iteration), not the long config dump
                 if isinstance(v, int | float | bool) or (isinstance(v, str) and len(v) < 200)}
    report = ConversionReport(
        model=asdict(spec.model), num_classes=spec.num_classes, classes=classes, palette=palette, mean=mean, std=std,
        input_size=list(input_size) if input_size else _input_size(cfg, notes), align_corners=model.align_corners,
        ignore_index=spec.ignore_index, params=sum(p.numel() for p in model.parameters()),
        checkpoint=str(checkpoint), config=str(config) if config else "checkpoint meta", dropped_keys=dropped,
        notes=notes, mmseg_meta=safe_meta,
    )
    return model, report


def save_converted(model: Segmentor, report: ConversionReport, path: str | Path) -> Path:
    """Write a segrt checkpoint (``state_dict``, run ``config`` with the model config, ``meta``) atomically, so
    ``segrt export`` / ``training.export.load_trained`` rebuild exactly this model."""
    mc = ModelCfg(**report.model)
    data = DataCfg(mean=tuple(report.mean), std=tuple(report.std),
                   input_size=tuple(report.input_size) if report.input_size else None)
    meta = ModelMeta(classes=list(report.classes), palette=[list(c) for c in report.palette],
                     mean=tuple(report.mean), std=tuple(report.std),
                     input_size=tuple(report.input_size) if report.input_size else None,
                     output_stride=int(model.output_stride), align_corners=bool(report.align_corners),
                     model=f"{mc.name}_{mc.backbone}", ignore_index=report.ignore_index,
                     size_divisor=int(model.size_divisor))
    ckpt = {
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "config": Config(model=mc, data=data).to_dict(),
        "meta": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(meta).items()},  # as training saves it
        "converted_from": {"format": "mmseg", **report.to_dict()},
    }
    return save_atomic(ckpt, path)
