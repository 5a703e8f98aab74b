"""CamVid in the fastai layout: ``images/*.png``, ``labels/<stem>_P.png``, ``codes.txt``, ``valid.txt``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from training.data.datasets.base import Sample, SegDataset, read_list, register, resolve_root
from training.data.folder import IMAGE_EXTS, _default_palette

# The colours of CamVid's label_colors.txt, by class name.
CAMVID_COLORS = {
    "Animal": (64, 128, 64), "Archway": (192, 0, 128), "Bicyclist": (0, 128, 192), "Bridge": (0, 128, 64),
    "Building": (128, 0, 0), "Car": (64, 0, 128), "CartLuggagePram": (64, 0, 192), "Child": (192, 128, 64),
    "Column_Pole": (192, 192, 128), "Fence": (64, 64, 128), "LaneMkgsDriv": (128, 0, 192),
    "LaneMkgsNonDriv": (192, 0, 64), "Misc_Text": (128, 128, 64), "MotorcycleScooter": (192, 0, 192),
    "OtherMoving": (128, 64, 64), "ParkingBlock": (64, 192, 128), "Pedestrian": (64, 64, 0), "Road": (128, 64, 128),
    "RoadShoulder": (128, 128, 192), "Sidewalk": (0, 0, 192), "SignSymbol": (192, 128, 128), "Sky": (128, 128, 128),
    "SUVPickupTruck": (64, 128, 192), "TrafficCone": (0, 0, 64), "TrafficLight": (0, 64, 64), "Train": (192, 64, 128),
    "Tree": (128, 128, 0), "Truck_Bus": (192, 128, 192), "Tunnel": (64, 0, 64), "VegetationMisc": (192, 192, 0),
    "Void": (0, 0, 0), "Wall": (64, 192, 0),
}


@register("camvid")
class CamVidDataset(SegDataset):
    """fastai's CamVid (``untar_data(URLs.CAMVID)``): the 32 classes named in ``codes.txt`` (mask value = line
    number), split 'val' = the images listed in ``valid.txt``, 'train' = the others, 'all' = every image.

    ``void_to_ignore=True`` maps the class named 'Void' to ignore_index and drops it from ``classes`` (31
    classes; the ids after it shift down by one), as fastai's ``acc_camvid`` metric ignores it.
    """

    splits: ClassVar[dict[str, str]] = {"train": "train", "val": "val", "valid": "val", "all": "all"}

    def __init__(self, root: str | Path, split: str = "train", *, void_to_ignore: bool = False, **kw: Any) -> None:
        self.base = resolve_root(Path(root), ("camvid", ""), "codes.txt", "CamVid (fastai layout)")
        codes = read_list(self.base / "codes.txt")
        if not codes or len(codes) > 255:
            raise ValueError(f"{self.base / 'codes.txt'} must list 1..255 class names, got {len(codes)}")
        self.codes = codes
        self.void_to_ignore = void_to_ignore
        if void_to_ignore and "Void" not in codes:
            raise ValueError(f"void_to_ignore=True but {self.base / 'codes.txt'} has no class named 'Void'")
        self.classes = [c for c in codes if not (void_to_ignore and c == "Void")]
        fallback = _default_palette(len(self.classes))
        self.palette = [CAMVID_COLORS.get(c, fallback[i]) for i, c in enumerate(self.classes)]
        super().__init__(root, split, **kw)

    def _make_lut(self) -> np.ndarray:
        lut = np.full(256, -1, np.int16)
        lut[self.ignore_index] = self.ignore_index
        k = 0
        for i, c in enumerate(self.codes):
            if self.void_to_ignore and c == "Void":
                lut[i] = self.ignore_index
            else:
                lut[i], k = k, k + 1
        return lut

    def _list_samples(self) -> list[Sample]:
        img_dir = self.base / "images"
        if not img_dir.is_dir():
            raise FileNotFoundError(f"CamVid image folder {img_dir} does not exist")
        images = sorted(p for p in img_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)
        if self.split_dir != "all":
            valid = {Path(n).name for n in read_list(self.base / "valid.txt")}
            unknown = sorted(valid - {p.name for p in images})
            if unknown:
                raise FileNotFoundError(f"{self.base / 'valid.txt'} lists {len(unknown)} image(s) not in {img_dir}: "
                                        f"{', '.join(unknown[:10])}")
            images = [p for p in images if (p.name in valid) == (self.split_dir == "val")]
        return [Sample(p.stem, p, self.base / "labels" / f"{p.stem}_P.png") for p in images]
