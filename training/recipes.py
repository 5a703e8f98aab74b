"""MMSegmentation's training recipes as segrt YAML configs: every model on Cityscapes and on ADE20K.

``python -m training.recipes [--out configs]`` writes ``configs/<model>_<backbone>_<dataset>-<crop>.yaml`` for every
registered model; ``tests/test_recipes.py`` checks that the committed files are what this module writes and that each
one loads and builds. The numbers are MMSeg 1.x's (its ``_base_`` schedules and each model's config):

- CNN classics (FCN, PSPNet, DeepLabV3(+), UPerNet, CCNet, DANet, OCRNet, FastFCN, U-Net, ...): SGD, lr 0.01,
  momentum 0.9, weight decay 5e-4, poly (power 0.9, min lr 1e-4); Cityscapes 512x1024 crops, batch 8, 80k iterations;
  ADE20K 512x512 crops, batch 16, 160k iterations; auxiliary FCN head at weight 0.4.
- SegFormer: AdamW lr 6e-5, weight decay 0.01, head lr x10, 1500 warm-up iterations, poly power 1.0, batch 8, 160k.
- SETR / Segmenter: SGD lr 0.01 / 0.001 (ViT), head lr x10 for SETR, batch 8-16, 160k.
- UPerNet-ConvNeXt: AdamW lr 1e-4, weight decay 0.05, 1500 warm-up iterations, batch 16, 160k, AMP.
- Real-time (BiSeNetV1/V2, STDC, LRASPP): their papers' schedules as MMSeg runs them (warm-up, larger lr, 1024x1024
  Cityscapes crops for BiSeNet).
Augmentation is MMSeg's: random resize of the (2048, 1024) / (2048, 512) scale by 0.5-2.0, random crop with at most
75% of one class, flip, photometric distortion, padding to the crop.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

from engine.fileio import write_atomic
from training.models import list_models, model_info
from training.models.registry import is_backbone

DATASETS: dict[str, dict[str, Any]] = {
    "cityscapes": {"root": "data/cityscapes", "scale": [2048, 1024], "crop": [512, 1024], "input_size": [1024, 2048],
                   "batch_size": 8, "iters": 80000},
    "ade20k": {"root": "data/ade/ADEChallengeData2016", "scale": [2048, 512], "crop": [512, 512], "input_size": None,
               "batch_size": 16, "iters": 160000},
}
SGD = {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 0.0005, "schedule": "poly", "power": 0.9,
       "min_lr": 0.0001}
ADAMW_SEGFORMER = {"optimizer": "adamw", "lr": 6e-05, "weight_decay": 0.01, "head_lr_mult": 10.0, "schedule": "poly",
                   "power": 1.0, "min_lr": 0.0, "warmup_iters": 1500}

#: Per-model overrides of the defaults above: ``train`` (optimizer and schedule), ``batch``/``iters``/``crop`` per
#: dataset, ``aux_weight``, and ``backbone`` (the recipe's backbone when it is not the builder's default).
RECIPES: dict[str, dict[str, Any]] = {
    "segformer": {"train": ADAMW_SEGFORMER, "cityscapes": {"crop": [1024, 1024], "iters": 160000}},
    "setr_naive": {"train": {**SGD, "lr": 0.01, "head_lr_mult": 10.0, "power": 1.0, "min_lr": 0.0},
                   "ade20k": {"batch_size": 16, "iters": 160000}, "cityscapes": {"crop": [768, 768], "iters": 80000}},
    "segmenter_mask": {"train": {**SGD, "lr": 0.001, "weight_decay": 0.0, "min_lr": 0.0001},
                       "ade20k": {"batch_size": 8}, "cityscapes": {"crop": [768, 768]}},
    "danet": {"aux_weight": [1.0, 1.0, 0.4]},  # PAM and CAM logits at 1.0 (MMSeg's DAHead), the FCN head at 0.4
    "ocrnet": {"aux_weight": [0.4]},  # the cascade's first (FCN) stage
    "bisenetv1": {"aux_weight": [1.0, 1.0], "train": {**SGD, "lr": 0.025, "warmup_iters": 1000},
                  "cityscapes": {"crop": [1024, 1024], "batch_size": 16, "iters": 160000}},
    "bisenetv2": {"aux_weight": [1.0] * 4, "train": {**SGD, "lr": 0.05, "warmup_iters": 1000},
                  "cityscapes": {"crop": [1024, 1024], "batch_size": 16, "iters": 160000}},
    "stdc": {"aux_weight": [1.0] * 3, "train": {**SGD, "warmup_iters": 1000}, "cityscapes": {"batch_size": 12}},
    "lraspp": {"cityscapes": {"batch_size": 16, "iters": 320000}},
    "unet": {"cityscapes": {"batch_size": 16, "iters": 160000}},
    "upernet_convnext": {"backbone": "convnext-tiny", "model": "upernet",
                         "train": {"optimizer": "adamw", "lr": 0.0001, "weight_decay": 0.05, "schedule": "poly",
                                   "power": 1.0, "min_lr": 0.0, "warmup_iters": 1500, "amp": "bf16"}},
}
# SETR's PUP/MLA and Segmenter's linear head share their family's recipe.
for _alias, _base in (("setr_pup", "setr_naive"), ("setr_mla", "setr_naive"), ("segmenter_linear", "segmenter_mask")):
    RECIPES[_alias] = RECIPES[_base]


def _pipeline(scale: list[int], crop: list[int]) -> list[dict[str, Any]]:
    return [
        {"type": "RandomResize", "scale": scale, "ratio_range": [0.5, 2.0]},
        {"type": "RandomCrop", "crop_size": crop, "cat_max_ratio": 0.75},
        {"type": "RandomFlip", "prob": 0.5},
        {"type": "PhotoMetricDistortion"},
        {"type": "Pad", "size": crop},
    ]


def recipe(key: str, dataset: str) -> tuple[str, dict[str, Any]]:
    """(file stem, config dict) of recipe ``key`` (a model name or a :data:`RECIPES` key) on ``dataset``."""
    r = RECIPES.get(key, {})
    name = r.get("model", key)
    backbone = r.get("backbone") or model_info(name)["defaults"].get("backbone")
    d = {**DATASETS[dataset], **r.get(dataset, {})}
    crop = d["crop"]
    train = {**SGD, **r.get("train", {}), "iters": d["iters"], "batch_size": d["batch_size"],
             "eval_interval": 8000, "checkpoint_interval": 8000}
    info = model_info(name)
    if "aux_weight" in r:
        train["aux_weight"] = r["aux_weight"]
    model: dict[str, Any] = {"name": name, "backbone": backbone}
    if info["defaults"].get("aux") is not None:
        model["aux"] = info["defaults"]["aux"]
    stem = f"{name}_{backbone}_{dataset}-{crop[0]}x{crop[1]}"
    cfg = {
        "model": model,
        "data": {"dataset": dataset, "root": d["root"], "input_size": d["input_size"], "crop_size": crop,
                 "augment": _pipeline(d["scale"], crop)},
        "train": train,
        "work_dir": f"work_dirs/{stem}",
    }
    return stem, cfg


def recipe_keys() -> list[str]:
    """Every registered model, plus the extra recipes (UPerNet on ConvNeXt) whose backbone is registered."""
    keys = list_models()
    for key, r in RECIPES.items():
        if key not in keys and r.get("model") in keys and is_backbone(r.get("backbone", "")):
            keys.append(key)
    return keys


class _Dumper(yaml.SafeDumper):
    """Block mappings, lists of scalars inline, no anchors."""

    def ignore_aliases(self, data: Any) -> bool:
        return True

    def represent_list(self, data: list) -> yaml.Node:
        flow = all(not isinstance(v, dict | list) for v in data)
        return self.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_Dumper.add_representer(list, _Dumper.represent_list)


def render(cfg: dict[str, Any], stem: str) -> str:
    """The YAML text of one recipe (block mappings, short lists inline, no anchors)."""
    head = f"# {stem}: MMSegmentation's recipe, written by `python -m training.recipes` (edit that, not this).\n"
    body = yaml.dump(cfg, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=120)
    return head + body


def write_all(out: Path) -> list[Path]:
    """Write every recipe on every dataset into ``out``; returns the paths."""
    paths = []
    for key in recipe_keys():
        for dataset in DATASETS:
            stem, cfg = recipe(key, dataset)
            path = out / f"{stem}.yaml"
            write_atomic(path, render(cfg, stem))
            paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: write the configs."""
    ap = argparse.ArgumentParser(description="write MMSeg's recipes as segrt configs")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "configs")
    a = ap.parse_args(argv)
    for p in write_all(a.out):
        print(p)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
