"""A diff's whole-grid reads, kept for its later stages: the same pixels as reading again."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import calculate_default_transform, reproject

from conftest import textured, write_raster
from sohae_watch.grid import Grid
from sohae_watch.ingest import open_acquisition
from sohae_watch.readcache import CACHE_BYTES, GridCache, cache_for
from sohae_watch.reader import GridReader

T0 = Affine(0.5, 0, 500000.0, 0, -0.5, 4390000.0)
GRID = Grid(CRS.from_epsg(32651), T0, 100, 120)  # 100 columns, 120 rows
WINDOWS = [(0, 0, 120, 100), (10, 20, 30, 40), (0, 0, 7, 100), (100, 60, 20, 40), (5, 5, 1, 1)]


def _reads(reader: GridReader) -> list[tuple[np.ndarray, np.ndarray]]:
    return [reader.read(*w) for w in WINDOWS]


def _same(a: list[tuple[np.ndarray, np.ndarray]], b: list[tuple[np.ndarray, np.ndarray]]) -> None:
    for (da, va), (db, vb) in zip(a, b, strict=True):
        np.testing.assert_array_equal(da, db)  # NaN where invalid, in both
        np.testing.assert_array_equal(va, vb)


@pytest.mark.parametrize("model", [None, Affine.translation(1.25, -2.5)])
def test_a_lattice_source_reads_the_same_from_the_cache(
    tmp_path: Path, model: Affine | None
) -> None:
    """Whole grid and windows (inside the grid, after the whole read) come from the cache and
    are the pixels a reader without it gives; the reader's caller may change them freely."""
    acq = open_acquisition(write_raster(tmp_path / "a_2019-01-01.tif", textured((120, 100))))
    with GridReader(acq, GRID, model=model) as plain:
        want = _reads(plain)
    cache = GridCache(GRID)
    with GridReader(acq, GRID, model=model, cache=cache) as reader:
        assert cache.window(reader.cache_key, 10, 20, 30, 40) is None  # nothing read yet
        got = _reads(reader)
        assert cache.window(reader.cache_key, 10, 20, 30, 40) is not None
        got[0][0][:] = -1  # a caller writing into its copy
        again = _reads(reader)
    _same(got[1:], want[1:])
    _same(again, want)


def test_two_tiles_of_a_date_read_the_same_from_the_cache(tmp_path: Path) -> None:
    """A date in two overlapping tiles (mosaicked where they overlap), registered by a
    translation: windows across the seam and at the grid's edges as read from the files."""
    from sohae_watch.ingest import catalog

    data = textured((120, 100), seed=9)
    write_raster(tmp_path / "site_20190302_west.tif", data[:, :, :60], transform=T0, nodata=0)
    east = T0 * Affine.translation(50, 0)
    write_raster(tmp_path / "site_20190302_east.tif", data[:, :, 50:], transform=east, nodata=0)
    acqs, _ = catalog(tmp_path)
    assert len(acqs[0].sources) == 2
    model = Affine.translation(-0.75, 1.5)
    with GridReader(acqs[0], GRID, model=model) as plain:
        want = _reads(plain)
    cache = GridCache(GRID)
    with GridReader(acqs[0], GRID, model=model, cache=cache) as reader:
        got = _reads(reader)
        assert cache.window(reader.cache_key, 0, 0, 1, 1) is not None
    _same(got, want)


def test_a_warped_source_caches_only_the_whole_grid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GDAL warps each window on its own (values depend on the window): only the whole grid is
    served from the cache, and a window is read from the file as without it."""
    data = textured((120, 100), seed=5)
    dst_t, w, h = calculate_default_transform(GRID.crs, "EPSG:4326", 100, 120, *GRID.bounds)
    ll = np.zeros((4, h, w), np.uint16)
    reproject(data, ll, src_transform=T0, src_crs=GRID.crs, dst_transform=dst_t,
              dst_crs="EPSG:4326", resampling=rasterio.enums.Resampling.cubic)  # fmt: skip
    acq = open_acquisition(
        write_raster(tmp_path / "ll_2019-01-02.tif", ll, crs="EPSG:4326", transform=dst_t, nodata=0)
    )
    with GridReader(acq, GRID) as plain:
        want = _reads(plain)
    cache = GridCache(GRID)
    with GridReader(acq, GRID, cache=cache) as reader:
        calls: list[tuple[int, int, int, int]] = []
        read = reader._read

        def counted(*w: int) -> tuple[np.ndarray, np.ndarray]:
            calls.append(w)  # type: ignore[arg-type]
            return read(*w)

        monkeypatch.setattr(reader, "_read", counted)
        got = [*_reads(reader), reader.read(*WINDOWS[0])]
    _same(got[:-1], want)
    _same(got[-1:], want[:1])
    assert calls == WINDOWS  # the whole grid once, each window from the file


def test_reads_are_dropped_and_large_grids_get_no_cache(tmp_path: Path) -> None:
    acq = open_acquisition(write_raster(tmp_path / "a_2019-01-01.tif", textured((120, 100))))
    cache = GridCache(GRID)
    with GridReader(acq, GRID, cache=cache) as reader:
        reader.read_all()
        key = reader.cache_key
        assert cache.window(key, 0, 0, 5, 5) is not None
        cache.drop(lambda k: k != key)
        assert cache.window(key, 0, 0, 5, 5) is None
    # another grid's reader does not use it
    other = Grid(GRID.crs, T0, 50, 60)
    assert GridReader(acq, other, cache=cache).cache is None
    side = int((CACHE_BYTES / 3 / 17) ** 0.5)
    assert cache_for(Grid(GRID.crs, T0, side - 2, side - 2), 4) is not None
    assert cache_for(Grid(GRID.crs, T0, side + 2, side + 2), 4) is None
