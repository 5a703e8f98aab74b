"""Public dataset loaders, on tiny fixtures that the tests write in each dataset's real on-disk format."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from training.data import SegFolderDataset
from training.data.datasets import DATASETS, VOCAugDataset, VOCDataset, build_dataset

H, W = 6, 8
RNG = np.random.default_rng(0)
VOC_PAL = [v for i in range(256) for v in (i, 255 - i, (7 * i) % 256)]
CAMVID_CODES = ["Animal", "Archway", "Bicyclist", "Bridge", "Building", "Car", "CartLuggagePram", "Child",
                "Column_Pole", "Fence", "LaneMkgsDriv", "LaneMkgsNonDriv", "Misc_Text", "MotorcycleScooter",
                "OtherMoving", "ParkingBlock", "Pedestrian", "Road", "RoadShoulder", "Sidewalk", "SignSymbol", "Sky",
                "SUVPickupTruck", "TrafficCone", "TrafficLight", "Train", "Tree", "Truck_Bus", "Tunnel",
                "VegetationMisc", "Void", "Wall"]


def write_png_mask(path: Path, raw: np.ndarray, palette: bool = False) -> None:
    """A single-channel label PNG ('P' with a palette like VOC's, or 'L')."""
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(np.asarray(raw, np.uint8), "P" if palette else "L")
    if palette:
        im.putpalette(VOC_PAL)
    im.save(path)


def write_regions(path: Path, raw: np.ndarray) -> None:
    """Stanford Background's ``.regions.txt``: space-separated ints, one row per image row."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(" ".join(str(int(v)) for v in row) for row in np.asarray(raw)) + "\n")


def write_image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(RNG.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(path)


def raw_from(values: list[int], dtype: type = np.uint8) -> np.ndarray:
    """An HxW grid cycling through ``values``."""
    return np.resize(np.array(values, dtype), (H, W))


@dataclass
class Fx:
    """A written fixture: what to build, and per sample name its files and expected (mapped) mask."""

    name: str
    root: Path
    expected: dict[str, np.ndarray] = field(default_factory=dict)
    images: dict[str, Path] = field(default_factory=dict)
    masks: dict[str, Path] = field(default_factory=dict)
    write_mask: Callable[[Path, np.ndarray], None] = write_png_mask
    bad_value: int = 254
    kw: dict = field(default_factory=dict)

    def add(self, name: str, image: Path, mask: Path, raw: np.ndarray, expected: np.ndarray) -> None:
        write_image(image)
        self.write_mask(mask, raw)
        self.images[name], self.masks[name], self.expected[name] = image, mask, np.asarray(expected, np.uint8)

    def build(self, split: str = "train", **kw: object) -> object:
        return build_dataset(self.name, self.root, split, **{**self.kw, **kw})


def make_voc(root: Path) -> Fx:
    base = root / "VOCdevkit" / "VOC2012"
    fx = Fx("voc", root, write_mask=lambda p, r: write_png_mask(p, r, palette=True), bad_value=21)
    lists = {"train": ["2007_000032", "2007_000033"], "val": ["2007_000039"]}
    lists["trainval"] = lists["train"] + lists["val"]
    for i, n in enumerate(lists["trainval"]):
        raw = raw_from([0, 15, 255, 20, i])
        fx.add(n, base / "JPEGImages" / f"{n}.jpg", base / "SegmentationClass" / f"{n}.png", raw, raw)
    for split, names in lists.items():
        (base / "ImageSets" / "Segmentation").mkdir(parents=True, exist_ok=True)
        (base / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(names) + "\n")
    for n in lists["val"]:  # the generic tests look at the train split
        del fx.expected[n], fx.images[n], fx.masks[n]
    return fx


def make_voc_aug(root: Path) -> Fx:
    fx = make_voc(root)
    fx.name = "voc_aug"
    base = root / "VOCdevkit" / "VOC2012"
    for n in ("2008_000002", "2008_000003"):  # SBD-only images: grayscale masks in SegmentationClassAug
        raw = raw_from([0, 7, 3])
        write_image(base / "JPEGImages" / f"{n}.jpg")
        write_png_mask(base / "SegmentationClassAug" / f"{n}.png", raw)
        fx.images[n], fx.masks[n], fx.expected[n] = base / "JPEGImages" / f"{n}.jpg", \
            base / "SegmentationClassAug" / f"{n}.png", raw
    (base / "ImageSets" / "Segmentation" / "aug.txt").write_text("2008_000002\n2008_000003\n2007_000039\n")
    return fx


def make_cityscapes(root: Path) -> Fx:
    fx = Fx("cityscapes", root, bad_value=34)
    for city, frame in (("aachen", "000000_000019"), ("bochum", "000000_000313")):
        name = f"{city}_{frame}"
        raw = raw_from([7, 26, 0, 33, 1, 24, 8])
        exp = raw_from([0, 13, 255, 18, 255, 11, 1])
        fx.add(name, root / "leftImg8bit" / "train" / city / f"{name}_leftImg8bit.png",
               root / "gtFine" / "train" / city / f"{name}_gtFine_labelIds.png", raw, exp)
    return fx


def make_camvid(root: Path) -> Fx:
    base = root / "camvid"
    base.mkdir()
    (base / "codes.txt").write_text("\n".join(CAMVID_CODES) + "\n")
    (base / "valid.txt").write_text("0016E5_07959.png\n")
    fx = Fx("camvid", base, bad_value=32)
    for n in ("0001TP_006690", "0001TP_006720", "0016E5_07959"):
        raw = raw_from([0, 17, 30, 31, 21])
        fx.add(n, base / "images" / f"{n}.png", base / "labels" / f"{n}_P.png", raw, raw)
    del fx.expected["0016E5_07959"], fx.images["0016E5_07959"], fx.masks["0016E5_07959"]
    return fx


def make_ade(root: Path) -> Fx:
    base = root / "ADEChallengeData2016"
    fx = Fx("ade20k", root, bad_value=151)
    for split, idx in (("training", 1), ("training", 2), ("validation", 1)):
        n = f"ADE_{'train' if split == 'training' else 'val'}_{idx:08d}"
        fx.add(n, base / "images" / split / f"{n}.jpg", base / "annotations" / split / f"{n}.png",
               raw_from([0, 1, 150, 12]), raw_from([255, 0, 149, 11]))
    del fx.expected["ADE_val_00000001"], fx.images["ADE_val_00000001"], fx.masks["ADE_val_00000001"]
    return fx


def make_stanford(root: Path) -> Fx:
    base = root / "iccv09Data"
    fx = Fx("stanford_background", root, write_mask=write_regions, bad_value=8)
    for n in ("0000047", "0000051", "0000059", "6000124", "9005297"):  # sorted: 4 train, 1 val
        fx.add(n, base / "images" / f"{n}.jpg", base / "labels" / f"{n}.regions.txt",
               raw_from([-1, 0, 7, 3], np.int64), raw_from([255, 0, 7, 3]))
    del fx.expected["9005297"], fx.images["9005297"], fx.masks["9005297"]
    return fx


def make_folder(root: Path) -> Fx:
    (root / "classes.yaml").write_text(yaml.safe_dump({"classes": ["bg", "thing", "stuff"]}))
    fx = Fx("folder", root, bad_value=3)
    for n in ("a", "b"):
        raw = raw_from([0, 1, 2, 255])
        fx.add(n, root / "images" / "train" / f"{n}.png", root / "masks" / "train" / f"{n}.png", raw, raw)
    return fx


MAKERS = [make_voc, make_voc_aug, make_cityscapes, make_camvid, make_ade, make_stanford, make_folder]
ids = [m.__name__[5:] for m in MAKERS]


@pytest.fixture(params=MAKERS, ids=ids)
def fx(request: pytest.FixtureRequest, tmp_path: Path) -> Fx:
    return request.param(tmp_path)


def index_of(ds: object, name: str) -> int:
    return [s.name for s in ds.samples].index(name)


def test_registry_names() -> None:
    assert {"voc", "voc_aug", "cityscapes", "camvid", "ade20k", "stanford_background", "folder", "sbd"} == set(DATASETS)


def test_items_in_the_common_interface(fx: Fx) -> None:
    ds = fx.build()
    assert len(ds) == len(fx.expected) and ds.ignore_index == 255 and ds.bad_files == []
    assert ds.num_classes == len(ds.classes) == len(ds.palette) and all(isinstance(c, str) for c in ds.classes)
    assert all(len(c) == 3 and all(0 <= v <= 255 for v in c) for c in ds.palette)
    for i in range(len(ds)):
        item = ds[i]
        assert set(item) == {"image", "mask", "name"}
        assert item["image"].dtype == np.uint8 and item["image"].shape == (H, W, 3)
        np.testing.assert_array_equal(item["image"], np.array(Image.open(fx.images[item["name"]]).convert("RGB")))
        assert item["mask"].dtype == np.uint8
        np.testing.assert_array_equal(item["mask"], fx.expected[item["name"]])
        labels = np.unique(item["mask"])
        assert ((labels < ds.num_classes) | (labels == 255)).all()
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_missing_mask_is_listed_or_skipped(fx: Fx) -> None:
    gone, kept = sorted(fx.masks)[0], sorted(fx.masks)[1]
    fx.masks[gone].unlink()
    with pytest.raises(FileNotFoundError, match="1 file") as e:
        fx.build()
    assert str(fx.masks[gone]) in str(e.value) and str(fx.masks[kept]) not in str(e.value)
    ds = fx.build(skip_bad=True)
    assert len(ds) == len(fx.expected) - 1 and gone not in [s.name for s in ds.samples]
    assert [(b.path, b.reason) for b in ds.bad_files] == [(fx.masks[gone], "mask not found")]


@pytest.mark.parametrize("fault", ["size", "label", "image"])
def test_bad_pairs_named_at_load_or_dropped_by_validate(fx: Fx, fault: str, caplog: pytest.LogCaptureFixture) -> None:
    name = sorted(fx.masks)[0]
    if fault == "size":
        fx.write_mask(fx.masks[name], np.zeros((H - 1, W), np.int64))
        match, culprit = "size mismatch", fx.masks[name]
    elif fault == "label":
        fx.write_mask(fx.masks[name], raw_from([0, fx.bad_value]))
        match, culprit = rf"values \[{fx.bad_value}\]", fx.masks[name]
    else:
        fx.images[name].write_bytes(b"not an image at all")
        match, culprit = "cannot read image", fx.images[name]
    ds = fx.build()
    with pytest.raises(ValueError, match=match) as e:
        ds[index_of(ds, name)]
    assert str(culprit) in str(e.value)
    with caplog.at_level(logging.WARNING):
        ds = fx.build(skip_bad=True)
    assert len(ds) == len(fx.expected) - 1 and name not in [s.name for s in ds.samples]
    assert len(ds.bad_files) == 1 and ds.bad_files[0].path == culprit and match.split("\\")[0] in ds.bad_files[0].reason
    assert str(culprit) in caplog.text
    for i in range(len(ds)):
        ds[i]


def test_all_bad_with_skip_bad_is_an_error(fx: Fx) -> None:
    for p in fx.images.values():
        p.write_bytes(b"junk")
    with pytest.raises(ValueError, match="every sample is bad") as e:
        fx.build(skip_bad=True)
    assert all(str(p) in str(e.value) for p in fx.images.values())


def test_voc_splits_roots_and_palette_indices(tmp_path: Path) -> None:
    make_voc(tmp_path)
    for root in (tmp_path, tmp_path / "VOCdevkit", tmp_path / "VOCdevkit" / "VOC2012"):
        assert [len(VOCDataset(root, s)) for s in ("train", "val", "trainval")] == [2, 1, 3]
    ds = VOCDataset(tmp_path, "val")
    assert ds.num_classes == 21 and ds.classes[15] == "person" and ds.palette[15] == (192, 128, 128)
    assert set(np.unique(ds[0]["mask"])) == {0, 2, 15, 20, 255}
    with pytest.raises(ValueError, match="unknown split 'test'"):
        VOCDataset(tmp_path, "test")
    with pytest.raises(FileNotFoundError, match="Pascal VOC"):
        VOCDataset(tmp_path / "VOCdevkit" / "VOC2012" / "JPEGImages")
    mask = tmp_path / "VOCdevkit" / "VOC2012" / "SegmentationClass" / "2007_000039.png"
    Image.open(mask).convert("RGB").save(mask)  # a colour mask is a common mistake
    with pytest.raises(ValueError, match="mode 'RGB'"):
        ds[0]


def test_voc_aug_union_without_val_and_mask_folders(tmp_path: Path) -> None:
    fx = make_voc_aug(tmp_path)
    ds = VOCAugDataset(tmp_path, "train")
    assert sorted(s.name for s in ds.samples) == sorted(fx.expected) and "2007_000039" not in fx.expected
    assert {s.name: s.mask for s in ds.samples} == fx.masks
    assert [s.name for s in VOCAugDataset(tmp_path, "val").samples] == ["2007_000039"]
    seg = tmp_path / "VOCdevkit" / "VOC2012" / "ImageSets" / "Segmentation"
    (seg / "trainaug.txt").write_text("2007_000032\n2008_000003\n")
    assert sorted(s.name for s in VOCAugDataset(tmp_path).samples) == ["2007_000032", "2008_000003"]


def test_sbd_mat_files(tmp_path: Path) -> None:
    io = pytest.importorskip("scipy.io")
    base = tmp_path / "benchmark_RELEASE" / "dataset"
    raw = raw_from([0, 3, 20])
    write_image(base / "img" / "2008_000002.jpg")
    (base / "cls").mkdir()
    gt = {"GTcls": {"Segmentation": raw, "Boundaries": [], "CategoriesPresent": [3]}}
    io.savemat(base / "cls" / "2008_000002.mat", gt)
    (base / "train.txt").write_text("2008_000002\n")
    np.testing.assert_array_equal(build_dataset("sbd", tmp_path)[0]["mask"], raw)


def test_cityscapes_trainids(tmp_path: Path) -> None:
    fx = make_cityscapes(tmp_path)
    ds = build_dataset("cityscapes", tmp_path)
    assert ds.num_classes == 19 and ds.classes[13] == "car" and [s.name for s in ds.samples] == sorted(fx.expected)
    lut = ds.lut
    assert (lut[7], lut[26], lut[0], lut[33], lut[-1 % 256]) == (0, 13, 255, 18, -1)
    assert sum(int(v) < 255 for v in lut if v >= 0) == 19
    # precomputed trainIds are used where present, as they are
    name = "aachen_000000_000019"
    train = fx.masks[name].with_name(f"{name}_gtFine_labelTrainIds.png")
    write_png_mask(train, raw_from([5, 255, 18]))
    ds = build_dataset("cityscapes", tmp_path)
    np.testing.assert_array_equal(ds[0]["mask"], raw_from([5, 255, 18]))
    np.testing.assert_array_equal(build_dataset("cityscapes", tmp_path, annotation="labelIds")[0]["mask"],
                                  fx.expected[name])
    write_png_mask(train, raw_from([19]))
    with pytest.raises(ValueError, match=r"labelTrainIds.png has values \[19\]"):
        ds[0]
    with pytest.raises(FileNotFoundError, match="labelTrainIds"):
        build_dataset("cityscapes", tmp_path, annotation="labelTrainIds")
    with pytest.raises(ValueError, match="annotation"):
        build_dataset("cityscapes", tmp_path, annotation="colour")


def test_camvid_split_and_void(tmp_path: Path) -> None:
    fx = make_camvid(tmp_path)
    ds = build_dataset("camvid", fx.root, "val")
    assert [s.name for s in ds.samples] == ["0016E5_07959"] and ds.num_classes == 32
    assert ds.classes == CAMVID_CODES and ds.palette[17] == (128, 64, 128)
    assert len(build_dataset("camvid", tmp_path, "all")) == 3  # root may also be the folder above camvid/
    ds = build_dataset("camvid", fx.root, "val", void_to_ignore=True)
    assert ds.num_classes == 31 and "Void" not in ds.classes and ds.classes[30] == "Wall"
    np.testing.assert_array_equal(ds[0]["mask"], raw_from([0, 17, 255, 30, 21]))
    (fx.root / "valid.txt").write_text("nope.png\n")
    with pytest.raises(FileNotFoundError, match="nope.png"):
        build_dataset("camvid", fx.root)


def test_ade_reduce_zero_label_and_split_names(tmp_path: Path) -> None:
    make_ade(tmp_path)
    for split in ("val", "validation"):
        ds = build_dataset("ade20k", tmp_path / "ADEChallengeData2016", split)
        assert len(ds) == 1 and ds.num_classes == 150 and ds.classes[0] == "wall" and ds.classes[149] == "flag"
        np.testing.assert_array_equal(ds[0]["mask"], raw_from([255, 0, 149, 11]))


def test_stanford_split_file_and_ragged_rows(tmp_path: Path) -> None:
    fx = make_stanford(tmp_path)
    assert [s.name for s in build_dataset("stanford_background", tmp_path, "val").samples] == ["9005297"]
    (fx.root / "iccv09Data" / "splits").mkdir()
    (fx.root / "iccv09Data" / "splits" / "val.txt").write_text("0000047\n0000051\n")
    assert len(build_dataset("stanford_background", tmp_path, "val")) == 2
    assert len(build_dataset("stanford_background", tmp_path, "all")) == 5
    fx.masks["0000047"].write_text("0 1 2\n0 1\n")
    with pytest.raises(ValueError, match="rows of different lengths"):
        build_dataset("stanford_background", tmp_path, "val")[0]


def test_folder_matches_seg_folder_dataset(tmp_path: Path) -> None:
    make_folder(tmp_path)
    a, b = build_dataset("folder", tmp_path), SegFolderDataset(tmp_path)
    assert (a.classes, a.palette, a.ignore_index, len(a)) == (b.classes, b.palette, b.ignore_index, len(b))
    for x, y in zip((a[i] for i in range(len(a))), (b[i] for i in range(len(b)))):
        assert x["name"] == y["name"]
        np.testing.assert_array_equal(x["image"], y["image"])
        np.testing.assert_array_equal(x["mask"], y["mask"])


def test_registry_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown dataset 'kitti'.*cityscapes"):
        build_dataset("kitti", tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_dataset("cityscapes", tmp_path / "nowhere")
    make_voc(tmp_path)
    with pytest.raises(TypeError):
        build_dataset("voc", tmp_path, bogus=1)
