"""Window-by-window processing of a pair on the working grid: bounded memory for any scene size.

A pair is processed in tiles with a halo (the change model's reach), each input window decoded
once; statistics come from a sample of windows first. Change areas cut by tile borders are
joined afterwards (:func:`~sohae_watch.areas.join_pieces`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from affine import Affine
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry

from sohae_watch.grid import Grid
from sohae_watch.ingest import Acquisition
from sohae_watch.reader import GridReader, set_nan
from sohae_watch.scene import Scene, intensity_of

TILE = 1024  # side of the change stage's output tiles, pixels
SAMPLE_WINDOW = 512  # size of the windows the change statistics are fitted on
SAMPLE_WINDOWS = 9  # how many of them (at most), spread over the grid: 2.4 Mpx of statistics


@dataclass(frozen=True)
class Tile:
    """A core window of the grid and the window read for it (core plus halo, clipped)."""

    row: int
    col: int
    height: int
    width: int
    read_row: int
    read_col: int
    read_height: int
    read_width: int

    @property
    def core(self) -> tuple[slice, slice]:
        """The core inside the read window."""
        r, c = self.row - self.read_row, self.col - self.read_col
        return slice(r, r + self.height), slice(c, c + self.width)


def tiles(shape: tuple[int, int], halo: int, size: int = TILE) -> Iterator[Tile]:
    """Row-major square tiles of ``size`` covering ``shape`` (rows, cols), each with ``halo``
    pixels of context."""
    h, w = shape
    for r in range(0, h, size):
        for c in range(0, w, size):
            th, tw = min(size, h - r), min(size, w - c)
            r0, c0 = max(0, r - halo), max(0, c - halo)
            r1, c1 = min(h, r + th + halo), min(w, c + tw + halo)
            yield Tile(r, c, th, tw, r0, c0, r1 - r0, c1 - c0)


def sample_origins(
    shape: tuple[int, int], size: int = SAMPLE_WINDOW, count: int = SAMPLE_WINDOWS
) -> list[tuple[int, int]]:
    """Origins of up to ``count`` windows of ``size`` spread evenly over ``shape``."""
    h, w = shape
    if h <= size and w <= size:
        return [(0, 0)]
    per_side = max(1, int(math.ceil(math.sqrt(count))))
    rows = sorted({int(round(v)) for v in np.linspace(0, max(0, h - size), per_side)})
    cols = sorted({int(round(v)) for v in np.linspace(0, max(0, w - size), per_side)})
    return [(r, c) for r in rows for c in cols][:count]


def sample_mosaic(
    read: Callable[[int, int, int, int], tuple[np.ndarray, np.ndarray]],
    origins: Sequence[tuple[int, int]],
    size: int,
    shape: tuple[int, int],
    gap: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Windows read at ``origins`` laid side by side in one array, separated by ``gap`` invalid
    pixels so no filter of the change model reaches from one window into the next."""
    hs = min(size, shape[0])
    ws = min(size, shape[1])
    n = len(origins)
    cols = int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / cols))
    valid = np.zeros((rows * (hs + gap), cols * (ws + gap)), bool)
    out: np.ndarray | None = None
    for k, (r, c) in enumerate(origins):
        d, v = read(r, c, hs, ws)
        if out is None:
            out = np.full((d.shape[0], *valid.shape), np.nan, np.float32)
        i, j = divmod(k, cols)
        rr, cc = i * (hs + gap), j * (ws + gap)
        out[:, rr : rr + hs, cc : cc + ws] = d
        valid[rr : rr + hs, cc : cc + ws] = v
    assert out is not None
    return out, valid


def sample_grid(grid: Grid, shape: tuple[int, int]) -> Grid:
    """A grid of ``shape`` with the working grid's CRS and pixel size (for the sample mosaic)."""
    t = grid.transform
    return Grid(grid.crs, Affine(t.a, t.b, t.c, t.d, t.e, t.f), shape[1], shape[0])


def intensity_reader(
    reader: GridReader,
) -> Callable[[int, int, int, int], tuple[np.ndarray, np.ndarray]]:
    """A single-band window reader (mean of the visible bands) over an acquisition reader."""

    def read(row: int, col: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        data, valid = reader.read(row, col, height, width)
        return intensity_of(data, tuple(reader.roles)), valid

    return read


def area_valid(
    grid: Grid, area: BaseGeometry, row: int, col: int, height: int, width: int
) -> np.ndarray:
    """Pixels of the window that touch ``area`` (all of them, without rasterizing, when the
    window lies inside it: the common case; none when it lies apart from it, as between the
    far-apart tiles of a date)."""
    sub = grid.crop(row, col, height, width)
    window = box(*sub.bounds)
    if area.contains(window):
        return np.ones((height, width), bool)
    if not area.intersects(window):
        return np.zeros((height, width), bool)
    return sub.rasterize(area, all_touched=True)


def window_scene(
    reader: GridReader,
    grid: Grid,
    area: BaseGeometry,
    acq: Acquisition,
    row: int,
    col: int,
    height: int,
    width: int,
) -> Scene:
    data, valid = reader.read(row, col, height, width)  # NaN where not valid
    inside = area_valid(grid, area, row, col, height, width)
    if not inside.all():
        valid &= inside
        set_nan(data, valid)
    return Scene(
        data,
        valid,
        tuple(reader.roles),
        grid.crop(row, col, height, width),
        acq.date,
        acq.paths,
        acq.sun,
    )
