"""A box structure on textured ground, drawn as a view off nadir draws it: the test scenes of the
lean tests (tests/test_classify_lean.py, tests/test_classify_views.py)."""

from __future__ import annotations

import datetime as dt

import numpy as np
from shapely.geometry import box, shape

from sohae_watch.grid import Grid
from sohae_watch.scene import Scene
from sohae_watch.site import Structure

GROUND = (0.19, 0.16, 0.12, 0.25)
ROOF = (0.27, 0.28, 0.29, 0.31)
VENTS = (0.45, 0.40, 0.30, 0.40)  # a lighter, warmer strip along one side of the roof
WALL = 0.6  # the walls facing the satellite, as a share of the roof's light


def tower_scene(
    grid: Grid,
    block: tuple[int, int, int, int],
    shift: tuple[int, int] | None,
    seed: int,
    walls: bool = False,
) -> Scene:
    """Ground with texture and, unless ``shift`` is None, the roof of the footprint ``block``
    (rows r0:r1, cols c0:c1) moved by ``shift`` (dx, dy) px: grey with a lighter strip over its
    left third; with ``walls``, the walls facing the satellite in the band swept between
    footprint and roof."""
    rng = np.random.default_rng(seed)
    tex = 1.0 + 0.05 * rng.standard_normal((1, *grid.shape))
    refl = np.asarray(GROUND, np.float32)[:, None, None] * tex
    if shift is not None:
        dx, dy = shift
        r0, c0, r1, c1 = block
        roof = np.zeros(grid.shape, bool)
        roof[r0 + dy : r1 + dy, c0 + dx : c1 + dx] = True
        strip = np.zeros(grid.shape, bool)
        strip[r0 + dy : r1 + dy, c0 + dx : c0 + dx + (c1 - c0) // 3] = True
        if walls:
            swept = np.zeros(grid.shape, bool)
            for t in np.linspace(0.0, 1.0, 64):
                sx, sy = round(t * dx), round(t * dy)
                swept[r0 + sy : r1 + sy, c0 + sx : c1 + sx] = True
            wall = swept & ~roof
            refl[:, wall] = WALL * np.asarray(ROOF, np.float32)[:, None] * tex[:, wall]
        refl[:, roof] = np.asarray(ROOF, np.float32)[:, None] * tex[:, roof]
        refl[:, strip] = np.asarray(VENTS, np.float32)[:, None] * tex[:, strip]
    data = (10000.0 * refl).astype(np.float32)
    valid = np.ones(grid.shape, bool)
    return Scene(data, valid, ("red", "green", "blue", "nir"), grid, dt.date(2024, 1, 1))


def footprint(grid: Grid, block: tuple[int, int, int, int]) -> Structure:
    """The structure whose footprint is ``block`` (rows r0:r1, cols c0:c1) of ``grid``."""
    r0, c0, r1, c1 = block
    x0, y0 = grid.transform * (c0, r1)
    x1, y1 = grid.transform * (c1, r0)
    return Structure("tower", "tower", shape(grid.geometry_to_lonlat(box(x0, y0, x1, y1))))
