"""ADE20K scene parsing (ADEChallengeData2016, 150 classes; label 0 'other' is ignored)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from training.data.datasets.ade_meta import ADE_CLASSES, ADE_PALETTE
from training.data.datasets.base import Sample, SegDataset, register, resolve_root


@register("ade20k")
class ADE20KDataset(SegDataset):
    """``ADEChallengeData2016/{images,annotations}/{training,validation}/`` (``*.jpg`` / ``*.png``).

    reduce_zero_label: annotation 0 ('other objects') -> ignore_index, k -> k-1 (classes 0..149).
    Splits 'train'/'val' (or the on-disk 'training'/'validation').
    """

    classes = ADE_CLASSES
    palette = ADE_PALETTE
    splits: ClassVar[dict[str, str]] = {"train": "training", "val": "validation", "training": "training",
                                        "validation": "validation"}

    def __init__(self, root: str | Path, split: str = "train", **kw: Any) -> None:
        self.base = resolve_root(Path(root), ("ADEChallengeData2016", ""), "images", "ADE20K (ADEChallengeData2016)")
        super().__init__(root, split, **kw)

    def _make_lut(self) -> np.ndarray:
        lut = np.full(256, -1, np.int16)
        lut[0] = self.ignore_index
        lut[1:len(self.classes) + 1] = np.arange(len(self.classes))
        return lut

    def _list_samples(self) -> list[Sample]:
        img_dir = self.base / "images" / self.split_dir
        if not img_dir.is_dir():
            raise FileNotFoundError(f"ADE20K image folder {img_dir} does not exist")
        ann = self.base / "annotations" / self.split_dir
        return [Sample(p.stem, p, ann / f"{p.stem}.png") for p in sorted(img_dir.glob("*.jpg"))]
