"""The shared logic of every dataset loader: listing and pairing files, checks, error messages, a registry.

A subclass says where its files are (``_list_samples``) and how raw label values become class ids (``lut``,
a lookup table); the base class pairs images with masks, refuses missing files with a message listing them,
reads and checks each item (readable, same size, known label values) and, with ``skip_bad=True``, checks
every pair up front and drops the bad ones into ``bad_files``.

Items are the same as :class:`training.data.SegFolderDataset`'s: ``dict(image=uint8 HxWx3 RGB,
mask=uint8 HxW class ids (ignore_index where unlabelled), name=str)``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, NamedTuple, TypeVar

import numpy as np
from PIL import Image, UnidentifiedImageError

log = logging.getLogger(__name__)
T = TypeVar("T")
MASK_MODES = ("L", "P", "I", "I;16", "1")
_SHOWN = 20


class Sample(NamedTuple):
    """One image/mask pair: its name (file stem without dataset suffixes) and paths."""

    name: str
    image: Path
    mask: Path


@dataclass(frozen=True)
class BadFile:
    """A sample that cannot be used: the file at fault and why."""

    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


class BadSampleError(ValueError):
    """A sample's files are unreadable, of different sizes or hold unknown labels; ``path`` is the file at fault."""

    def __init__(self, path: Path, message: str) -> None:
        super().__init__(message)
        self.path = path


def format_bad(bad: Sequence[BadFile], what: str) -> str:
    """``what`` followed by the bad files, one per line (the first 20, then a count)."""
    lines = [f"  {b}" for b in bad[:_SHOWN]]
    if len(bad) > _SHOWN:
        lines.append(f"  ... and {len(bad) - _SHOWN} more")
    return f"{what}:\n" + "\n".join(lines)


def identity_lut(num_classes: int, ignore_index: int = 255) -> np.ndarray:
    """A lookup table keeping 0..num_classes-1 and ignore_index; every other raw value is invalid (-1)."""
    lut = np.full(256, -1, np.int16)
    lut[:num_classes] = np.arange(num_classes)
    lut[ignore_index] = ignore_index
    return lut


def read_image_file(path: Path, what: str, convert: Callable[[Image.Image], T]) -> T:
    """Open, decode and convert an image file; failures raise :class:`BadSampleError` naming the file."""
    try:
        with Image.open(path) as img:
            return convert(img)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise BadSampleError(path, f"cannot read {what} {path}: {e}") from e


def resolve_root(root: Path, candidates: Sequence[str], marker: str, dataset: str) -> Path:
    """The first of ``root / c`` (c in candidates, '' = root itself) that holds ``marker``."""
    if not root.is_dir():
        raise FileNotFoundError(f"{dataset} root {root} does not exist")
    for c in candidates:
        if (root / c / marker).exists():
            return root / c
    tried = ", ".join(str(root / c / marker) for c in candidates)
    raise FileNotFoundError(f"{root} does not look like {dataset}: none of {tried} exists")


def read_list(path: Path) -> list[str]:
    """The non-empty, stripped lines of a split file (first column only)."""
    if not path.is_file():
        raise FileNotFoundError(f"split file {path} not found")
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


