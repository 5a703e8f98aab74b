"""YAML configs: typed sections, overrides, and errors naming unknown keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.config import config_from_dict, load_config

ROOT = Path(__file__).resolve().parent.parent


def test_demo_config_loads_with_overrides() -> None:
    cfg = load_config(ROOT / "configs" / "demo_pspnet_r18-d8_synthetic-128x256.yaml",
                      ["train.iters=7", "data.input_size=[64,128]", "model.backbone_kwargs.base_channels=8"])
    assert cfg.train.iters == 7
    assert cfg.data.input_size == (64, 128)
    assert cfg.model.backbone_kwargs["base_channels"] == 8
    assert cfg.model.name == "pspnet"


@pytest.mark.parametrize("raw, key", [
    ({"trian": {}}, "trian"),
    ({"train": {"itters": 3}}, "itters"),
    ({"model": {"name": "fcn", "depth": 3}}, "depth"),
])
def test_unknown_keys_are_named(raw, key) -> None:
    with pytest.raises(ValueError, match=key):
        config_from_dict(raw)


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ValueError, match="bad.yaml"):
        load_config(bad)
    with pytest.raises(ValueError, match="key=value"):
        load_config(ROOT / "configs" / "demo_pspnet_r18-d8_synthetic-128x256.yaml", ["train.iters"])
