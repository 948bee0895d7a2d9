"""A small area is co-registered on the ground around it (area.context_grid, coregister.within)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from affine import Affine
from click.testing import CliRunner
from pyproj import Transformer
from rasterio.crs import CRS

from conftest import write_raster
from sohae_watch.area import context_grid
from sohae_watch.cli.main import cli
from sohae_watch.coregister import CoregResult, TiePoint, within
from sohae_watch.grid import Grid
from sohae_watch.ingest import open_acquisition

ORIGIN = (500000.0, 4390000.0)
RES = 0.5


def waves(n: int, shift: tuple[float, float], seed: int) -> np.ndarray:
    """``../shared/bench/make_big_pair.py``'s texture (long waves under white noise, where a
    few hundred pixels hold too little of a wave to pin it), 4 bands, sampled at (x + dx, y + dy)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float64)
    xx += shift[0]
    yy += shift[1]
    base = 3000 + 800 * np.sin(xx / 97.0) * np.cos(yy / 131.0) + 400 * np.sin((xx + yy) / 23.0)
    out = [base * (1 + 0.1 * b) + rng.normal(0, 60, (n, n)) for b in range(4)]
    return np.clip(np.stack(out), 1, 65535).astype(np.uint16)


def pair(tmp: Path, n: int, shift: tuple[float, float]) -> tuple[Path, Path]:
    t = Affine(RES, 0, ORIGIN[0], 0, -RES, ORIGIN[1])
    before = write_raster(tmp / "before_2019-02-16.tif", waves(n, (0, 0), 1), transform=t, nodata=0)
    after = write_raster(tmp / "after_2019-03-02.tif", waves(n, shift, 2), transform=t, nodata=0)
    return before, after


def aoi_lonlat(col0: int, row0: int, side: int) -> str:
    """``--aoi`` for a ``side`` px square whose upper-left pixel is (col0, row0)."""
    to_ll = Transformer.from_crs("EPSG:32651", "EPSG:4326", always_xy=True)
    x0, y1 = ORIGIN[0] + col0 * RES, ORIGIN[1] - row0 * RES
    x1, y0 = x0 + side * RES, y1 - side * RES
    lons, lats = to_ll.transform([x0, x1, x0, x1], [y0, y0, y1, y1])
    return f"{max(lons[0], lons[2])},{max(lats[0], lats[1])},{min(lons[1], lons[3])},{min(lats[2], lats[3])}"


def test_a_small_area_in_a_large_scene_is_registered_on_the_ground_around_it(
    tmp_path: Path,
) -> None:
    """A 200 m area (400 px) holds too little of the waves: registered on itself, the shift came
    out 0.37 px off and `ok` on the benchmark pair. Measured on 1024 px around it, it is right."""
    before, after = pair(tmp_path, 1400, (3.0, -2.0))  # content moves by (-3, +2) px
    out = tmp_path / "out"
    res = CliRunner().invoke(
        cli,
        ["diff", str(before), str(after), "--aoi", aoi_lonlat(500, 500, 400), "--out", str(out)],
    )
    assert res.exit_code in (0, 3), res.output
    c = json.loads((out / "report.json").read_text())["coregistration"]
    assert c["status"] == "ok", c
    assert c["shift_x_px"] == pytest.approx(-3.0, abs=0.05)
    assert c["shift_y_px"] == pytest.approx(2.0, abs=0.05)