class SegDataset:
    """Base of the dataset loaders: one split, items as dicts of numpy arrays, checked on load.

    Subclasses set ``classes`` and ``palette`` (class attributes or in ``__init__`` before calling
    ``super().__init__``), implement ``_list_samples`` and, where raw values are not class ids, ``lut``.
    """

    classes: list[str]
    palette: list[tuple[int, int, int]]
    ignore_index: int = 255
    splits: ClassVar[dict[str, str]] = {"train": "train", "val": "val"}  # accepted name -> on-disk name
    lut_offset: ClassVar[int] = 0  # raw value v is looked up at lut[v + lut_offset] (for -1 labels)

    def __init__(self, root: str | Path, split: str = "train", *, skip_bad: bool = False, workers: int = 2) -> None:
        self.root = Path(root)
        self.split = split
        self.split_dir = self._resolve_split(split)
        self.workers = max(1, int(workers))
        self.bad_files: list[BadFile] = []
        self.lut = self._make_lut()
        samples = self._list_samples()
        if not samples:
            raise FileNotFoundError(f"{type(self).__name__}: no samples for split {split!r} under {self.root}")
        seen: dict[str, Sample] = {}
        for s in samples:
            if s.name in seen:
                raise ValueError(f"two samples share the name {s.name!r}: {seen[s.name].image}, {s.image}")
            seen[s.name] = s
        missing = [BadFile(p, f"{kind} not found") for s in samples
                   for kind, p in (("image", s.image), ("mask", s.mask)) if not p.is_file()]
        if missing:
            if not skip_bad:
                raise FileNotFoundError(format_bad(missing, f"{type(self).__name__} split {split!r}: "
                                                            f"{len(missing)} file(s) missing"))
            gone = {b.path for b in missing}
            samples = [s for s in samples if s.image not in gone and s.mask not in gone]
            self.bad_files += missing
        self.samples = samples
        if skip_bad:
            self.validate()

    @property
    def num_classes(self) -> int:
        """Number of classes (labels 0..num_classes-1; ignore_index marks unlabelled pixels)."""
        return len(self.classes)

    @property
    def images(self) -> list[Path]:
        """Image paths, in item order."""
        return [s.image for s in self.samples]

    @property
    def masks(self) -> list[Path]:
        """Mask (annotation) paths, in item order."""
        return [s.mask for s in self.samples]

    def _resolve_split(self, split: str) -> str:
        """The on-disk name of ``split`` (e.g. ADE20K's 'val' is 'validation')."""
        if split not in self.splits:
            raise ValueError(f"{type(self).__name__}: unknown split {split!r}; choose from {sorted(self.splits)}")
        return self.splits[split]

    def _list_samples(self) -> list[Sample]:
        """Every (name, image, mask) of the split, masks possibly missing; implemented by subclasses."""
        raise NotImplementedError

    def _make_lut(self) -> np.ndarray:
        """Raw label value -> class id (or ignore_index); -1 marks values that must not occur."""
        return identity_lut(len(self.classes), self.ignore_index)

    def lut_for(self, mask_path: Path) -> np.ndarray:
        """The lookup table for one mask file (datasets with several annotation kinds override this)."""
        return self.lut

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict[str, Any]:
        """dict(image=uint8 HxWx3 RGB, mask=uint8 HxW class ids, name=str)."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} samples")
        s = self.samples[i]
        image = read_image_file(s.image, "image", lambda im: np.array(im.convert("RGB"), np.uint8))
        mask = self.map_mask(self.read_raw_mask(s.mask), s.mask)
        if mask.shape != image.shape[:2]:
            raise BadSampleError(s.mask, f"size mismatch: image {s.image} is {image.shape[1]}x{image.shape[0]} (WxH) "
                                         f"but mask {s.mask} is {mask.shape[1]}x{mask.shape[0]}")
        return {"image": image, "mask": mask, "name": s.name}

    def read_raw_mask(self, path: Path) -> np.ndarray:
        """The raw label values of a mask file (a single-channel PNG by default; palette PNGs give indices)."""
        mode, raw = read_image_file(path, "mask", lambda im: (im.mode, np.array(im)))
        if mode not in MASK_MODES:
            raise BadSampleError(path, f"mask {path} has mode {mode!r}; masks must be single-channel label PNGs "
                                       f"('L' or 'P'), not colour images")
        return raw.astype(np.uint8) if raw.dtype == bool else raw

    def map_mask(self, raw: np.ndarray, path: Path) -> np.ndarray:
        """Raw labels -> uint8 class ids through the lookup table; unknown raw values raise, naming the file."""
        lut = self.lut_for(path)
        if raw.dtype == np.uint8 and self.lut_offset == 0 and len(lut) >= 256:  # the common case, no copies
            mapped = lut[raw]
            bad = mapped < 0
        else:
            idx = raw.astype(np.int64) + self.lut_offset
            inside = (idx >= 0) & (idx < len(lut))
            mapped = lut[np.where(inside, idx, 0)]
            bad = ~inside | (mapped < 0)
        if bad.any():
            values = [int(v) for v in np.unique(raw[bad])[:10]]
            raise BadSampleError(path, f"mask {path} has values {values} outside the {self.num_classes} classes of "
                                       f"{type(self).__name__} (ignore_index {self.ignore_index})")
        return mapped.astype(np.uint8)

    def check(self, i: int) -> BadFile | None:
        """Load sample ``i`` fully; the problem found, or None when it is usable."""
        try:
            self[i]
        except BadSampleError as e:
            return BadFile(e.path, str(e))
        return None

    def validate(self) -> list[BadFile]:
        """Check every pair (readable, same size, known labels), drop the bad ones and return them.

        They are also appended to ``bad_files`` and logged. Uses ``workers`` threads (decoding releases the GIL).
        """
        with ThreadPoolExecutor(self.workers) as pool:
            found = list(pool.map(self.check, range(len(self))))
        bad = [b for b in found if b is not None]
        self.samples = [s for s, b in zip(self.samples, found) if b is None]
        self.bad_files += bad
        if not self.samples:
            raise ValueError(format_bad(self.bad_files, f"{type(self).__name__} split {self.split!r}: "
                                                         f"every sample is bad"))
        if self.bad_files:
            self._report(self.bad_files)
        return bad

    def _report(self, bad: Sequence[BadFile]) -> None:
        log.warning(format_bad(bad, f"{type(self).__name__} split {self.split!r}: skipped {len(bad)} bad file(s)"))

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, samples={len(self)}, "
                f"classes={self.num_classes})")


DATASETS: dict[str, type[SegDataset]] = {}
D = TypeVar("D", bound=type[SegDataset])


def register(name: str) -> Callable[[D], D]:
    """Class decorator: make a dataset buildable as ``build_dataset(name, ...)``."""
    def deco(cls: D) -> D:
        if name in DATASETS:
            raise ValueError(f"dataset name {name!r} is already registered to {DATASETS[name].__name__}")
        DATASETS[name] = cls
        return cls
    return deco


def build_dataset(name: str, root: str | Path, split: str = "train", **kw: Any) -> SegDataset:
    """The dataset registered as ``name`` (see ``DATASETS``), opened at ``root`` for ``split``."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; available: {', '.join(sorted(DATASETS))}")
    return DATASETS[name](root, split, **kw)
