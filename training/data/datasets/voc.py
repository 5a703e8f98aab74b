"""Pascal VOC 2012, its SBD-augmented training set ("VOC-aug", MMSegmentation's layout) and SBD's native files.

Masks are palette PNGs whose index is the class (0 background .. 20 tvmonitor) and 255 the object borders
and difficult regions (ignored). SBD's annotations have no borders.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from training.data.datasets.base import BadSampleError, Sample, SegDataset, read_list, register, resolve_root
from training.data.folder import _default_palette

VOC_CLASSES = ["background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
               "tvmonitor"]
VOC_PALETTE = _default_palette(len(VOC_CLASSES))
_VOC_ROOTS = ("VOCdevkit/VOC2012", "VOC2012", "")


@register("voc")
class VOCDataset(SegDataset):
    """Pascal VOC 2012 segmentation: ``VOCdevkit/VOC2012/{JPEGImages/*.jpg, SegmentationClass/*.png,
    ImageSets/Segmentation/{train,val,trainval}.txt}``. ``root`` may be the folder holding VOCdevkit,
    VOCdevkit itself or VOC2012."""

    classes = VOC_CLASSES
    palette = VOC_PALETTE
    splits: ClassVar[dict[str, str]] = {"train": "train", "val": "val", "trainval": "trainval"}

    def __init__(self, root: str | Path, split: str = "train", **kw: Any) -> None:
        self.base = resolve_root(Path(root), _VOC_ROOTS, "JPEGImages", "Pascal VOC 2012")
        super().__init__(root, split, **kw)

    def _names(self, list_name: str) -> list[str]:
        return read_list(self.base / "ImageSets" / "Segmentation" / f"{list_name}.txt")

    def _sample(self, name: str, mask_dir: str = "SegmentationClass") -> Sample:
        return Sample(name, self.base / "JPEGImages" / f"{name}.jpg", self.base / mask_dir / f"{name}.png")

    def _list_samples(self) -> list[Sample]:
        return [self._sample(n) for n in self._names(self.split_dir)]


@register("voc_aug")
class VOCAugDataset(VOCDataset):
    """VOC 2012 with the SBD extra annotations, as MMSegmentation's ``tools/dataset_converters/voc_aug.py``
    leaves it: SBD masks converted to ``VOC2012/SegmentationClassAug/*.png`` and
    ``ImageSets/Segmentation/aug.txt`` = SBD train+val minus VOC train and val.

    Split 'train' is VOC train.txt (masks from SegmentationClass) plus aug.txt (masks from
    SegmentationClassAug): 10,582 images, none of VOC val. If ``trainaug.txt`` is there (written by the same
    tool) it is used instead. Masks of VOC train images (and of any image with a SegmentationClass mask) come
    from SegmentationClass, the others from SegmentationClassAug; a SegmentationClassAug folder that also
    holds the VOC masks (the DeepLab download) works too.
    Split 'val' is VOC val, as in :class:`VOCDataset`.
    """

    splits: ClassVar[dict[str, str]] = {"train": "train", "val": "val"}

    def _list_samples(self) -> list[Sample]:
        if self.split_dir == "val":
            return super()._list_samples()
        seg = self.base / "ImageSets" / "Segmentation"
        official = set(self._names("train")) if (seg / "train.txt").is_file() else set()
        names = self._names("trainaug") if (seg / "trainaug.txt").is_file() else [*official, *self._names("aug")]
        val = set(self._names("val")) if (seg / "val.txt").is_file() else set()
        out, seen = [], set()
        for n in sorted(names):
            if n in seen or n in val:
                continue
            seen.add(n)
            in_voc = n in official or (self.base / "SegmentationClass" / f"{n}.png").is_file()
            out.append(self._sample(n, "SegmentationClass" if in_voc else "SegmentationClassAug"))
        return out


@register("sbd")
class SBDDataset(SegDataset):
    """SBD in its native layout (needs scipy): ``benchmark_RELEASE/dataset/{img/*.jpg, cls/*.mat,
    train.txt, val.txt}``; the class map is ``GTcls.Segmentation`` of each .mat file, VOC's 21 classes."""

    classes = VOC_CLASSES
    palette = VOC_PALETTE

    def __init__(self, root: str | Path, split: str = "train", **kw: Any) -> None:
        try:
            from scipy.io import loadmat
        except ImportError as e:
            raise ImportError("reading SBD's .mat files needs scipy (pip install scipy); or convert them with "
                              "MMSegmentation's voc_aug.py and use build_dataset('voc_aug', ...)") from e
        self._loadmat = loadmat
        self.base = resolve_root(Path(root), ("benchmark_RELEASE/dataset", "dataset", ""), "cls", "SBD")
        super().__init__(root, split, **kw)

    def _list_samples(self) -> list[Sample]:
        return [Sample(n, self.base / "img" / f"{n}.jpg", self.base / "cls" / f"{n}.mat")
                for n in read_list(self.base / f"{self.split_dir}.txt")]

    def read_raw_mask(self, path: Path) -> np.ndarray:
        """``GTcls.Segmentation`` of an SBD .mat file."""
        try:
            seg = self._loadmat(str(path))["GTcls"][0]["Segmentation"][0]
        except Exception as e:  # scipy raises many kinds on corrupt files
            raise BadSampleError(path, f"cannot read SBD annotation {path}: {e}") from e
        return np.asarray(seg)