def test_the_neighbourhood_stays_on_the_grid_lattice_and_within_the_data(tmp_path: Path) -> None:
    before, after = pair(tmp_path, 1400, (0.0, 0.0))
    acq_b, acq_a = open_acquisition(before), open_acquisition(after)
    crs = CRS.from_epsg(32651)
    base = Grid(crs, Affine(RES, 0, ORIGIN[0], 0, -RES, ORIGIN[1]), 1400, 1400)

    # in the middle: 1024 px, the same margin on either side, the area's pixels unmoved
    grid = base.crop(500, 500, 400, 300)
    wide, row, col = context_grid(grid, acq_b, acq_a) or pytest.fail("no neighbourhood")
    assert (wide.height, wide.width) == (1024, 1024)
    assert (row, col) == (312, 362)
    assert wide.crop(row, col, grid.height, grid.width) == grid

    # near a corner: cut at the data's edge, still holding the area
    grid = base.crop(20, 1200, 300, 200)
    wide, row, col = context_grid(grid, acq_b, acq_a) or pytest.fail("no neighbourhood")
    assert wide.transform.c == ORIGIN[0] + 788 * RES and wide.transform.f == ORIGIN[1]
    assert (wide.height, wide.width, row, col) == (682, 612, 20, 412)
    assert wide.crop(row, col, grid.height, grid.width) == grid

    # wide enough already, or data cut to the area: measured as before
    assert context_grid(base.crop(0, 0, 1100, 1100), acq_b, acq_a) is None
    assert context_grid(base.crop(100, 100, 1300, 600), acq_b, acq_a) is None  # 1.5x the pixels
    assert context_grid(base.crop(600, 600, 400, 400), acq_b, acq_a, side=200) is None


def test_a_result_on_a_grid_is_given_on_its_sub_grid() -> None:
    """An affine model measured on the wide grid maps the sub-grid's pixels as it maps them
    there; its shift is the displacement at the sub-grid's centre."""
    model = Affine(1.001, 0.002, -3.5, -0.001, 0.999, 2.25)
    pts = (TiePoint(100.0, 50.0, -3.0, 2.0, 0.9, True),)
    res = CoregResult("tie-points-affine", "ok", 0.9, -3.0, 2.0, model, 1, 1, pts)
    sub = within(res, 300, 200, (400, 500))
    assert sub.model is not None
    for c, r in ((0.0, 0.0), (250.0, 200.0), (499.0, 399.0)):
        x, y = sub.model * (c, r)
        wx, wy = model * (c + 200, r + 300)
        assert (x, y) == pytest.approx((wx - 200, wy - 300), abs=1e-9)
    dx, dy = model * (450.0, 500.0)
    assert (sub.shift_x_px, sub.shift_y_px) == pytest.approx((dx - 450, dy - 500), abs=1e-9)
    assert (sub.points[0].col, sub.points[0].row) == (-100.0, -250.0)
    # a translation stays one, by the same amount
    moved = within(dataclasses.replace(res, model=Affine.translation(-3, 2)), 7, 9, (5, 5))
    assert moved.model_kind == "translation"
    assert (moved.shift_x_px, moved.shift_y_px) == pytest.approx((-3, 2))


def test_the_neighbourhood_keeps_to_the_tiles_the_area_lies_on(tmp_path: Path) -> None:
    """AFTER in two tiles, each possibly georeferenced on its own: an area on the west tile is
    measured on the west tile's ground only."""
    t = Affine(RES, 0, ORIGIN[0], 0, -RES, ORIGIN[1])
    img = waves(1400, (0, 0), 3)
    before = write_raster(tmp_path / "before_2019-02-16.tif", img, transform=t, nodata=0)
    tiles = tmp_path / "after"
    tiles.mkdir()
    write_raster(tiles / "west_2019-03-02.tif", img[:, :, :700], transform=t, nodata=0)
    east = t * Affine.translation(700, 0)
    write_raster(tiles / "east_2019-03-02.tif", img[:, :, 700:], transform=east, nodata=0)
    acq_b, acq_a = open_acquisition(before), open_acquisition(tiles)
    assert len(acq_a.sources) == 2
    base = Grid(CRS.from_epsg(32651), t, 1400, 1400)
    grid = base.crop(500, 200, 300, 300)
    wide, row, col = context_grid(grid, acq_b, acq_a) or pytest.fail("no neighbourhood")
    assert col == 200 and wide.width == 700  # the west tile's columns 0-700, not 1024
    assert (wide.height, row) == (1024, 362)
