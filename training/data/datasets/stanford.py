"""Stanford Background (iccv09Data): ``images/*.jpg`` and ``labels/*.regions.txt`` (8 classes, -1 unknown)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from training.data.datasets.base import BadSampleError, Sample, SegDataset, read_list, register, resolve_root

STANFORD_CLASSES = ["sky", "tree", "road", "grass", "water", "bldg", "mntn", "fg obj"]
STANFORD_PALETTE = [(128, 128, 128), (129, 127, 38), (120, 69, 125), (53, 125, 34), (0, 11, 123), (118, 20, 12),
                    (122, 81, 25), (241, 134, 51)]  # MMSegmentation tutorial's colours
TRAIN_FRACTION = 0.8


@register("stanford_background")
class StanfordBackgroundDataset(SegDataset):
    """The 715 images of Stanford Background with their ``<stem>.regions.txt`` label files (one row of
    space-separated ints per image row; -1 = unknown -> ignore_index).

    Split as MMSegmentation's tutorial does: ``splits/{train,val}.txt`` (one stem per line) when present,
    else the first 80% of the stems in sorted order are 'train' and the last 20% 'val'; 'all' is every image.
    """

    classes = STANFORD_CLASSES
    palette = STANFORD_PALETTE
    splits: ClassVar[dict[str, str]] = {"train": "train", "val": "val", "all": "all"}
    lut_offset: ClassVar[int] = 1  # raw -1 is looked up at lut[0]

    def __init__(self, root: str | Path, split: str = "train", **kw: Any) -> None:
        self.base = resolve_root(Path(root), ("iccv09Data", ""), "labels", "Stanford Background (iccv09Data)")
        super().__init__(root, split, **kw)

    def _make_lut(self) -> np.ndarray:
        lut = np.full(256, -1, np.int16)
        lut[0] = self.ignore_index
        lut[1:len(self.classes) + 1] = np.arange(len(self.classes))
        return lut

    def _list_samples(self) -> list[Sample]:
        img_dir = self.base / "images"
        if not img_dir.is_dir():
            raise FileNotFoundError(f"Stanford Background image folder {img_dir} does not exist")
        split_file = self.base / "splits" / f"{self.split_dir}.txt"
        if self.split_dir != "all" and split_file.is_file():
            stems = read_list(split_file)
        else:
            stems = sorted(p.stem for p in img_dir.glob("*.jpg"))
            n_train = int(len(stems) * TRAIN_FRACTION)
            stems = {"train": stems[:n_train], "val": stems[n_train:], "all": stems}[self.split_dir]
        return [Sample(s, img_dir / f"{s}.jpg", self.base / "labels" / f"{s}.regions.txt") for s in stems]

    def read_raw_mask(self, path: Path) -> np.ndarray:
        """The integer grid of a ``.regions.txt`` file."""
        try:
            rows = [[int(v) for v in line.split()] for line in path.read_text().splitlines() if line.strip()]
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise BadSampleError(path, f"cannot read label file {path}: {e}") from e
        widths = {len(r) for r in rows}
        if len(widths) != 1:
            raise BadSampleError(path, f"label file {path} has rows of different lengths {sorted(widths)[:5]} "
                                       f"(or no rows)")
        return np.array(rows, np.int64)
