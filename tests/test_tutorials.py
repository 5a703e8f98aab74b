"""The tutorial recipes (configs/tutorial_*.yaml, docs/tutorials.md): each one's settings, and each one trained end to
end for 2 iterations on a tiny dataset written in the real on-disk format of the dataset it names (Stanford
Background, CamVid, VOC-aug, Cityscapes), through ``load_config(path, overrides)`` as ``segrt train --set`` does."""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from tests.test_datasets import CAMVID_CODES, write_png_mask, write_regions
from training.batcher import open_datasets
from training.checkpoint import load_checkpoint
from training.config import load_config
from training.recipes import DATASETS, recipe, recipe_keys
from training.train import build_model, train

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TUTORIALS = {
    "tutorial_setr-naive_vit-base_stanford-320x320": "stanford",
    "tutorial_upernet_convnext-tiny_stanford-256x256": "stanford",
    "tutorial_unet-resnet_resnet34-v1b_camvid-320x320": "camvid",
    "tutorial_pspnet_resnet101_voc-aug-512x512": "voc_aug",
    "tutorial_deeplabv3_resnet101_voc-aug-512x512": "voc_aug",
    "tutorial_pspnet_resnet101_cityscapes-512x1024": "cityscapes",
    "tutorial_deeplabv3_resnet101_cityscapes-512x1024": "cityscapes",
}
NUM_CLASSES = {"stanford": 8, "camvid": 31, "voc_aug": 21, "cityscapes": 19}  # CamVid: 32 codes, Void ignored
N_TRAIN = {"stanford": 4, "camvid": 2, "voc_aug": 4, "cityscapes": 2}  # VOC-aug: VOC train + SBD, without VOC val
H, W = 64, 96  # fixture images; training crops 64x64, evaluation at 64x96 (multiples of 32 for ConvNeXt)
CROP = [64, 64]

# Small widths of each tutorial's model (the architecture, depth and heads stay those of the config).
TINY: dict[str, dict[str, Any]] = {
    "setr_naive": {"backbone_kwargs": {"img_size": 64, "embed_dims": 32, "num_layers": 4, "num_heads": 2}},
    "upernet": {"backbone_kwargs": {"depths": [1, 1, 1, 1], "channels": [8, 16, 32, 64], "drop_path_rate": 0.1},
                "head_kwargs": {"channels": 16, "pool_scales": [1, 2, 3, 6]}},
    "unet_resnet": {"backbone_kwargs": {"base_channels": 8, "stem_channels": 8}},
    "pspnet": {"backbone_kwargs": {"base_channels": 8, "stem_channels": 8}},
    "deeplabv3": {"backbone_kwargs": {"base_channels": 8, "stem_channels": 8}},
}


pytestmark = [pytest.mark.usefixtures("torch_single_thread")]


def _image(path: Path, rng: np.random.Generator) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(path)


