"""Training augmentation on uint8 numpy samples (image and mask together), after MMSegmentation's pipeline.

A sample is a dataset item, ``dict(image=uint8 HxWx3, mask=uint8 HxW, ...)`` (``mask`` optional). Every transform
is ``t(sample, rng) -> new sample``: all randomness comes from the ``np.random.Generator`` passed in, so a
pipeline is reproducible from a seed. Masks are only ever moved, never blended (nearest-neighbour resize,
padding with ``seg_pad_val``): no new label values appear.

Resizing uses Pillow: bilinear for images (antialiased when shrinking, unlike OpenCV's INTER_LINEAR used by
MMSegmentation, which aliases), nearest for masks; both sample at pixel centres (align_corners=False), so
image and mask stay aligned. Sizes follow MMSegmentation: ``scale`` of (Random)Resize is (w, h) (with
``keep_ratio`` only its long and short sides matter), ``crop_size`` of RandomCrop and ``size`` of Pad are (h, w).

Config form (YAML-like), e.g. the Cityscapes recipe::

    build_pipeline([
        {"type": "RandomResize", "scale": [2048, 1024], "ratio_range": [0.5, 2.0]},
        {"type": "RandomCrop", "crop_size": [512, 1024], "cat_max_ratio": 0.75},
        {"type": "RandomFlip", "prob": 0.5},
        {"type": "PhotoMetricDistortion"},
        {"type": "Pad", "size": [512, 1024]},
    ])
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from PIL import Image

Sample = dict[str, Any]


def _pair(v: Sequence[float], what: str, positive: bool = True) -> tuple[Any, Any]:
    if not isinstance(v, Sequence | np.ndarray) or isinstance(v, str) or len(v) != 2:
        raise ValueError(f"{what} must be a pair, got {v!r}")
    a, b = v
    if positive and not (a > 0 and b > 0):
        raise ValueError(f"{what} must be positive, got {v!r}")
    return a, b


def _unpack(sample: Sample) -> tuple[np.ndarray, np.ndarray | None]:
    """The sample's image and mask, checked: uint8 HxWx3 and uint8 HxW of the same size."""
    img, mask = sample.get("image"), sample.get("mask")
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        got = f"{img.dtype} {img.shape}" if isinstance(img, np.ndarray) else type(img).__name__
        raise ValueError(f"augment: sample['image'] must be a uint8 HxWx3 array, got {got}")
    if mask is not None:
        if not isinstance(mask, np.ndarray) or mask.dtype != np.uint8 or mask.shape != img.shape[:2]:
            got = f"{mask.dtype} {mask.shape}" if isinstance(mask, np.ndarray) else type(mask).__name__
            raise ValueError(f"augment: sample['mask'] must be a uint8 array of shape {img.shape[:2]}, got {got}")
    return img, mask


def _with(sample: Sample, img: np.ndarray, mask: np.ndarray | None) -> Sample:
    out = dict(sample, image=np.ascontiguousarray(img))
    if mask is not None:
        out["mask"] = np.ascontiguousarray(mask)
    return out


def resize_sample(sample: Sample, size: tuple[int, int]) -> Sample:
    """Resize to ``size`` = (h, w): bilinear image, nearest-neighbour mask."""
    img, mask = _unpack(sample)
    h, w = size
    if (h, w) == img.shape[:2]:
        return sample
    img = np.asarray(Image.fromarray(img).resize((w, h), Image.Resampling.BILINEAR))
    if mask is not None:
        mask = np.asarray(Image.fromarray(mask).resize((w, h), Image.Resampling.NEAREST))
    return _with(sample, img, mask)


class RandomResize:
    """Resize to ``scale`` (w, h) times a ratio drawn uniformly from ``ratio_range`` (MMSeg RandomResize).

    With ``keep_ratio`` the image keeps its aspect ratio and is scaled by the largest factor that fits its
    long side in max(scale) and its short side in min(scale); the base scale is thus relative to ``scale``,
    not to the image's own size.
    """

    def __init__(self, scale: Sequence[int] = (2048, 1024), ratio_range: Sequence[float] | None = (0.5, 2.0),
                 keep_ratio: bool = True) -> None:
        self.scale = _pair(scale, "scale")
        self.ratio_range = None if ratio_range is None else _pair(ratio_range, "ratio_range")
        if self.ratio_range and self.ratio_range[0] > self.ratio_range[1]:
            raise ValueError(f"ratio_range must be (low, high) with low <= high, got {ratio_range!r}")
        self.keep_ratio = keep_ratio

    def target_size(self, h: int, w: int, ratio: float) -> tuple[int, int]:
        """The (h, w) an h x w image gets at ``ratio``."""
        sw, sh = int(self.scale[0] * ratio), int(self.scale[1] * ratio)
        if not self.keep_ratio:
            return max(sh, 1), max(sw, 1)
        f = min(max(sw, sh) / max(h, w), min(sw, sh) / min(h, w))
        return max(int(h * f + 0.5), 1), max(int(w * f + 0.5), 1)

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        img, _ = _unpack(sample)
        ratio = float(rng.uniform(*self.ratio_range)) if self.ratio_range else 1.0
        return resize_sample(sample, self.target_size(*img.shape[:2], ratio))


