"""Street props (cars, people, poles, trees) placed in world metres and drawn as material-id polygons.

World frame: x to the right, y up from the ground, z forward from the camera (metres). A prop is drawn
only into the material-id image; labels and colours are both looked up from that image later, so what
is drawn and what is labelled cannot disagree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageDraw

Z_NEAR, Z_FAR = 3.0, 160.0  # props outside this depth range are not drawn


@dataclass(frozen=True)
class Camera:
    """Pinhole camera looking along +z with a level horizon."""

    height: int
    width: int
    horizon: float  # image row of the horizon
    cx: float  # image column of the vanishing point
    focal: float  # focal length in pixels
    cam_h: float  # camera height above the ground in metres
    min_px: float  # thinnest width a pole is drawn with, in pixels

    def project(self, x: float, y: float, z: float) -> tuple[float, float]:
        """World point -> (column, row)."""
        return self.cx + self.focal * x / z, self.horizon + self.focal * (self.cam_h - y) / z


class Painter:
    """Draws world-space polygons into an int32 material-id image."""

    def __init__(self, mats: np.ndarray, cam: Camera) -> None:
        self.image = Image.fromarray(np.ascontiguousarray(mats, dtype=np.int32), mode="I")
        self.draw = ImageDraw.Draw(self.image)
        self.cam = cam

    def poly(self, pts: list[tuple[float, float, float]], mat: int) -> None:
        """Fill the projection of a world polygon."""
        self.draw.polygon([self.cam.project(*p) for p in pts], fill=mat)

    def face(self, x0: float, x1: float, y0: float, y1: float, z: float, mat: int) -> None:
        """Rectangle facing the camera at depth z."""
        self.poly([(x0, y0, z), (x1, y0, z), (x1, y1, z), (x0, y1, z)], mat)

    def side(self, x: float, y0: float, y1: float, z0: float, z1: float, mat: int) -> None:
        """Rectangle in the plane of constant x (a side wall)."""
        self.poly([(x, y0, z0), (x, y0, z1), (x, y1, z1), (x, y1, z0)], mat)

    def top(self, x0: float, x1: float, y: float, z0: float, z1: float, mat: int) -> None:
        """Rectangle in the plane of constant y (a roof or a patch of ground)."""
        self.poly([(x0, y, z0), (x1, y, z0), (x1, y, z1), (x0, y, z1)], mat)

    def ellipse(self, x: float, y: float, rx: float, ry: float, z: float, mat: int) -> None:
        """Ellipse facing the camera, centred at (x, y, z)."""
        u0, v0 = self.cam.project(x - rx, y + ry, z)
        u1, v1 = self.cam.project(x + rx, y - ry, z)
        self.draw.ellipse([u0, v0, u1, v1], fill=mat)

    def pixel_bar(self, x: float, y0: float, y1: float, z: float, width_m: float, mat: int) -> None:
        """Vertical bar at least ``cam.min_px`` pixels wide."""
        u, v0 = self.cam.project(x, y1, z)
        _, v1 = self.cam.project(x, y0, z)
        half = max(self.cam.min_px, self.cam.focal * width_m / z) / 2
        self.draw.polygon([(u - half, v0), (u + half, v0), (u + half, v1), (u - half, v1)], fill=mat)

    def result(self) -> np.ndarray:
        """The material-id image as an int32 array."""
        return np.asarray(self.image)


@dataclass(frozen=True)
class Car:
    """A car seen from behind (driving away) or from the front (oncoming)."""

    x: float
    z: float  # depth of the face nearest the camera
    w: float
    h: float
    length: float
    front: bool  # True: headlights face the camera
    mats: tuple[int, ...]  # body, body side, roof, glass, wheel, light, plate, under-car shadow (road)
    speed: float = 0.0  # metres per second along +z

    def at(self, t: float) -> Car:
        """The car t seconds later."""
        return replace(self, z=self.z + self.speed * t)

    def draw(self, p: Painter) -> None:
        """Draw far parts first, the face nearest the camera last."""
        body, body_side, roof, glass, wheel, light, plate, shadow = self.mats
        x0, x1, z0, z1 = self.x - self.w / 2, self.x + self.w / 2, self.z, self.z + self.length
        hb = 0.55 * self.h  # top of the lower body
        cw = 0.42 * self.w  # half width of the cabin
        cz0, cz1 = z0 + 0.3 * self.length, z0 + 0.75 * self.length
        p.top(x0 - 0.15, x1 + 0.15, 0.0, z0 - 0.2, z1, shadow)
        sx = x0 if x0 > 0 else (x1 if x1 < 0 else None)
        if sx is not None:  # the side facing the camera
            p.side(sx, 0.2, hb, z0, z1, body_side)
            for wz in (z0 + 0.75, z1 - 0.75):
                p.poly([(sx, 0.0, wz - 0.3), (sx, 0.0, wz + 0.3), (sx, 0.6, wz + 0.3), (sx, 0.6, wz - 0.3)], wheel)
        p.top(x0, x1, hb, z0, z1, roof)
        csx = self.x - cw if self.x - cw > 0 else (self.x + cw if self.x + cw < 0 else None)
        if csx is not None:
            p.side(csx, hb, self.h, cz0, cz1, glass)
        p.top(self.x - cw, self.x + cw, self.h, cz0, cz1, roof)
        p.poly([(self.x - cw, hb, cz0 - 0.25), (self.x + cw, hb, cz0 - 0.25),
                (self.x + cw, self.h, cz0), (self.x - cw, self.h, cz0)], body)
        p.poly([(self.x - cw + 0.08, hb + 0.05, cz0 - 0.2), (self.x + cw - 0.08, hb + 0.05, cz0 - 0.2),
                (self.x + cw - 0.1, self.h - 0.06, cz0 - 0.01), (self.x - cw + 0.1, self.h - 0.06, cz0 - 0.01)], glass)
        for wx in (x0 + 0.1, x1 - 0.4):
            p.face(wx, wx + 0.3, 0.0, 0.35, z0 + 0.5, wheel)
        p.face(x0, x1, 0.22, hb, z0, body)
        lw = 0.2 * self.w
        p.face(x0 + 0.05, x0 + 0.05 + lw, 0.6 * hb, 0.85 * hb, z0, light)
        p.face(x1 - 0.05 - lw, x1 - 0.05, 0.6 * hb, 0.85 * hb, z0, light)
        p.face(self.x - 0.26, self.x + 0.26, 0.3, 0.42, z0, plate)


@dataclass(frozen=True)
class Person:
    """A pedestrian drawn as a flat figure facing the camera, legs swinging with its walk."""

    x: float
    z: float
    h: float
    girth: float  # shoulder width in metres
    mats: tuple[int, ...]  # skin, hair, shirt, trousers
    phase: float = 0.0
    speed: float = 0.0  # metres per second along +z

    def at(self, t: float) -> Person:
        """The person t seconds later (the stride advances with the distance walked)."""
        dz = self.speed * t
        return replace(self, z=self.z + dz, phase=self.phase + abs(dz) / 0.75 * math.pi)

    def draw(self, p: Painter) -> None:
        """Legs, arms, torso, head."""
        skin, hair, shirt, trousers = self.mats
        h, x, z, g = self.h, self.x, self.z, self.girth
        swing = 0.12 * h * math.sin(self.phase)
        hip, shoulder = 0.48 * h, 0.8 * h
        for side, s in ((-1, swing), (1, -swing)):
            hx = x + side * 0.08 * g / 0.4
            p.poly([(hx - 0.07, hip, z), (hx + 0.07, hip, z), (hx + s / 2 + 0.06, 0.0, z), (hx + s / 2 - 0.06, 0.0, z)],
                   trousers)
        for side, s in ((-1, -swing), (1, swing)):
            ax = x + side * g / 2
            p.poly([(ax - 0.05, shoulder, z), (ax + 0.05, shoulder, z),
                    (ax + s / 3 + 0.045, 0.47 * h, z), (ax + s / 3 - 0.045, 0.47 * h, z)], shirt)
        p.poly([(x - 0.38 * g, hip - 0.02, z), (x + 0.38 * g, hip - 0.02, z),
                (x + g / 2, shoulder, z), (x - g / 2, shoulder, z)], shirt)
        p.face(x - 0.04, x + 0.04, shoulder - 0.01, 0.86 * h, z, skin)
        p.ellipse(x, 0.92 * h, 0.055 * h, 0.075 * h, z, skin)
        p.ellipse(x, 0.955 * h, 0.057 * h, 0.045 * h, z, hair)


@dataclass(frozen=True)
class Pole:
    """A street-light or sign pole, optionally with an arm over the road."""

    x: float
    z: float
    h: float
    w: float
    arm: float  # signed arm length in metres (0: none)
    mats: tuple[int, ...]  # metal, lamp

    def at(self, t: float) -> Pole:
        """Poles stand still."""
        return self

    def draw(self, p: Painter) -> None:
        """Shaft, arm and lamp."""
        metal, lamp = self.mats
        p.pixel_bar(self.x, 0.0, self.h, self.z, self.w, metal)
        if self.arm:
            x1 = self.x + self.arm
            t = max(0.12, p.cam.min_px * self.z / p.cam.focal)
            p.face(min(self.x, x1), max(self.x, x1), self.h - t, self.h, self.z, metal)
            d = math.copysign(1.0, self.arm)
            p.face(x1 - 0.3 * d, x1 + 0.1 * d, self.h - 0.25, self.h, self.z, lamp)  # corner order does not matter


@dataclass(frozen=True)
class Tree:
    """A street tree: trunk and a crown of overlapping leafy blobs."""

    x: float
    z: float
    trunk_h: float
    blobs: tuple[tuple[float, float, float, int], ...]  # (dx, y, radius, material) of each crown blob
    trunk: int

    def at(self, t: float) -> Tree:
        """Trees stand still."""
        return self

    def draw(self, p: Painter) -> None:
        """Trunk, then the crown blobs."""
        p.pixel_bar(self.x, 0.0, self.trunk_h + 0.5, self.z, 0.3, self.trunk)
        for dx, y, r, mat in self.blobs:
            p.ellipse(self.x + dx, y, r, r * 0.9, self.z, mat)
