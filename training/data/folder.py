"""The custom folder format: ``images/<split>/*.jpg|png``, ``masks/<split>/<stem>.png``, ``classes.yaml``.

``classes.yaml`` holds ``classes`` (names, in class-id order), an optional ``palette`` (one [r, g, b] per
class) and an optional ``ignore_index`` (default 255). Masks are single-channel PNGs ('L' or 'P' mode)
whose values are class ids; palette PNGs are read as their raw indices, never converted to colours.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import yaml
from PIL import Image, UnidentifiedImageError

from engine.palettes import voc_palette

T = TypeVar("T")
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp")


def _default_palette(n: int) -> list[tuple[int, int, int]]:
    """The Pascal VOC bit-interleaved palette, for datasets that give none."""
    return voc_palette(n)


def _is_rgb(c: object) -> bool:
    return isinstance(c, list | tuple) and len(c) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in c)


def load_classes(root: str | Path) -> tuple[list[str], list[tuple[int, int, int]], int]:
    """Read ``root/classes.yaml``: (class names, palette, ignore index)."""
    path = Path(root) / "classes.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: a folder dataset needs a classes.yaml listing its classes")
    try:
        spec = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ValueError(f"{path} is not valid YAML: {e}") from e
    if isinstance(spec, list):
        spec = {"classes": spec}
    classes = spec.get("classes") if isinstance(spec, dict) else None
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise ValueError(f"{path}: 'classes' must be a non-empty list of names")
    if len(classes) > 255:
        raise ValueError(f"{path}: at most 255 classes fit in an 8-bit mask, got {len(classes)}")
    palette = spec.get("palette")
    if palette is None:
        palette = _default_palette(len(classes))
    elif not isinstance(palette, list) or len(palette) != len(classes) or not all(map(_is_rgb, palette)):
        raise ValueError(f"{path}: 'palette' must hold one [r, g, b] (0..255) per class ({len(classes)})")
    ignore = spec.get("ignore_index", 255)
    if not isinstance(ignore, int) or not len(classes) <= ignore <= 255:
        raise ValueError(f"{path}: 'ignore_index' must be an integer in [{len(classes)}, 255], got {ignore!r}")
    return list(classes), [tuple(int(v) for v in c) for c in palette], ignore


class SegFolderDataset:
    """One split of a dataset in the custom folder format; items are dicts of numpy arrays."""

    def __init__(self, root: str | Path, split: str = "train") -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"dataset root {self.root} does not exist")
        self.classes, self.palette, self.ignore_index = load_classes(self.root)
        self.num_classes = len(self.classes)
        self.split = split
        image_dir, mask_dir = self.root / "images" / split, self.root / "masks" / split
        if not image_dir.is_dir():
            raise FileNotFoundError(f"image folder {image_dir} does not exist (split {split!r})")
        images = sorted(p for p in image_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)
        if not images:
            raise FileNotFoundError(f"no images ({', '.join(IMAGE_EXTS)}) in {image_dir}")
        stems: dict[str, Path] = {}
        for p in images:
            if p.stem in stems:
                raise ValueError(f"two images in {image_dir} share the name {p.stem!r}: {stems[p.stem].name}, {p.name}")
            stems[p.stem] = p
        masks = [mask_dir / f"{p.stem}.png" for p in images]
        missing = [m for m in masks if not m.is_file()]
        if missing:
            shown = ", ".join(str(m) for m in missing[:10])
            shown += f" and {len(missing) - 10} more" if len(missing) > 10 else ""
            raise FileNotFoundError(f"{len(missing)} image(s) in {image_dir} have no mask: {shown}")
        self.images, self.masks = images, masks

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        """dict(image=uint8 HxWx3 RGB, mask=uint8 HxW class ids, name=file stem)."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} samples")
        image_path, mask_path = self.images[i], self.masks[i]
        image = _read(image_path, "image", lambda im: np.array(im.convert("RGB"), np.uint8))
        mask = self._read_mask(mask_path)
        if mask.shape != image.shape[:2]:
            raise ValueError(f"size mismatch: image {image_path} is {image.shape[1]}x{image.shape[0]} (WxH) but "
                             f"mask {mask_path} is {mask.shape[1]}x{mask.shape[0]}")
        return {"image": image, "mask": mask, "name": image_path.stem}

    def _read_mask(self, path: Path) -> np.ndarray:
        mode, raw = _read(path, "mask", lambda im: (im.mode, np.array(im)))
        if mode not in ("L", "P", "I", "I;16", "1"):
            raise ValueError(f"mask {path} has mode {mode!r}; masks must be single-channel class ids ('L' or 'P')")
        if raw.dtype == bool or raw.max(initial=0) <= 255:
            mask = raw.astype(np.uint8, copy=False)
        else:
            mask = raw  # reported as out of range below
        bad = (mask >= self.num_classes) & (mask != self.ignore_index)
        if bad.any():
            values = sorted(int(v) for v in np.unique(mask[bad]))[:10]
            raise ValueError(f"mask {path} has values {values} outside the {self.num_classes} classes "
                             f"(ignore_index {self.ignore_index})")
        return mask


def _read(path: Path, what: str, convert: Callable[[Image.Image], T]) -> T:
    """Open and decode an image file and convert it, with an error naming the file when that fails."""
    try:
        with Image.open(path) as img:
            return convert(img)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise ValueError(f"cannot read {what} {path}: {e}") from e
