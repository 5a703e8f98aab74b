"""Colour palettes for label maps: built-in dataset palettes, lookup by name or class count, and a fallback."""

from __future__ import annotations

import numpy as np

Colour = tuple[int, int, int]

CITYSCAPES: list[Colour] = [
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
    (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60),
    (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32),
]
CITYSCAPES_CLASSES = ["road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
                      "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle",
                      "bicycle"]

# CamVid in the 11-class SegNet split; the 12th entry is "void".
CAMVID: list[Colour] = [
    (128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222), (128, 128, 0),
    (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192), (0, 0, 0),
]
CAMVID_CLASSES = ["sky", "building", "pole", "road", "sidewalk", "tree", "sign", "fence", "car", "pedestrian",
                  "bicyclist", "void"]

# ADE20K (SceneParse150): the colour table used by the public benchmark tools, one row per class id.
_ADE20K_HEX = """
787878 b47878 06e6e6 503232 04c803 787850 8c8c8c cc05ff e6e6e6 04fa07 e005ff ebff07 96053d 787846 08ff33 ff0652
8fff8c ccff04 ff3307 cc4603 0066c8 3de6fa ff0633 0b66ff ff0747 ff09e0 0907e6 dcdcdc ff095c 7009ff 08ffd6 07ffe0
ffb806 0aff47 ff290a 07ffff e0ff08 6608ff ff3d06 ffc207 ff7a08 00ff14 ff0829 ff0599 0633ff eb0cff a09614 00a3ff
8c8c8c fa0a0f 14ff00 1fff00 ff1f00 ffe000 99ff00 0000ff ff4700 00ebff 00adff 1f00ff 0bc8c8 ff5200 00fff5 003dff
00ff70 00ff85 ff0000 ffa300 ff6600 c2ff00 008fff 33ff00 0052ff 00ff29 00ffad 0a00ff adff00 00ff99 ff5c00 ff00ff
ff00f5 ff0066 ffad00 ff0014 ffb8b8 001fff 00ff3d 0047ff ff00cc 00ffc2 00ff52 000aff 0070ff 3300ff 00c2ff 007aff
00ffa3 ff9900 00ff0a ff7000 8fff00 5200ff a3ff00 ffeb00 08b8aa 8500ff 00ff5c b800ff ff001f 00b8ff 00d6ff ff0070
5cff00 00e0ff 70e0ff 46b8a0 a300ff 9900ff 47ff00 ff00a3 ffcc00 ff008f 00ffeb 85ff00 ff00eb f500ff ff007a fff500
0abed4 d6ff00 00ccff 1400ff ffff00 0099ff 0029ff 00ffcc 2900ff 29ff00 ad00ff 00f5ff 4700ff 7a00ff 00ffb8 005cff
b8ff00 0085ff ffd600 19c2c2 66ff00 5c00ff
"""
ADE20K: list[Colour] = [(int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)) for h in _ADE20K_HEX.split()]

VOC_CLASSES = ["background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
               "tvmonitor"]


def voc_palette(n: int = 256) -> list[Colour]:
    """The Pascal VOC colour map: the bits of the class id spread over the high bits of R, G and B."""
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


def random_palette(n: int, seed: int = 0) -> list[Colour]:
    """A deterministic palette of ``n`` distinct-looking colours for models without one."""
    rng = np.random.default_rng(seed)
    return [tuple(int(v) for v in rng.integers(0, 256, 3)) for _ in range(n)]  # type: ignore[misc]


PALETTES: dict[str, list[Colour]] = {
    "voc": voc_palette(21), "cityscapes": CITYSCAPES, "ade20k": ADE20K, "camvid": CAMVID,
}
CLASSES: dict[str, list[str]] = {"voc": VOC_CLASSES, "cityscapes": CITYSCAPES_CLASSES, "camvid": CAMVID_CLASSES}
_BY_COUNT = {21: "voc", 19: "cityscapes", 150: "ade20k", 11: "camvid", 12: "camvid"}


def get_palette(name: str) -> list[Colour]:
    """A built-in palette by name (voc, cityscapes, ade20k, camvid; case-insensitive)."""
    key = name.lower().replace("-", "").replace("_", "")
    if key not in PALETTES:
        raise ValueError(f"unknown palette {name!r} (built in: {', '.join(sorted(PALETTES))})")
    return PALETTES[key]


def palette_array(palette: list | None, num_classes: int) -> np.ndarray:
    """Return a uint8 [num_classes, 3] array, padding a short palette with random colours."""
    colours = list(palette or [])
    if len(colours) < num_classes:
        colours += random_palette(num_classes, seed=len(colours))[len(colours):]
    try:
        arr = np.asarray(colours[:num_classes], dtype=np.int64).reshape(-1, 3)
    except (TypeError, ValueError):
        raise ValueError("palette must be a list of (R, G, B) triples") from None
    if arr.min(initial=0) < 0 or arr.max(initial=0) > 255:
        raise ValueError("palette colours must be in 0..255")
    return arr.astype(np.uint8)


def resolve_palette(num_classes: int, model_palette: list | None = None, name: str | None = None) -> np.ndarray:
    """Pick the colours for ``num_classes`` classes: ``name`` (an override) wins, then the model's own palette,
    then the built-in dataset palette with that many classes (21 VOC, 19 Cityscapes, 150 ADE20K, 11/12 CamVid),
    then deterministic random colours."""
    if name:
        return palette_array(get_palette(name), num_classes)
    if model_palette:
        return palette_array(model_palette, num_classes)
    if num_classes in _BY_COUNT:
        return palette_array(PALETTES[_BY_COUNT[num_classes]], num_classes)
    return palette_array(None, num_classes)
