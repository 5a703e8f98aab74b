"""Random choices of a street scene: camera, street, facades, sky, lighting and the props on them."""

from __future__ import annotations

import numpy as np

from training.data.props import Z_FAR, Z_NEAR, Camera, Car, Person, Pole, Tree
from training.data.scene import (
    ASPHALT,
    BUILDING,
    CAR,
    FABRIC,
    GLASS,
    LEAVES,
    PAVING,
    PERSON,
    POLE,
    ROAD,
    SIDEWALK,
    SKY,
    SMOOTH,
    VEGETATION,
    WALL,
    Layout,
    Materials,
    Side,
)


def _colour(rng: np.random.Generator, choices: list[tuple[int, int, int]], jitter: float = 18) -> np.ndarray:
    """One of the base colours with a little random variation."""
    c = np.asarray(choices[int(rng.integers(len(choices)))], np.float32)
    return c * rng.uniform(0.85, 1.15) + rng.normal(0, jitter / 3, 3)


WALLS = [(190, 175, 150), (150, 75, 55), (185, 185, 180), (120, 118, 122), (215, 200, 150),
         (140, 150, 165), (170, 120, 90), (95, 90, 85), (205, 190, 180)]
WINDOWS = [(40, 55, 75), (60, 70, 80), (30, 35, 45), (85, 105, 125), (200, 190, 140)]
CAR_PAINT = [(160, 20, 25), (25, 45, 130), (230, 230, 230), (25, 25, 28), (150, 152, 158), (200, 170, 30),
             (30, 100, 60), (90, 40, 110), (210, 110, 30), (70, 120, 180)]
SHIRTS = [(200, 40, 40), (40, 60, 160), (240, 240, 235), (30, 30, 30), (60, 140, 70), (220, 180, 40),
          (150, 60, 150), (230, 120, 50), (90, 90, 95)]
SKIN = [(230, 190, 160), (200, 150, 110), (150, 100, 70), (100, 65, 45)]
LEAVES_RGB = [(70, 110, 40), (50, 90, 35), (95, 130, 50), (60, 100, 60), (110, 125, 45)]


def _side(rng: np.random.Generator, mats: Materials, x: float) -> Side:
    """A run of buildings (some parks) along one side of the street."""
    starts, rows = [0.0], []
    while starts[-1] < Z_FAR:
        park = rng.random() < 0.2
        if park:
            top = rng.uniform(5, 12)
            leaf = _colour(rng, LEAVES_RGB, 12)
            wall = trim = window = mats.add(leaf, VEGETATION, LEAVES)
        else:
            top = rng.uniform(6, 24)
            base = _colour(rng, WALLS)
            wall = mats.add(base, BUILDING, WALL)
            trim = mats.add(base * rng.uniform(0.55, 0.8), BUILDING, WALL)
            window = mats.add(_colour(rng, WINDOWS, 10), BUILDING, GLASS)
        rows.append((top, park, wall, trim, window, rng.uniform(1.8, 3.5), rng.uniform(2.8, 3.6), rng.uniform(0, 6.3)))
        starts.append(starts[-1] + rng.uniform(8, 30))
    cols = list(zip(*rows))
    return Side(x, np.asarray(starts[:-1]), np.asarray(cols[0]), np.asarray(cols[1], bool),
                *(np.asarray(c, np.int32) for c in cols[2:5]), *(np.asarray(c) for c in cols[5:]))


