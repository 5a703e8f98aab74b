"""Tensor-side resizing shared by training and evaluation, matching the engine's pre-processing.

Images are resized with bilinear interpolation, align_corners=False and no antialiasing: the same
sampling as engine.ops.preprocess, so a model sees the same pixels in training and deployment.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 -> [3,H,W] float32 (0..255)."""
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float()


def normalize(x: torch.Tensor, mean: tuple, std: tuple) -> torch.Tensor:
    """(x - mean) / std over the channel dimension of [..., 3, H, W]."""
    m = torch.tensor(mean, dtype=x.dtype).view(3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype).view(3, 1, 1)
    return (x - m) / s


def resize_image(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of [3,H,W] or [B,3,H,W] float images (align_corners=False, no antialias)."""
    batched = x.dim() == 4
    y = F.interpolate(x if batched else x[None], size=size, mode="bilinear", align_corners=False)
    return y if batched else y[0]


def resize_mask(m: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest-neighbour resize of an [H,W] label map."""
    return F.interpolate(m[None, None].float(), size=size, mode="nearest")[0, 0].to(m.dtype)


def random_scale_crop_flip(img: torch.Tensor, mask: torch.Tensor, size: tuple[int, int],
                           scale_range: tuple[float, float], flip: bool, rng: np.random.Generator,
                           ignore_index: int = 255,
                           base_height: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale the image height to ``base_height * U(scale_range)`` (default: its own height), random-crop
    ``size`` (padding with 0 / ignore_index where the image is smaller), and flip half of the time."""
    h, w = img.shape[-2:]
    s = (base_height or h) / h * rng.uniform(*scale_range)
    nh, nw = max(1, round(h * s)), max(1, round(w * s))
    img, mask = resize_image(img, (nh, nw)), resize_mask(mask, (nh, nw))
    ph, pw = max(size[0] - nh, 0), max(size[1] - nw, 0)
    if ph or pw:
        img = F.pad(img, (0, pw, 0, ph), value=0.0)
        mask = F.pad(mask, (0, pw, 0, ph), value=ignore_index)
    y = int(rng.integers(0, img.shape[-2] - size[0] + 1))
    x = int(rng.integers(0, img.shape[-1] - size[1] + 1))
    img = img[:, y:y + size[0], x:x + size[1]]
    mask = mask[y:y + size[0], x:x + size[1]]
    if flip and rng.random() < 0.5:
        img, mask = img.flip(-1), mask.flip(-1)
    return img, mask
