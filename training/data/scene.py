"""Random street-scene layouts and their rendering into (RGB image, label map).

A scene is rendered in two steps. First an int32 *material* image is built: the street, facades and sky
analytically with numpy, then the props (cars, people, poles, trees) drawn far to near with Pillow
polygons. Every material belongs to one class, so the label map is a table look-up of the material
image and cannot disagree with the picture. Second, colours come from the same material image plus
noise textures, sky gradient and clouds, and a global lighting change with one shadowed region.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

from training.data.props import Z_FAR, Z_NEAR, Camera, Painter

CLASSES: tuple[str, ...] = ("road", "sidewalk", "building", "vegetation", "sky", "car", "person", "pole")
PALETTE: tuple[tuple[int, int, int], ...] = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (107, 142, 35),
    (70, 130, 180), (0, 0, 142), (220, 20, 60), (153, 153, 153),
)
ROAD, SIDEWALK, BUILDING, VEGETATION, SKY, CAR, PERSON, POLE = range(8)

# texture amplitudes (fine, mid, coarse) as relative brightness changes
SMOOTH = (0.02, 0.02, 0.04)
ASPHALT = (0.10, 0.03, 0.06)
PAVING = (0.06, 0.03, 0.05)
WALL = (0.04, 0.03, 0.07)
LEAVES = (0.12, 0.30, 0.10)
GLASS = (0.03, 0.05, 0.10)
FABRIC = (0.05, 0.03, 0.02)


class Materials:
    """Table of materials: base colour, texture amplitudes and class of each material id."""

    def __init__(self) -> None:
        self.rgb: list[tuple[float, float, float]] = []
        self.tex: list[tuple[float, float, float]] = []
        self.cls: list[int] = []

    def add(self, rgb: np.ndarray | tuple, cls: int, tex: tuple[float, float, float]) -> int:
        """Register a material and return its id."""
        self.rgb.append(tuple(float(c) for c in np.clip(rgb, 0, 255)))
        self.tex.append(tex)
        self.cls.append(cls)
        return len(self.cls) - 1

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(rgb float32 [N,3], texture float32 [N,3], class uint8 [N])."""
        return (np.asarray(self.rgb, np.float32), np.asarray(self.tex, np.float32), np.asarray(self.cls, np.uint8))


@dataclass
class Side:
    """One side of the street: facade plane x and its run of buildings and parks along z."""

    x: float  # facade plane (the outer edge of the sidewalk)
    starts: np.ndarray  # z where each segment starts (sorted, first is 0)
    top: np.ndarray  # roof or tree-line height (m)
    park: np.ndarray  # bool: vegetation instead of a building
    wall: np.ndarray  # material ids
    trim: np.ndarray
    window: np.ndarray
    win_step: np.ndarray  # window spacing along z (m)
    floor_h: np.ndarray  # storey height (m)
    wave: np.ndarray  # phase of the tree line of parks


@dataclass
class Layout:
    """Everything random about one scene; props move with ``prop.at(t)``."""

    cam: Camera
    mats: Materials
    road: tuple[float, float]  # road edges x (m)
    sides: tuple[Side, Side]
    ids: dict[str, int]  # named background materials
    lanes: list[float]  # x of dashed lane lines
    dash: tuple[float, float]  # (period, duty) of the dashes along z
    tile: float  # paving tile size (m)
    sky: tuple[np.ndarray, np.ndarray, float]  # top colour, horizon colour, cloud cover 0..1
    light: tuple[float, float, np.ndarray]  # brightness, contrast, per-channel colour cast
    shadow: tuple[list[tuple[float, float]], float]  # shadow polygon (pixels) and its darkening factor
    noise_seed: int
    props: list = field(default_factory=list)