def make_layout(rng: np.random.Generator, height: int, width: int, duration: float = 0.0) -> Layout:
    """Draw every random choice of a scene; ``duration`` (s) keeps oncoming traffic in view that long."""
    horizon = height * rng.uniform(0.36, 0.48)
    cam_h = rng.uniform(1.9, 2.8)
    m_px = (height - horizon) / cam_h  # pixels per metre on the bottom image row
    z0 = rng.uniform(5.5, 7.0)  # depth of the bottom image row
    cam = Camera(height, width, horizon, width * rng.uniform(0.4, 0.6), m_px * z0, cam_h, max(2.0, 4.0 * height / 256))
    road_w = rng.uniform(7.0, 12.0)
    left = -road_w * rng.uniform(0.3, 0.7)
    road = (left, left + road_w)
    walks = (rng.uniform(2.5, 5.0), rng.uniform(2.5, 5.0))
    mats = Materials()
    grey = rng.uniform(70, 110)
    road_rgb = np.array([grey, grey, grey * rng.uniform(1.0, 1.08)])
    walk_rgb = _colour(rng, [(165, 160, 155), (180, 165, 160), (150, 150, 150), (175, 160, 140)], 10)
    ids = {
        "road": mats.add(road_rgb, ROAD, ASPHALT),
        "marking": mats.add(_colour(rng, [(235, 235, 230), (230, 200, 60)], 6), ROAD, SMOOTH),
        "walk": mats.add(walk_rgb, SIDEWALK, PAVING),
        "grout": mats.add(walk_rgb * 0.72, SIDEWALK, PAVING),
        "curb": mats.add(walk_rgb * 1.12 + 10, SIDEWALK, SMOOTH),
        "sky": mats.add((0, 0, 0), SKY, (0.0, 0.0, 0.0)),
        "car_shadow": mats.add(road_rgb * 0.35, ROAD, ASPHALT),
    }
    sides = (_side(rng, mats, road[0] - walks[0]), _side(rng, mats, road[1] + walks[1]))
    n_lanes = max(2, round(road_w / 3.3))
    lanes = [road[0] + road_w * k / n_lanes for k in range(1, n_lanes)]
    sky_top = np.array([rng.uniform(40, 110), rng.uniform(100, 160), rng.uniform(180, 240)])
    sky_low = sky_top + rng.uniform(40, 110)
    if rng.random() < 0.2:  # hazy day
        sky_top = sky_top * 0.5 + 90
    lay = Layout(
        cam=cam, mats=mats, road=road, sides=sides, ids=ids, lanes=lanes,
        dash=(rng.uniform(6, 12), rng.uniform(0.3, 0.5)), tile=rng.uniform(0.4, 1.0),
        sky=(sky_top, np.minimum(sky_low, 250), rng.uniform(0.0, 0.6)),
        light=(rng.uniform(0.75, 1.2), rng.uniform(0.8, 1.2), rng.uniform(0.9, 1.1, 3)),
        shadow=(_shadow_polygon(rng, cam, road, sides), rng.uniform(0.5, 0.8)),
        noise_seed=int(rng.integers(2**31)),
    )
    lay.props = place_props(rng, lay, duration)
    return lay


def _shadow_polygon(rng: np.random.Generator, cam: Camera, road: tuple[float, float],
                    sides: tuple[Side, Side]) -> list[tuple[float, float]]:
    """A building shadow across part of the street, as an image polygon."""
    left = rng.random() < 0.5
    x_wall = sides[0].x if left else sides[1].x
    reach = rng.uniform(2.0, road[1] - road[0] + 4.0) * (1 if left else -1)
    z0, z1 = rng.uniform(Z_NEAR, 25), rng.uniform(30, 90)
    pts = [(x_wall, z0), (x_wall + reach, z0 + rng.uniform(-3, 3)), (x_wall + reach, z1), (x_wall, z1)]
    return [cam.project(x, 0.0, z) for x, z in pts]


TROUSERS = [(40, 60, 110), (30, 30, 32), (90, 90, 95), (160, 140, 100), (70, 50, 40)]
HAIR = [(30, 25, 20), (70, 45, 25), (180, 150, 90), (120, 120, 120)]
METAL = [(90, 92, 95), (60, 62, 65), (40, 60, 45), (130, 132, 135)]


def _toward(z: float, speed: float, duration: float) -> float:
    """Shift the start of something coming toward the camera so it stays in view for ``duration``."""
    return z + max(0.0, -speed) * duration


def _cars(rng: np.random.Generator, lay: Layout, duration: float) -> list[Car]:
    xl, xr = lay.road
    edges = [xl, *lay.lanes, xr]
    n = len(edges) - 1
    two_way = rng.random() < 0.6
    cars: list[Car] = []
    for k in range(n):
        centre = (edges[k] + edges[k + 1]) / 2
        parked = n >= 3 and k in (0, n - 1) and rng.random() < 0.35
        oncoming = two_way and centre < (xl + xr) / 2
        speed = 0.0 if parked else rng.uniform(4, 11) * (-1 if oncoming else 1)
        z = _toward(rng.uniform(4.5, 14), speed, duration)
        for _ in range(int(rng.integers(1 if parked else 0, 6 if parked else 4))):
            w, length = rng.uniform(1.65, 2.0), rng.uniform(3.8, 5.0)
            x = (xl + 0.25 + w / 2 if k == 0 else xr - 0.25 - w / 2) if parked else centre + rng.uniform(-0.4, 0.4)
            cars.append(_car(rng, lay, x, z, w, length, oncoming if not parked else rng.random() < 0.5, speed))
            z += length + (rng.uniform(0.8, 3) if parked else rng.uniform(3, 30))
            if z > 90:
                break
    if not cars:
        k = int(rng.integers(n))
        cars.append(_car(rng, lay, (edges[k] + edges[k + 1]) / 2, rng.uniform(6, 25), 1.8, 4.4, False, 6.0))
    return cars


