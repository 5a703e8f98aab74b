"""The custom folder dataset format on small fixtures written in the real on-disk layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from training.data import SegFolderDataset
from training.data.folder import load_classes

CLASSES = ["bg", "thing", "stuff"]


def write_dataset(root: Path, n: int = 3, split: str = "train", size: tuple[int, int] = (12, 16),
                  spec: dict | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Random images (.png, lossless) and masks with values 0..2 and some 255."""
    rng = np.random.default_rng(0)
    (root / "images" / split).mkdir(parents=True, exist_ok=True)
    (root / "masks" / split).mkdir(parents=True, exist_ok=True)
    (root / "classes.yaml").write_text(yaml.safe_dump(spec or {"classes": CLASSES}))
    out = []
    for i in range(n):
        img = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        mask = rng.integers(0, 3, size, dtype=np.uint8)
        mask[0, 0] = 255
        Image.fromarray(img).save(root / "images" / split / f"im{i}.png")
        Image.fromarray(mask, mode="L").save(root / "masks" / split / f"im{i}.png")
        out.append((img, mask))
    return out


def test_reads_images_and_masks(tmp_path: Path) -> None:
    data = write_dataset(tmp_path)
    ds = SegFolderDataset(tmp_path)
    assert len(ds) == 3 and ds.classes == CLASSES and ds.num_classes == 3 and ds.ignore_index == 255
    assert len(ds.palette) == 3 and all(len(c) == 3 for c in ds.palette)
    for i, (img, mask) in enumerate(data):
        item = ds[i]
        assert item["name"] == f"im{i}"
        assert item["image"].dtype == np.uint8 and item["image"].flags.c_contiguous and item["image"].flags.writeable
        assert item["mask"].dtype == np.uint8 and item["mask"].flags.writeable
        np.testing.assert_array_equal(item["image"], img)
        np.testing.assert_array_equal(item["mask"], mask)
    np.testing.assert_array_equal(ds[-1]["mask"], data[-1][1])
    with pytest.raises(IndexError):
        ds[3]


def test_palette_masks_give_raw_indices_and_other_image_kinds(tmp_path: Path) -> None:
    write_dataset(tmp_path, n=1)
    mask = np.array([[0, 1, 2, 255]] * 4, np.uint8)
    p = Image.fromarray(mask, mode="P")
    p.putpalette([10, 20, 30, 200, 0, 0, 0, 200, 0] + [0, 0, 0] * 253)
    p.save(tmp_path / "masks" / "train" / "im0.png")
    gray = np.arange(16, dtype=np.uint8).reshape(4, 4) * 10
    Image.fromarray(gray, mode="L").save(tmp_path / "images" / "train" / "im0.png")
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "images" / "train" / "im1.JPG")
    Image.fromarray(np.ones((4, 4), np.uint8), mode="L").save(tmp_path / "masks" / "train" / "im1.png")
    ds = SegFolderDataset(tmp_path)
    assert len(ds) == 2
    item = ds[0]
    np.testing.assert_array_equal(item["mask"], mask)
    assert item["image"].shape == (4, 4, 3)
    np.testing.assert_array_equal(item["image"][..., 1], gray)
    assert ds[1]["image"].shape == (4, 4, 3)


def test_load_classes_defaults_and_checks(tmp_path: Path) -> None:
    (tmp_path / "classes.yaml").write_text(yaml.safe_dump({"classes": ["a", "b"], "ignore_index": 7,
                                                            "palette": [[1, 2, 3], [4, 5, 6]]}))
    assert load_classes(tmp_path) == (["a", "b"], [(1, 2, 3), (4, 5, 6)], 7)
    (tmp_path / "classes.yaml").write_text("- a\n- b\n- c\n")
    names, palette, ignore = load_classes(tmp_path)
    assert names == ["a", "b", "c"] and len(set(palette)) == 3 and ignore == 255
    for bad in ({"classes": []}, {"classes": ["a"], "palette": [[1, 2]]}, {"classes": ["a", "b"], "ignore_index": 1},
                {"palette": [[1, 2, 3]]}):
        (tmp_path / "classes.yaml").write_text(yaml.safe_dump(bad))
        with pytest.raises(ValueError, match="classes.yaml"):
            load_classes(tmp_path)


def test_missing_root_classes_and_split(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere"):
        SegFolderDataset(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="classes.yaml"):
        SegFolderDataset(tmp_path)
    write_dataset(tmp_path)
    with pytest.raises(FileNotFoundError, match="val"):
        SegFolderDataset(tmp_path, "val")


def test_images_without_masks_are_listed(tmp_path: Path) -> None:
    write_dataset(tmp_path, n=3)
    (tmp_path / "masks" / "train" / "im0.png").unlink()
    (tmp_path / "masks" / "train" / "im2.png").unlink()
    with pytest.raises(FileNotFoundError, match="2 image") as e:
        SegFolderDataset(tmp_path)
    assert "im0.png" in str(e.value) and "im2.png" in str(e.value) and "im1.png" not in str(e.value)


def test_size_mismatch_is_named_at_load_time(tmp_path: Path) -> None:
    write_dataset(tmp_path, n=2)
    Image.fromarray(np.zeros((5, 5), np.uint8), mode="L").save(tmp_path / "masks" / "train" / "im1.png")
    ds = SegFolderDataset(tmp_path)
    ds[0]
    with pytest.raises(ValueError, match="size mismatch.*im1.png.*im1.png"):
        ds[1]


def test_mask_values_out_of_range(tmp_path: Path) -> None:
    write_dataset(tmp_path, n=1)
    mask = np.zeros((12, 16), np.uint8)
    mask[3, 3], mask[4, 4] = 3, 255
    Image.fromarray(mask, mode="L").save(tmp_path / "masks" / "train" / "im0.png")
    with pytest.raises(ValueError, match=r"im0.png has values \[3\]"):
        SegFolderDataset(tmp_path)[0]


def test_rgb_mask_is_refused(tmp_path: Path) -> None:
    write_dataset(tmp_path, n=1)
    Image.fromarray(np.zeros((12, 16, 3), np.uint8)).save(tmp_path / "masks" / "train" / "im0.png")
    with pytest.raises(ValueError, match="im0.png has mode 'RGB'"):
        SegFolderDataset(tmp_path)[0]


def test_unreadable_image(tmp_path: Path) -> None:
    write_dataset(tmp_path, n=1)
    (tmp_path / "images" / "train" / "im0.png").unlink()
    (tmp_path / "images" / "train" / "im0.jpg").write_bytes(b"not a jpeg at all")
    with pytest.raises(ValueError, match="cannot read image .*im0.jpg"):
        SegFolderDataset(tmp_path)[0]


def test_duplicate_stems(tmp_path: Path) -> None:
    write_dataset(tmp_path, n=1)
    Image.fromarray(np.zeros((12, 16, 3), np.uint8)).save(tmp_path / "images" / "train" / "im0.bmp")
    with pytest.raises(ValueError, match="im0"):
        SegFolderDataset(tmp_path)