def make_noise(layout: Layout) -> tuple[np.ndarray, ...]:
    """Fine, mid, coarse and cloud noise fields (float32, unit-ish spread) for a layout."""
    rng = np.random.default_rng(layout.noise_seed)
    h, w = layout.cam.height, layout.cam.width

    def smooth(step: int) -> np.ndarray:
        small = rng.standard_normal((h // step + 2, w // step + 2)).astype(np.float32)
        big = Image.fromarray(small, mode="F").resize(((w // step + 2) * step, (h // step + 2) * step),
                                                     Image.Resampling.BILINEAR)
        a = np.asarray(big)[step: step + h, step: step + w]
        return a / max(float(a.std()), 1e-6)

    return rng.standard_normal((h, w), dtype=np.float32), smooth(3), smooth(16), smooth(24)


def render_background(layout: Layout) -> np.ndarray:
    """Material ids of the street, sidewalks, facades and sky (int32 HxW)."""
    cam, ids = layout.cam, layout.ids
    ys = np.arange(cam.height, dtype=np.float32) + 0.5 - cam.horizon
    dx = np.arange(cam.width, dtype=np.float32) + 0.5 - cam.cx
    dx = np.where(np.abs(dx) < 1e-3, 1e-3, dx)
    below = ys > 0
    zg = np.where(below, cam.focal * cam.cam_h / np.where(below, ys, 1.0), np.inf)  # ground depth per row
    zc = np.minimum(zg, 1e4)[:, None]
    xg = dx[None, :] * zc / cam.focal  # ground x per pixel
    (ls, rs), (xl, xr) = layout.sides, layout.road
    ground = below[:, None] & (xg >= ls.x) & (xg <= rs.x)
    road = ground & (xg >= xl) & (xg <= xr)

    # the ground: asphalt with dashed lanes, paving with grout lines, a curb along the road
    mats = np.full((cam.height, cam.width), ids["sky"], np.int32)
    mats[ground] = ids["walk"]
    period, duty = layout.dash
    dash = ((zc % period) < period * duty) & (zc < 80)
    lane = np.zeros_like(road)
    for x in layout.lanes:
        lane |= np.abs(xg - x) < 0.08
    mats[road] = ids["road"]
    mats[road & lane & dash] = ids["marking"]
    walk = ground & ~road
    t = layout.tile
    grout = (((xg % t) < 0.07 * t) | ((zc % t) < 0.07 * t)) & (zc < 30)
    mats[walk & grout] = ids["grout"]
    mats[walk & ((np.abs(xg - xl) < 0.2) | (np.abs(xg - xr) < 0.2))] = ids["curb"]

    # facades: per column the depth where its ray meets the facade plane, then the segment there
    left = dx < 0
    zf = np.clip(np.where(left, ls.x, rs.x) * cam.focal / dx, 0.05, 1e4)
    k_l = np.clip(np.searchsorted(ls.starts, zf, "right") - 1, 0, len(ls.starts) - 1)
    k_r = np.clip(np.searchsorted(rs.starts, zf, "right") - 1, 0, len(rs.starts) - 1)

    def per_col(name: str) -> np.ndarray:
        return np.where(left, getattr(ls, name)[k_l], getattr(rs, name)[k_r])

    start, top, park = per_col("starts"), per_col("top"), per_col("park")
    top = np.where(park, top + 1.5 * np.sin(zf * 0.9 + per_col("wave")) + 0.8 * np.sin(zf * 2.7), top)
    y = cam.cam_h - ys[:, None] * zf[None, :] / cam.focal  # height on the facade plane per pixel
    facade = ~ground & (y <= top[None, :])
    u = zf - start  # distance along the facade from the start of its segment
    step, floor = per_col("win_step"), per_col("floor_h")
    win_col = ((u % step) > 0.3 * step) & ((u % step) < 0.75 * step) & (u > 0.5)
    fy = y % floor[None, :]
    win = win_col[None, :] & (fy > 0.3 * floor[None, :]) & (fy < 0.75 * floor[None, :]) & (y > 3.0) \
        & (y < top[None, :] - 1.0)
    shop = ((u % 6.0) > 0.6)[None, :] & (y > 0.5) & (y < 2.6)
    trim = (u < 0.4)[None, :] | (y > top[None, :] - 0.45) | ((y > 2.6) & (y < 3.0))
    bld = facade & ~park[None, :]
    mats = np.where(facade, per_col("wall")[None, :], mats)
    mats = np.where(bld & (win | shop), per_col("window")[None, :], mats)
    mats = np.where(bld & trim & ~win, per_col("trim")[None, :], mats)
    return mats


def render(layout: Layout, background: np.ndarray, props: list, noise: tuple[np.ndarray, ...]
           ) -> tuple[np.ndarray, np.ndarray]:
    """Draw props far to near over the background; return (RGB uint8 HxWx3, labels uint8 HxW)."""
    painter = Painter(background, layout.cam)
    for prop in sorted(props, key=lambda p: -p.z):
        if Z_NEAR <= prop.z <= Z_FAR:
            prop.draw(painter)
    mats = painter.result()
    rgb, tex, cls = layout.mats.arrays()
    labels = cls[mats]
    return _shade(layout, mats, rgb, tex, noise), labels


def _shade(layout: Layout, mats: np.ndarray, rgb: np.ndarray, tex: np.ndarray,
           noise: tuple[np.ndarray, ...]) -> np.ndarray:
    """Colours from materials, textures, sky gradient, clouds, lighting and the shadow."""
    cam = layout.cam
    fine, mid, coarse, cloud = noise
    shade = 1.0 + tex[:, 0][mats] * fine
    shade += tex[:, 1][mats] * mid
    shade += tex[:, 2][mats] * coarse
    img = rgb[mats]
    img *= shade[..., None]
    # sky only exists above the horizon: gradient from zenith to horizon, clouds from a smooth noise field
    rows = min(cam.height, int(np.ceil(cam.horizon)) + 1)
    sky = mats[:rows] == layout.ids["sky"]
    yy, xx = np.nonzero(sky)
    top, low, cover = (np.asarray(v, np.float32) for v in layout.sky)
    a = np.clip((yy.astype(np.float32) + 0.5) / np.float32(max(cam.horizon, 1.0)), 0, 1)[:, None]
    c = np.clip((cloud[yy, xx] - (1.2 - 1.6 * cover)) * 1.5, 0, 1)[:, None]
    img[yy, xx] = (top * (1 - a) + low * a) * (1 - c) + (235.0 + 12.0 * coarse[yy, xx, None]) * c
    pts, dark = layout.shadow
    mask = Image.new("L", (cam.width, cam.height), 0)
    ImageDraw.Draw(mask).polygon(pts, fill=1)
    img[np.asarray(mask, bool)] *= np.float32(dark)
    bright, contrast, cast = layout.light
    gain = (contrast * bright * np.asarray(cast)).astype(np.float32)
    img *= gain
    img += (110.0 * (1.0 - contrast) * bright * np.asarray(cast)).astype(np.float32)
    np.clip(img, 0, 255, out=img)
    return img.astype(np.uint8)