class Resize(RandomResize):
    """Deterministic resize to ``scale`` (w, h) (keeping the aspect ratio as RandomResize does)."""

    def __init__(self, scale: Sequence[int] = (2048, 1024), keep_ratio: bool = True) -> None:
        super().__init__(scale, None, keep_ratio)


class RandomCrop:
    """Crop ``crop_size`` (h, w) (clipped to the image) at a random place.

    With ``cat_max_ratio`` < 1 the crop is re-drawn (up to 10 times, as MMSeg does) while one class covers
    ``cat_max_ratio`` or more of its labelled pixels (``ignore_index`` not counted) or only one class is present;
    when no draw passes, the most balanced one is kept.
    """

    def __init__(self, crop_size: Sequence[int], cat_max_ratio: float = 1.0, ignore_index: int = 255) -> None:
        self.crop_size = tuple(int(v) for v in _pair(crop_size, "crop_size"))
        if not 0 < cat_max_ratio <= 1:
            raise ValueError(f"cat_max_ratio must be in (0, 1], got {cat_max_ratio!r}")
        self.cat_max_ratio, self.ignore_index = float(cat_max_ratio), int(ignore_index)

    def _draw(self, h: int, w: int, rng: np.random.Generator) -> tuple[slice, slice]:
        ch, cw = min(self.crop_size[0], h), min(self.crop_size[1], w)
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        return slice(y, y + ch), slice(x, x + cw)

    def max_share(self, mask: np.ndarray) -> float:
        """The largest class's share of a mask's labelled pixels (1.0 with fewer than two classes)."""
        counts = np.bincount(mask.ravel(), minlength=256)
        counts[self.ignore_index] = 0
        counts = counts[counts > 0]
        return float(counts.max() / counts.sum()) if len(counts) > 1 else 1.0

    def acceptable(self, mask: np.ndarray) -> bool:
        """Whether a cropped mask holds two classes or more and none at ``cat_max_ratio`` of its labels or over."""
        return self.max_share(mask) < self.cat_max_ratio

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        img, mask = _unpack(sample)
        box = self._draw(*img.shape[:2], rng)
        if self.cat_max_ratio < 1 and mask is not None:
            best, best_share = box, self.max_share(mask[box])
            for _ in range(10):  # MMSeg keeps the 11th draw unchecked; we keep the most balanced one
                if best_share < self.cat_max_ratio:
                    break
                box = self._draw(*img.shape[:2], rng)
                share = self.max_share(mask[box])
                if share < best_share:
                    best, best_share = box, share
            box = best
        return _with(sample, img[box], None if mask is None else mask[box])


class RandomFlip:
    """Flip image and mask together with probability ``prob`` ('horizontal' or 'vertical')."""

    def __init__(self, prob: float = 0.5, direction: str = "horizontal") -> None:
        if not 0 <= prob <= 1:
            raise ValueError(f"prob must be in [0, 1], got {prob!r}")
        if direction not in ("horizontal", "vertical"):
            raise ValueError(f"direction must be 'horizontal' or 'vertical', got {direction!r}")
        self.prob, self.axis = float(prob), 1 if direction == "horizontal" else 0

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        img, mask = _unpack(sample)
        if rng.random() >= self.prob:
            return sample
        return _with(sample, np.flip(img, self.axis), None if mask is None else np.flip(mask, self.axis))


