"""Run configuration: a YAML file checked against typed sections; unknown keys are errors."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from engine.metadata import IMAGENET_MEAN, IMAGENET_STD


@dataclass
class ModelCfg:
    """Which segmentor to build (see training.models.build)."""

    name: str = "pspnet"
    backbone: str | None = None  # None: the model's default (resnet50 for the CNN classics, mit-b0 for SegFormer)
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)
    head_kwargs: dict[str, Any] = field(default_factory=dict)
    aux: bool | None = None  # None: the model's default (e.g. no auxiliary head for semantic FPN)
    # Start from these weights (a segrt checkpoint, e.g. from `segrt convert`, or a plain state dict): tensors whose
    # name and shape match are loaded, the rest (a classifier for another class count) keeps its fresh init.
    init_weights: str | None = None


@dataclass
class DataCfg:
    """Where the data lives and how it is fed. ``synthetic`` generates the built-in dataset at ``root``.

    ``input_size`` (H, W) is the size images are resized to for inference (evaluation, export metadata, the
    engine); None keeps each image's own size. Training scales each image to ``input_size`` times a factor
    drawn from ``scale_range`` and takes a random ``crop_size`` crop, unless ``augment`` lists a uint8
    pipeline (training.data.augment) to run instead. ``dataset`` names a loader of training.data.DATASETS
    (voc, cityscapes, camvid, ade20k, ...); ``cache`` keeps decoded samples in memory.
    """

    dataset: str = "folder"
    dataset_kwargs: dict[str, Any] = field(default_factory=dict)
    root: str = "data/synthetic"
    train_split: str = "train"
    val_split: str = "val"
    synthetic: dict[str, Any] | None = None
    augment: list[dict[str, Any]] | None = None
    cache: bool = False
    input_size: tuple[int, int] | None = (256, 512)
    crop_size: tuple[int, int] = (128, 256)
    scale_range: tuple[float, float] = (0.75, 1.5)
    flip: bool = True
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


@dataclass
class TrainCfg:
    """Optimisation, losses, periodic evaluation and checkpoints.

    ``loss`` is a list of ``{"name": ce|ohem|dice|focal|lovasz, "weight": w, ...options}`` summed for the
    decode head; auxiliary outputs get the same loss times ``aux_weight``, one number for all or a list with one
    weight per auxiliary output (in the model's order: the decode head's extra outputs, then its auxiliary heads).
    ``amp`` is "bf16" or "fp16" (fp16 on CUDA only) or None. ``clip_grad`` is a max L2 norm or None.
    ``ema`` (a decay such as 0.999) keeps an exponential moving average of the weights, which is evaluated,
    exported and saved as ``state_dict``. ``channels_last`` trains in NHWC
    memory format (about 12% faster for ResNets on the CPU here).

    Under torchrun (several processes) ``batch_size`` is the global batch, split evenly over the processes, and
    ``sync_bn`` makes BatchNorm statistics span the global batch (training.distributed).

    ``deterministic`` runs with ``torch.use_deterministic_algorithms`` (and cuBLAS's deterministic workspace on
    CUDA), so that a killed and resumed run ends bit-identical to an uninterrupted one on any device; on the CPU,
    with a fixed ``threads``, training is bit-reproducible without it as well (tests/test_kill_resume.py).
    """

    iters: int = 1000
    batch_size: int = 8
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    head_lr_mult: float = 1.0
    layer_decay: float | None = None  # layer-wise LR decay of the backbone (ViT, MiT, ConvNeXt), e.g. 0.9
    schedule: str = "poly"
    power: float = 0.9
    min_lr: float = 1e-4
    warmup_iters: int = 0
    clip_grad: float | None = None
    amp: str | None = None
    channels_last: bool = False
    ema: float | None = None
    loss: list[dict[str, Any]] | None = None
    aux_weight: float | list[float] = 0.4
    ignore_index: int = 255
    eval_interval: int = 250
    checkpoint_interval: int = 250
    log_interval: int = 10
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    max_minutes: float | None = None
    sync_bn: bool = True
    deterministic: bool = False


@dataclass
class Config:
    """A whole run: model, data, train, and the work directory."""

    model: ModelCfg = field(default_factory=ModelCfg)
    data: DataCfg = field(default_factory=DataCfg)
    train: TrainCfg = field(default_factory=TrainCfg)
    work_dir: str = "work_dirs/run"

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (for YAML snapshots and checkpoints)."""
        return asdict(self)


SECTIONS = {"model": ModelCfg, "data": DataCfg, "train": TrainCfg}


def _section(cls: type, raw: Any, where: str) -> Any:
    if raw is None:
        return cls()
    if not isinstance(raw, dict):
        raise ValueError(f"config section {where!r} must be a mapping, got {type(raw).__name__}")
    known = {f.name: f for f in fields(cls)}
    for key in raw:
        if key not in known:
            raise ValueError(f"unknown config key {where}.{key!r} (known: {', '.join(sorted(known))})")
    kw = {}
    for key, value in raw.items():
        default = getattr(cls(), key)
        if isinstance(default, tuple) and isinstance(value, list):
            value = tuple(value)
        kw[key] = value
    return cls(**kw)


def config_from_dict(raw: dict[str, Any]) -> Config:
    """Build a Config from nested dicts; ValueError names any unknown key."""
    if not isinstance(raw, dict):
        raise ValueError(f"a config must be a mapping, got {type(raw).__name__}")
    for key in raw:
        if key not in SECTIONS and key != "work_dir":
            raise ValueError(f"unknown config key {key!r} (known: model, data, train, work_dir)")
    cfg = Config(**{name: _section(cls, raw.get(name), name) for name, cls in SECTIONS.items()})
    if "work_dir" in raw:
        cfg.work_dir = str(raw["work_dir"])
    return cfg


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Read a YAML config and apply ``section.key=value`` overrides (values parsed as YAML)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"config file not found: {p}")
    try:
        raw = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"{p}: not valid YAML: {e}") from None
    for item in overrides or []:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like section.key=value")
        dotted, value = item.split("=", 1)
        node = raw
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    try:
        return config_from_dict(raw)
    except ValueError as e:
        raise ValueError(f"{p}: {e}") from None
