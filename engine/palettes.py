"""Colour palettes for label maps: built-in dataset palettes and a deterministic fallback."""

from __future__ import annotations

import numpy as np

CITYSCAPES = [
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
    (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60),
    (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32),
]


def voc_palette(n: int = 21) -> list[tuple[int, int, int]]:
    """The Pascal VOC colour map: class bits spread over the high bits of R, G and B."""
    out = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        out.append((r, g, b))
    return out


def random_palette(n: int, seed: int = 0) -> list[tuple[int, int, int]]:
    """A deterministic palette of ``n`` distinct-looking colours for models without one."""
    rng = np.random.default_rng(seed)
    return [tuple(int(v) for v in rng.integers(0, 256, 3)) for _ in range(n)]


PALETTES: dict[str, list[tuple[int, int, int]]] = {"cityscapes": CITYSCAPES, "voc": voc_palette(21)}


def palette_array(palette: list | None, num_classes: int) -> np.ndarray:
    """Return a uint8 [num_classes, 3] array, padding a short palette with random colours."""
    colours = list(palette or [])
    if len(colours) < num_classes:
        colours += random_palette(num_classes, seed=len(colours))[len(colours):]
    arr = np.asarray(colours[:num_classes], dtype=np.int64).reshape(-1, 3)
    if arr.min(initial=0) < 0 or arr.max(initial=0) > 255:
        raise ValueError("palette colours must be in 0..255")
    return arr.astype(np.uint8)