def _car(rng: np.random.Generator, lay: Layout, x: float, z: float, w: float, length: float, front: bool,
         speed: float) -> Car:
    m = lay.mats
    paint = _colour(rng, CAR_PAINT, 12)
    mats = (
        m.add(paint, CAR, SMOOTH), m.add(paint * 0.7, CAR, SMOOTH), m.add(paint * 1.1 + 12, CAR, SMOOTH),
        m.add(_colour(rng, [(35, 45, 60), (55, 65, 75), (25, 28, 32)], 8), CAR, GLASS),
        m.add((22, 22, 24), CAR, FABRIC),
        m.add((245, 240, 215) if front else (210, 30, 25), CAR, SMOOTH),
        m.add((235, 235, 225), CAR, SMOOTH),
        lay.ids["car_shadow"],
    )
    return Car(x, z, w, rng.uniform(1.4, 1.85), length, front, mats, speed)


def _people(rng: np.random.Generator, lay: Layout, duration: float) -> list[Person]:
    (ls, rs), (xl, xr) = lay.sides, lay.road
    people = []
    for _ in range(int(rng.integers(2, 10))):
        lo, hi = (ls.x + 0.4, xl - 0.5) if rng.random() < 0.5 else (xr + 0.5, rs.x - 0.4)
        speed = 0.0 if rng.random() < 0.2 else rng.uniform(0.8, 1.6) * rng.choice([-1, 1])
        m = lay.mats
        mats = (m.add(_colour(rng, SKIN, 8), PERSON, FABRIC), m.add(_colour(rng, HAIR, 8), PERSON, FABRIC),
                m.add(_colour(rng, SHIRTS), PERSON, FABRIC), m.add(_colour(rng, TROUSERS, 10), PERSON, FABRIC))
        people.append(Person(rng.uniform(lo, hi), _toward(rng.uniform(4.5, 25), speed, duration),
                             rng.uniform(1.55, 1.9), rng.uniform(0.36, 0.48), mats, rng.uniform(0, 6.3), speed))
    return people


def _poles_and_trees(rng: np.random.Generator, lay: Layout) -> list[Pole | Tree]:
    (ls, rs), (xl, xr) = lay.sides, lay.road
    out: list[Pole | Tree] = []
    for sign, curb, wall in ((1, xl - 0.5, ls.x + 1.0), (-1, xr + 0.5, rs.x - 1.0)):
        if rng.random() < 0.9:
            metal = lay.mats.add(_colour(rng, METAL, 8), POLE, SMOOTH)
            lamp = lay.mats.add((225, 225, 205), POLE, SMOOTH)
            arm = sign * rng.uniform(1.0, 2.5) if rng.random() < 0.6 else 0.0
            z, step, h, w = rng.uniform(4, 16), rng.uniform(10, 25), rng.uniform(5, 9), rng.uniform(0.2, 0.35)
            while z < 110:
                out.append(Pole(curb, z, h, w, arm, (metal, lamp)))
                z += step
        if rng.random() < 0.6:
            trunk = lay.mats.add(_colour(rng, [(90, 65, 45), (70, 60, 50)], 8), VEGETATION, FABRIC)
            leaves = [lay.mats.add(_colour(rng, LEAVES_RGB, 12), VEGETATION, LEAVES) for _ in range(2)]
            z, step = rng.uniform(4, 15), rng.uniform(7, 16)
            while z < 80:
                th, r = rng.uniform(1.8, 3.0), rng.uniform(1.2, 2.5)
                blobs = tuple((rng.uniform(-0.6, 0.6) * r, th + r * rng.uniform(0.6, 1.3), r * rng.uniform(0.5, 0.8),
                               leaves[int(rng.integers(2))]) for _ in range(int(rng.integers(4, 7))))
                out.append(Tree(wall + sign * rng.uniform(-0.3, 0.3), z, th, blobs, trunk))
                z += step
    return out


def place_props(rng: np.random.Generator, lay: Layout, duration: float = 0.0) -> list:
    """Cars in their lanes, people on the sidewalks, poles along the curbs, trees along the facades."""
    return _cars(rng, lay, duration) + _people(rng, lay, duration) + _poles_and_trees(rng, lay)
