"""The project's own folder format (see :mod:`training.data.folder`) on the shared base class."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from training.data.datasets.base import Sample, SegDataset, register
from training.data.folder import IMAGE_EXTS, load_classes


@register("folder")
class FolderDataset(SegDataset):
    """``images/<split>/*.{jpg,png,...}``, ``masks/<split>/<stem>.png``, ``classes.yaml``; any split name.

    Same items as :class:`training.data.SegFolderDataset`, plus ``skip_bad`` / ``validate()``.
    """

    def __init__(self, root: str | Path, split: str = "train", **kw: Any) -> None:
        if not Path(root).is_dir():
            raise FileNotFoundError(f"dataset root {root} does not exist")
        self.classes, self.palette, self.ignore_index = load_classes(root)
        super().__init__(root, split, **kw)

    def _resolve_split(self, split: str) -> str:
        return split

    def _list_samples(self) -> list[Sample]:
        image_dir = self.root / "images" / self.split_dir
        if not image_dir.is_dir():
            raise FileNotFoundError(f"image folder {image_dir} does not exist (split {self.split!r})")
        images = sorted(p for p in image_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)
        return [Sample(p.stem, p, self.root / "masks" / self.split_dir / f"{p.stem}.png") for p in images]
