"""Cityscapes (fine annotations), 19 training classes mapped from the 34 label ids at load time."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from training.data.datasets.base import Sample, SegDataset, identity_lut, register

CITYSCAPES_CLASSES = ["road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
                      "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle",
                      "bicycle"]
CITYSCAPES_PALETTE = [(128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
                      (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180),
                      (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230),
                      (119, 11, 32)]
# labelId -> trainId of cityscapesScripts' labels.py; every other id (0..33) is ignored.
LABEL_TO_TRAIN = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12, 26: 13,
                  27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
NUM_LABEL_IDS = 34
IMG_SUFFIX, LABEL_SUFFIX, TRAIN_SUFFIX = "_leftImg8bit.png", "_gtFine_labelIds.png", "_gtFine_labelTrainIds.png"


def label_to_train_lut(ignore_index: int = 255) -> np.ndarray:
    """Lookup table labelId (0..33) -> trainId (0..18) or ignore_index; other values are invalid (-1)."""
    lut = np.full(256, -1, np.int16)
    lut[:NUM_LABEL_IDS] = ignore_index
    for label, train in LABEL_TO_TRAIN.items():
        lut[label] = train
    return lut


@register("cityscapes")
class CityscapesDataset(SegDataset):
    """``leftImg8bit/{split}/{city}/*_leftImg8bit.png`` with ``gtFine/{split}/{city}/*_gtFine_labelIds.png``
    (mapped to trainIds through a lookup table) or, where present, the precomputed
    ``*_gtFine_labelTrainIds.png`` (used as they are). ``annotation``: 'auto' (trainIds where present),
    'labelIds' or 'labelTrainIds' to insist on one kind. Names are ``{city}_{seq}_{frame}``."""

    classes = CITYSCAPES_CLASSES
    palette = CITYSCAPES_PALETTE
    splits: ClassVar[dict[str, str]] = {"train": "train", "val": "val", "test": "test"}

    def __init__(self, root: str | Path, split: str = "train", *, annotation: str = "auto", **kw: Any) -> None:
        if annotation not in ("auto", "labelIds", "labelTrainIds"):
            raise ValueError(f"annotation must be 'auto', 'labelIds' or 'labelTrainIds', got {annotation!r}")
        self.annotation = annotation
        self.train_lut = identity_lut(len(self.classes), self.ignore_index)
        super().__init__(root, split, **kw)

    def _make_lut(self) -> np.ndarray:
        return label_to_train_lut(self.ignore_index)

    def lut_for(self, mask_path: Path) -> np.ndarray:
        """trainId files are checked as they are; labelId files go through the labelId -> trainId table."""
        return self.train_lut if mask_path.name.endswith(TRAIN_SUFFIX) else self.lut

    def _list_samples(self) -> list[Sample]:
        img_dir = self.root / "leftImg8bit" / self.split_dir
        if not img_dir.is_dir():
            raise FileNotFoundError(f"Cityscapes image folder {img_dir} does not exist")
        out = []
        for img in sorted(img_dir.glob(f"*/*{IMG_SUFFIX}")):
            base = img.name[: -len(IMG_SUFFIX)]
            gt = self.root / "gtFine" / self.split_dir / img.parent.name
            train, label = gt / f"{base}{TRAIN_SUFFIX}", gt / f"{base}{LABEL_SUFFIX}"
            if self.annotation == "labelTrainIds" or (self.annotation == "auto" and train.is_file()):
                out.append(Sample(base, img, train))
            else:
                out.append(Sample(base, img, label))
        return out