def _labels(rng: np.random.Generator, values: list[int]) -> np.ndarray:
    """Blocky label map (8x8 cells) drawing from ``values``."""
    cells = rng.choice(np.array(values), size=(H // 8, W // 8))
    return np.kron(cells, np.ones((8, 8), dtype=cells.dtype))


def write_stanford(root: Path, rng: np.random.Generator) -> Path:
    """iccv09Data/{images/*.jpg, labels/*.regions.txt}; sorted names: 4 train, 1 val."""
    base = root / "iccv09Data"
    for name in ("0000047", "0000051", "0000059", "6000124", "9005297"):
        _image(base / "images" / f"{name}.jpg", rng)
        write_regions(base / "labels" / f"{name}.regions.txt", _labels(rng, list(range(-1, 8))))
    return root


def write_camvid(root: Path, rng: np.random.Generator) -> Path:
    """camvid/{codes.txt, valid.txt, images/*.png, labels/*_P.png} (fastai); 2 train, 1 val."""
    base = root / "camvid"
    base.mkdir(parents=True)
    (base / "codes.txt").write_text("\n".join(CAMVID_CODES) + "\n")
    (base / "valid.txt").write_text("0016E5_07959.png\n")
    for name in ("0001TP_006690", "0001TP_006720", "0016E5_07959"):
        _image(base / "images" / f"{name}.png", rng)
        write_png_mask(base / "labels" / f"{name}_P.png", _labels(rng, list(range(len(CAMVID_CODES)))))
    return base


def write_voc_aug(root: Path, rng: np.random.Generator) -> Path:
    """VOCdevkit/VOC2012 with VOC train/val (palette masks, 255 borders) and SBD-only images in
    SegmentationClassAug + aug.txt (which also lists a val image, to be left out)."""
    base = root / "VOCdevkit" / "VOC2012"
    seg = base / "ImageSets" / "Segmentation"
    seg.mkdir(parents=True)
    lists = {"train": ["2007_000032", "2007_000033"], "val": ["2007_000039"]}
    for name in lists["train"] + lists["val"]:
        _image(base / "JPEGImages" / f"{name}.jpg", rng)
        write_png_mask(base / "SegmentationClass" / f"{name}.png", _labels(rng, [*range(21), 255]), palette=True)
    for name in ("2008_000002", "2008_000003"):
        _image(base / "JPEGImages" / f"{name}.jpg", rng)
        write_png_mask(base / "SegmentationClassAug" / f"{name}.png", _labels(rng, list(range(21))))
    for split, names in lists.items():
        (seg / f"{split}.txt").write_text("\n".join(names) + "\n")
    (seg / "aug.txt").write_text("2008_000002\n2008_000003\n2007_000039\n")
    return base


def write_cityscapes(root: Path, rng: np.random.Generator) -> Path:
    """leftImg8bit/{train,val}/<city>/*_leftImg8bit.png with gtFine/.../*_gtFine_labelIds.png (ids 0..33)."""
    for split, city, frames in (("train", "aachen", ("000000_000019", "000001_000019")),
                                ("val", "frankfurt", ("000000_000294",))):
        for frame in frames:
            name = f"{city}_{frame}"
            _image(root / "leftImg8bit" / split / city / f"{name}_leftImg8bit.png", rng)
            gt = root / "gtFine" / split / city / f"{name}_gtFine_labelIds.png"
            write_png_mask(gt, _labels(rng, list(range(34))))
    return root


WRITERS: dict[str, Callable[[Path, np.random.Generator], Path]] = {
    "stanford": write_stanford, "camvid": write_camvid, "voc_aug": write_voc_aug, "cityscapes": write_cityscapes,
}


def _raw(stem: str) -> dict[str, Any]:
    return yaml.safe_load((CONFIGS / f"{stem}.yaml").read_text())


def _set(key: str, value: Any) -> str:
    """One ``--set`` override, the value written as flow YAML."""
    return f"{key}={yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()}"


def _shrunk_pipeline(pipeline: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The config's augmentation with its sizes scaled to the fixture (same transforms, same order)."""
    out = []
    for t in pipeline:
        t = dict(t)
        if "scale" in t:
            t["scale"] = [W, H]
        for key in ("crop_size", "size"):
            if key in t:
                t[key] = CROP
        out.append(t)
    return out


def test_the_tutorial_configs_are_these_and_not_recipe_outputs() -> None:
    assert {p.stem for p in CONFIGS.glob("tutorial_*.yaml")} == set(TUTORIALS)
    generated = {recipe(key, ds)[0] for key in recipe_keys() for ds in DATASETS}
    assert not generated & set(TUTORIALS)  # training.recipes owns <model>_<backbone>_<dataset>-<crop>.yaml only


@pytest.mark.parametrize("stem", sorted(TUTORIALS))
def test_tutorial_settings_and_full_size_model(stem: str) -> None:
    cfg = load_config(CONFIGS / f"{stem}.yaml")
    kind = TUTORIALS[stem]
    crop = stem.rsplit("-", 1)[1]
    assert "x".join(str(v) for v in cfg.data.crop_size) == crop
    assert cfg.data.augment and cfg.data.augment[1] == {"type": "RandomCrop", "crop_size": list(cfg.data.crop_size),
                                                        "cat_max_ratio": 0.75}
    assert cfg.work_dir == f"work_dirs/{stem}"
    t = cfg.train
    if kind == "stanford":
        assert cfg.data.dataset == "stanford_background" and crop in ("256x256", "320x320")
        assert t.batch_size <= 8 and 1000 <= t.iters <= 5000
    if kind in ("voc_aug", "cityscapes"):  # OHEM as MMSeg's sampler, auxiliary head at 0.4, SGD 0.01 poly
        assert cfg.model.backbone == "resnet101" and cfg.model.aux is True and t.aux_weight == 0.4
        assert t.loss == [{"name": "ohem", "thresh": 0.7, "min_kept": 100000}]
        assert (t.optimizer, t.lr, t.schedule) == ("sgd", 0.01, "poly")
        assert cfg.data.dataset == kind and cfg.data.train_split == "train"  # voc_aug's train = VOC train + SBD
    if kind == "camvid":
        assert cfg.model.name == "unet_resnet" and cfg.model.backbone == "resnet34-v1b"
        assert [spec["name"] for spec in t.loss] == ["dice"] and cfg.data.dataset_kwargs == {"void_to_ignore": True}
    if stem.startswith("tutorial_setr"):
        assert (t.optimizer, t.lr, t.head_lr_mult) == ("sgd", 0.01, 10.0)
    with torch.device("meta"):
        m = build_model(cfg, NUM_CLASSES[kind])
    assert m.num_classes == NUM_CLASSES[kind]
    assert (m.auxiliary_head is not None) is bool(cfg.model.aux)
    h, w = cfg.data.crop_size
    assert h % m.size_divisor == 0 and w % m.size_divisor == 0
    if cfg.data.input_size:
        assert all(v % m.size_divisor == 0 for v in cfg.data.input_size)


@pytest.mark.parametrize("stem", sorted(TUTORIALS))
def test_tutorial_trains_end_to_end_on_fixture_data(stem: str, tmp_path: Path) -> None:
    kind = TUTORIALS[stem]
    root = WRITERS[kind](tmp_path / "data", np.random.default_rng(0))
    raw = _raw(stem)
    tiny = TINY[raw["model"]["name"]]
    work = tmp_path / "work"
    overrides = [
        _set("data.root", str(root)), _set("work_dir", str(work)),
        _set("data.crop_size", CROP), _set("data.augment", _shrunk_pipeline(raw["data"]["augment"])),
        "train.iters=2", "train.batch_size=2", "train.eval_interval=2", "train.checkpoint_interval=2",
        "train.log_interval=1", "train.device=cpu",
        *(_set(f"model.{key}", value) for key, value in tiny.items()),
    ]
    if raw["data"].get("input_size"):
        overrides.append(_set("data.input_size", [H, W]))
    cfg = load_config(CONFIGS / f"{stem}.yaml", overrides)
    assert cfg.train.loss == raw["train"].get("loss") and cfg.model.name == raw["model"]["name"]
    train_ds, val_ds = open_datasets(cfg)
    assert (len(train_ds), len(val_ds)) == (N_TRAIN[kind], 1)

    metrics = train(cfg, quiet=True)

    assert 0.0 <= metrics["mIoU"] <= 1.0 and len(metrics["per_class_IoU"]) == NUM_CLASSES[kind]
    ckpt = load_checkpoint(work / "last.pt")
    assert ckpt["iter"] == 2 and len(ckpt["meta"]["classes"]) == NUM_CLASSES[kind]
    assert ckpt["config"]["model"]["name"] == raw["model"]["name"] and (work / "best.pt").is_file()
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())
    rows = list(csv.DictReader((work / "metrics.csv").open()))
    losses = [float(r["loss"]) for r in rows if r["loss"]]
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)
    assert any(r["mIoU"] for r in rows)  # the evaluation at the end is logged