def _scale(x: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
    """x * alpha + beta, clipped to 0..255 and truncated to uint8 (mmcv's convert)."""
    return np.clip(x.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)


class PhotoMetricDistortion:
    """MMSeg's PhotoMetricDistortion; each step applied with probability 1/2, in this order:
    brightness (+U(-delta, delta)), contrast (xU(range)) either here or last, saturation (HSV S xU(range)),
    hue (HSV H + randint(-hue_delta, hue_delta) in OpenCV's 0..180 units), contrast. The mask is untouched."""

    def __init__(self, brightness_delta: int = 32, contrast_range: Sequence[float] = (0.5, 1.5),
                 saturation_range: Sequence[float] = (0.5, 1.5), hue_delta: int = 18) -> None:
        if not 0 <= brightness_delta <= 255 or not 0 <= hue_delta <= 180:
            raise ValueError(f"brightness_delta must be in [0, 255] and hue_delta in [0, 180], got "
                             f"{brightness_delta!r}, {hue_delta!r}")
        self.brightness_delta, self.hue_delta = brightness_delta, int(hue_delta)
        self.contrast_range = _pair(contrast_range, "contrast_range", positive=False)
        self.saturation_range = _pair(saturation_range, "saturation_range", positive=False)

    def _contrast(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return _scale(img, float(rng.uniform(*self.contrast_range))) if rng.integers(2) else img

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        img, mask = _unpack(sample)
        if rng.integers(2):
            img = _scale(img, beta=float(rng.uniform(-self.brightness_delta, self.brightness_delta)))
        mode = int(rng.integers(2))
        if mode == 1:
            img = self._contrast(img, rng)
        sat = float(rng.uniform(*self.saturation_range)) if rng.integers(2) else 1.0
        hue = int(rng.integers(-self.hue_delta, self.hue_delta)) if self.hue_delta and rng.integers(2) else 0
        if sat != 1.0 or hue:
            hsv = np.array(Image.fromarray(img).convert("HSV"))
            if sat != 1.0:
                hsv[..., 1] = _scale(hsv[..., 1], sat)
            if hue:  # OpenCV's hue unit is 2 degrees (0..180); Pillow's is 360/256 degrees
                hsv[..., 0] = (hsv[..., 0].astype(np.int32) + round(hue * 256 / 180)) % 256
            img = np.asarray(Image.fromarray(hsv, "HSV").convert("RGB"))
        if mode == 0:
            img = self._contrast(img, rng)
        return _with(sample, img, mask)


class Pad:
    """Pad at the bottom and right to ``size`` (h, w) and/or to a multiple of ``size_divisor``;
    images with ``pad_val`` (0), masks with ``seg_pad_val`` (255, ignored). Larger images are left as they are."""

    def __init__(self, size: Sequence[int] | None = None, size_divisor: int | None = None, pad_val: int = 0,
                 seg_pad_val: int = 255) -> None:
        if size is None and size_divisor is None:
            raise ValueError("Pad needs size or size_divisor")
        self.size = None if size is None else tuple(int(v) for v in _pair(size, "size"))
        if size_divisor is not None and size_divisor < 1:
            raise ValueError(f"size_divisor must be >= 1, got {size_divisor!r}")
        if not (0 <= pad_val <= 255 and 0 <= seg_pad_val <= 255):
            raise ValueError(f"pad_val and seg_pad_val must be in [0, 255], got {pad_val!r}, {seg_pad_val!r}")
        self.size_divisor, self.pad_val, self.seg_pad_val = size_divisor, pad_val, seg_pad_val

    def __call__(self, sample: Sample, rng: np.random.Generator | None = None) -> Sample:
        img, mask = _unpack(sample)
        h, w = img.shape[:2]
        th, tw = max(h, self.size[0]) if self.size else h, max(w, self.size[1]) if self.size else w
        if self.size_divisor:
            d = self.size_divisor
            th, tw = -(-th // d) * d, -(-tw // d) * d
        if (th, tw) == (h, w):
            return sample
        out = np.full((th, tw, 3), self.pad_val, np.uint8)
        out[:h, :w] = img
        if mask is not None:
            m = np.full((th, tw), self.seg_pad_val, np.uint8)
            m[:h, :w] = mask
            mask = m
        return _with(sample, out, mask)


Transform = Callable[[Sample, np.random.Generator], Sample]


class Compose:
    """Apply transforms in order, all drawing from the same generator."""

    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        _unpack(sample)
        for t in self.transforms:
            sample = t(sample, rng)
        return sample

    def __repr__(self) -> str:
        return f"Compose({[type(t).__name__ for t in self.transforms]})"


TRANSFORMS: dict[str, type] = {c.__name__: c for c in (RandomResize, Resize, RandomCrop, RandomFlip,
                                                        PhotoMetricDistortion, Pad)}


def build_transform(cfg: dict[str, Any]) -> Transform:
    """One transform from ``{"type": name, **arguments}``; unknown names or arguments raise ValueError."""
    if not isinstance(cfg, dict) or "type" not in cfg:
        raise ValueError(f"a transform config must be a dict with a 'type', got {cfg!r}")
    kw = dict(cfg)
    name = kw.pop("type")
    if name not in TRANSFORMS:
        raise ValueError(f"unknown transform {name!r}; available: {', '.join(sorted(TRANSFORMS))} (loading and "
                         f"packing are done by the dataset and the trainer)")
    cls = TRANSFORMS[name]
    params = set(inspect.signature(cls.__init__).parameters) - {"self"}
    unknown = sorted(set(kw) - params)
    if unknown:
        raise ValueError(f"{name}: unknown argument(s) {', '.join(map(repr, unknown))}; accepted: "
                         f"{', '.join(sorted(params))}")
    try:
        return cls(**kw)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name}: {e}") from e


def build_pipeline(cfg: Sequence[dict[str, Any]]) -> Compose:
    """A Compose from a list of transform configs (the YAML form; see the module docstring)."""
    if isinstance(cfg, dict) or isinstance(cfg, str) or not isinstance(cfg, Sequence):
        raise ValueError(f"a pipeline config must be a list of transform dicts, got {type(cfg).__name__}")
    return Compose([build_transform(c) for c in cfg])
