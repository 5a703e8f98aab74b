"""uint8 image+mask augmentation: reproducible from a seed, masks only moved, MMSeg's semantics."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from training.data.augment import (
    Compose,
    Pad,
    PhotoMetricDistortion,
    RandomCrop,
    RandomFlip,
    RandomResize,
    Resize,
    build_pipeline,
)

LABELS = np.array([0, 3, 7, 255], np.uint8)
CITYSCAPES = """
- {type: RandomResize, scale: [256, 128], ratio_range: [0.5, 2.0]}
- {type: RandomCrop, crop_size: [64, 128], cat_max_ratio: 0.75}
- {type: RandomFlip, prob: 0.5}
- {type: PhotoMetricDistortion}
- {type: Pad, size: [64, 128]}
"""


def sample(h: int = 48, w: int = 80, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"image": rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
            "mask": LABELS[rng.integers(0, 4, (h, w))], "name": "x"}


def test_pipeline_is_deterministic_from_the_seed() -> None:
    pipe = build_pipeline(yaml.safe_load(CITYSCAPES))
    s = sample()
    a, b = pipe(s, np.random.default_rng(5)), pipe(s, np.random.default_rng(5))
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["mask"], b["mask"])
    assert a["image"].shape == (64, 128, 3) and a["mask"].shape == (64, 128) and a["name"] == "x"
    outs = {pipe(s, np.random.default_rng(k))["image"].tobytes() for k in range(4)}
    assert len(outs) == 4
    np.testing.assert_array_equal(s["image"], sample()["image"])  # the input is not modified


@pytest.mark.parametrize("t", [RandomResize((100, 60), (0.3, 2.7)), RandomResize((50, 50), keep_ratio=False),
                               RandomCrop((20, 30)), RandomFlip(1.0), Pad((64, 96)), Pad(size_divisor=32)])
def test_masks_get_no_new_labels(t: object) -> None:
    for seed in range(5):
        out = t(sample(seed=seed), np.random.default_rng(seed))
        assert out["image"].dtype == np.uint8 and out["mask"].dtype == np.uint8
        assert out["image"].shape[:2] == out["mask"].shape
        assert set(np.unique(out["mask"])) <= set(LABELS)


def test_random_resize_keeps_ratio_relative_to_the_base_scale() -> None:
    t = RandomResize((2048, 1024), (0.5, 2.0))
    assert t.target_size(1024, 2048, 1.0) == (1024, 2048)
    assert t.target_size(512, 1024, 0.5) == (512, 1024)  # relative to the base scale, not the image
    assert t.target_size(1024, 2048, 2.0) == (2048, 4096)
    assert t.target_size(600, 800, 1.0) == (1024, 1365)  # short side limits: 1024 / 600
    sizes = {RandomResize((80, 48), (0.5, 2.0))(sample(), np.random.default_rng(k))["image"].shape for k in range(8)}
    assert len(sizes) >= 6 and all(24 <= h <= 96 and round(h * 80 / 48) - 1 <= w <= round(h * 80 / 48) + 1
                                   for h, w, _ in sizes)
    assert Resize((40, 24))(sample(), np.random.default_rng(0))["image"].shape == (24, 40, 3)


def test_resized_mask_is_the_nearest_source_pixel() -> None:
    s = sample(8, 8)
    s["image"] = np.repeat(s["mask"][..., None], 3, axis=2)
    out = Resize((16, 16))(s, np.random.default_rng(0))
    np.testing.assert_array_equal(out["mask"], np.repeat(np.repeat(s["mask"], 2, 0), 2, 1))


def test_crop_is_aligned_and_clipped() -> None:
    s = sample(30, 40)
    s["image"][..., 0] = s["mask"]
    out = RandomCrop((16, 24))(s, np.random.default_rng(1))
    assert out["mask"].shape == (16, 24)
    np.testing.assert_array_equal(out["image"][..., 0], out["mask"])
    assert RandomCrop((64, 64))(s, np.random.default_rng(1))["mask"].shape == (30, 40)


def test_crop_respects_cat_max_ratio_when_possible() -> None:
    mask = np.zeros((100, 100), np.uint8)  # mostly class 0, other classes in one corner, ignore elsewhere
    mask[:30, :30] = 255
    mask[50:, 50:] = np.where(np.arange(50)[None, :] % 2, 1, 2)
    s = {"image": np.zeros((100, 100, 3), np.uint8), "mask": mask}
    t = RandomCrop((50, 50), cat_max_ratio=0.75)  # about 40% of the crops pass
    free = [RandomCrop((50, 50))(s, np.random.default_rng(k))["mask"] for k in range(50)]
    assert sum(not t.acceptable(m) for m in free) > 20  # the constraint does bite without re-drawing
    for k in range(50):
        assert t.acceptable(t(s, np.random.default_rng(k))["mask"])
    # ignore_index does not count: a crop of only 255 and one class is never acceptable
    assert not t.acceptable(np.array([[255, 255, 255, 1]], np.uint8))
    assert t.acceptable(np.array([[255, 255, 2, 1]], np.uint8))
    # impossible: a single class everywhere still gives a crop
    one = {"image": np.zeros((50, 50, 3), np.uint8), "mask": np.zeros((50, 50), np.uint8)}
    assert t(one, np.random.default_rng(0))["mask"].shape == (50, 50)


def test_flip_symmetry() -> None:
    s = sample()
    f = RandomFlip(1.0)(s, np.random.default_rng(0))
    np.testing.assert_array_equal(f["image"], s["image"][:, ::-1])
    np.testing.assert_array_equal(f["mask"], s["mask"][:, ::-1])
    back = RandomFlip(1.0)(f, np.random.default_rng(0))
    np.testing.assert_array_equal(back["image"], s["image"])
    assert RandomFlip(0.0)(s, np.random.default_rng(0)) is s
    v = RandomFlip(1.0, "vertical")(s, np.random.default_rng(0))
    np.testing.assert_array_equal(v["mask"], s["mask"][::-1])
    flips = sum(RandomFlip(0.5)(s, np.random.default_rng(k)) is not s for k in range(200))
    assert 70 < flips < 130


def test_photometric_changes_only_the_image() -> None:
    t = PhotoMetricDistortion()
    s = sample()
    changed = 0
    for k in range(20):
        out = t(s, np.random.default_rng(k))
        assert out["mask"] is s["mask"]
        assert out["image"].dtype == np.uint8 and out["image"].shape == s["image"].shape
        changed += not np.array_equal(out["image"], s["image"])
    assert changed >= 15
    still = PhotoMetricDistortion(0, (1.0, 1.0), (1.0, 1.0), 0)
    for k in range(5):
        np.testing.assert_array_equal(still(s, np.random.default_rng(k))["image"], s["image"])


def test_photometric_hue_and_saturation() -> None:
    red = {"image": np.full((4, 4, 3), (200, 40, 40), np.uint8)}
    gray = PhotoMetricDistortion(0, (1, 1), (0.0, 0.0), 0)
    outs = [gray(red, np.random.default_rng(k))["image"] for k in range(8)]
    assert any(np.ptp(o[0, 0]) <= 1 for o in outs)  # saturation 0 gives gray when drawn
    hue = PhotoMetricDistortion(0, (1, 1), (1, 1), 18)
    moved = [hue(red, np.random.default_rng(k))["image"][0, 0] for k in range(8)]
    assert any(o[1] > 60 or o[2] > 60 for o in moved)  # red shifts towards orange or magenta
    assert all(o[0] > o[1] and o[0] > o[2] for o in moved)  # at most 36 degrees: still reddest


def test_pad_values() -> None:
    s = sample(10, 12)
    out = Pad((16, 14))(s)
    assert out["image"].shape == (16, 14, 3) and (out["image"][10:] == 0).all() and (out["mask"][:, 12:] == 255).all()
    np.testing.assert_array_equal(out["mask"][:10, :12], s["mask"])
    assert Pad((8, 8))(s) is s
    assert Pad(size_divisor=8, pad_val=5)(s)["image"].shape == (16, 16, 3)


def test_config_errors_name_the_culprit() -> None:
    with pytest.raises(ValueError, match="'Mosaic'"):
        build_pipeline([{"type": "Mosaic"}])
    with pytest.raises(ValueError, match="RandomCrop.*'crop'"):
        build_pipeline([{"type": "RandomCrop", "crop": [4, 4]}])
    with pytest.raises(ValueError, match="RandomFlip.*prob"):
        build_pipeline([{"type": "RandomFlip", "prob": 2}])
    with pytest.raises(ValueError, match="RandomCrop.*crop_size"):
        build_pipeline([{"type": "RandomCrop"}])
    with pytest.raises(ValueError, match="'type'"):
        build_pipeline([{"prob": 0.5}])
    with pytest.raises(ValueError, match="list"):
        build_pipeline({"type": "RandomFlip"})
    with pytest.raises(ValueError, match="uint8 HxWx3"):
        Compose([])({"image": np.zeros((4, 4), np.float32)}, np.random.default_rng(0))
    with pytest.raises(ValueError, match="mask"):
        RandomFlip()({"image": np.zeros((4, 4, 3), np.uint8), "mask": np.zeros((3, 4), np.uint8)},
                     np.random.default_rng(0))
