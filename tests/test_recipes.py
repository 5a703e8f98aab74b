"""The committed YAML recipes in configs/ are what training.recipes writes, load, and build every model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from training.config import load_config
from training.models import build
from training.recipes import DATASETS, recipe, recipe_keys, render, write_all

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
NUM_CLASSES = {"cityscapes": 19, "ade20k": 150}
CASES = [(key, ds) for key in recipe_keys() for ds in DATASETS]


def test_committed_configs_are_up_to_date(tmp_path: Path) -> None:
    written = write_all(tmp_path)
    assert len(written) == len(CASES)
    for path in written:
        committed = CONFIGS / path.name
        assert committed.is_file(), f"{committed.name} missing: run `python -m training.recipes`"
        assert committed.read_text() == path.read_text(), f"{committed.name} is stale: run `python -m training.recipes`"


@pytest.mark.parametrize(("key", "dataset"), CASES, ids=[f"{k}-{d}" for k, d in CASES])
def test_recipe_loads_and_builds(key: str, dataset: str, tmp_path: Path) -> None:
    stem, raw = recipe(key, dataset)
    path = tmp_path / f"{stem}.yaml"
    path.write_text(render(raw, stem))
    cfg = load_config(path, ["train.iters=5"])
    assert cfg.train.iters == 5 and cfg.data.dataset == dataset and cfg.data.augment
    assert tuple(cfg.data.crop_size) == tuple(raw["data"]["crop_size"])
    with torch.device("meta"):
        m = build(cfg.model.name, num_classes=NUM_CLASSES[dataset], backbone=cfg.model.backbone, aux=cfg.model.aux)
    assert m.num_classes == NUM_CLASSES[dataset]
    if isinstance(cfg.train.aux_weight, list):  # one weight per auxiliary output
        d = m.size_divisor
        with torch.device("meta"):
            _, aux = m.train().forward_with_aux(torch.empty(2, 3, 64 * d, 64 * d))
        assert len(aux) == len(cfg.train.aux_weight), key


def test_recipes_follow_mmseg_schedules() -> None:
    _, psp = recipe("pspnet", "cityscapes")
    assert psp["train"]["optimizer"] == "sgd" and psp["train"]["lr"] == 0.01 and psp["train"]["iters"] == 80000
    assert psp["data"]["crop_size"] == [512, 1024] and psp["train"]["batch_size"] == 8
    _, ade = recipe("pspnet", "ade20k")
    assert ade["train"]["iters"] == 160000 and ade["data"]["crop_size"] == [512, 512]
    assert ade["data"]["input_size"] is None  # ADE20K images keep their own size (MMSeg: keep_ratio resize)
