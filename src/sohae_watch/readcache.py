"""Whole-grid reads kept for the stages of one diff on a small grid.

A diff reads its grid several times: co-registration, the fit of the change statistics, the
change stage and the structures' chips each open readers of their own. On a small grid (a
site's area of interest) each date is then decoded, and a source in another CRS warped, up to
three times whole. :class:`GridCache` keeps each whole-grid read (one per date and
registration) for the later stages, and hands out copies of it.

Only reads that give the same pixels either way are served from it: the whole grid, and, once
the whole grid was read, windows of a date whose sources lie on the grid's pixel lattice, read
as they are or moved by a translation (each pixel then comes from the same source pixels
whatever the window). A source GDAL warps onto the grid gives window-dependent values, so its
windows are read as before. A window never makes a whole read (on a grid a few windows sample,
that costs more than it saves).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from sohae_watch.grid import Grid

__all__ = ["CACHE_BYTES", "GridCache", "ReadKey", "cache_for"]

# bytes of whole-grid reads a diff keeps at most: three reads (BEFORE, AFTER as delivered for
# co-registration, AFTER registered) of 4 float32 bands and a mask: grids up to ~5 M pixels
CACHE_BYTES = 256 * 2**20
READS = 3

Read = tuple[np.ndarray, np.ndarray]  # bands (float32, NaN where invalid), validity


class ReadKey(NamedTuple):
    """What a read's pixels depend on besides the window (the grid is the cache's)."""

    paths: tuple[str, ...]  # the date's source files
    model: Any  # its registration (an Affine), None as delivered
    roles: tuple[str, ...]  # the bands read, in order
    resampling: Any  # rasterio's Resampling


class GridCache:
    """Whole-grid reads of ``grid`` by key, each made once (the first caller reads; callers of
    other keys are not held up meanwhile)."""

    def __init__(self, grid: Grid) -> None:
        self.grid = grid
        self._reads: dict[ReadKey, Read] = {}
        self._locks: dict[ReadKey, threading.Lock] = {}
        self._lock = threading.Lock()

    def whole(self, key: ReadKey, read_whole: Callable[[], Read]) -> Read:
        """A copy of the whole-grid read ``key``, read by ``read_whole`` the first time."""
        with self._lock:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            whole = self._reads.get(key)
            if whole is None:
                whole = read_whole()
                self._reads[key] = whole
        return whole[0].copy(), whole[1].copy()

    def window(self, key: ReadKey, row: int, col: int, height: int, width: int) -> Read | None:
        """A copy of a window (inside the grid) of the whole-grid read ``key``; None when that
        was not read."""
        with self._lock:
            whole = self._reads.get(key)
        if whole is None:
            return None
        if row < 0 or col < 0 or row + height > self.grid.height or col + width > self.grid.width:
            raise ValueError(f"window {row}, {col}, {height} x {width} is not inside the grid")
        rows, cols = slice(row, row + height), slice(col, col + width)
        return whole[0][:, rows, cols].copy(), whole[1][rows, cols].copy()

    def drop(self, keep: Callable[[ReadKey], bool]) -> None:
        """Forget the reads whose key ``keep`` says no to (e.g. a date as delivered, once it is
        registered)."""
        with self._lock:
            for key in [k for k in self._reads if not keep(k)]:
                del self._reads[key]


def cache_for(grid: Grid, bands: int) -> GridCache | None:
    """A cache for a diff on ``grid`` with ``bands`` bands, or None when its reads would take
    more than :data:`CACHE_BYTES`."""
    per_read = grid.width * grid.height * (4 * bands + 1)
    return GridCache(grid) if READS * per_read <= CACHE_BYTES else None
