"""Change areas found window by window are the areas of the whole result."""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine
from rasterio.crs import CRS
from scipy import ndimage as ndi

from sohae_watch.areas import ChangeArea, change_areas_on, classify_change, join_pieces
from sohae_watch.change import ChangeResult
from sohae_watch.grid import Grid
from sohae_watch.stream import tiles


def _result(n: int, seed: int) -> ChangeResult:
    """Blobs of change of every size (some under the floor, some only 8-connected), scores and
    typing evidence that vary inside each blob."""
    rng = np.random.default_rng(seed)
    noise = ndi.gaussian_filter(rng.standard_normal((n, n)), 3)
    mask = (noise > 0.12).astype(np.uint8)
    mask[rng.random((n, n)) < 0.002] = 1  # single pixels: under the floor alone
    mask[np.arange(40, 80), np.arange(40, 80)] = 1  # a diagonal line: 8-connected only
    mask[:, 150:153][rng.random((n, 3)) < 0.1] = 255  # not observable
    magnitude = (3.0 + rng.random((n, n)) * 4).astype(np.float32)
    magnitude[mask == 255] = np.nan
    layers = {
        "brightness": (rng.standard_normal((n, n)) + noise * 20).astype(np.float32),
        "structure": (rng.standard_normal((n, n)) - noise * 15).astype(np.float32),
        "ndvi_before": rng.random((n, n)).astype(np.float32) * 0.6,
        "ndvi_after": rng.random((n, n)).astype(np.float32) * 0.4,
    }
    return ChangeResult(magnitude, mask, 3.0, mask != 255, {}, layers)


def _crop(res: ChangeResult, rows: slice, cols: slice) -> ChangeResult:
    return ChangeResult(
        res.magnitude[rows, cols],
        res.mask[rows, cols],
        res.threshold,
        res.observable[rows, cols],
        {},
        {k: v[rows, cols] for k, v in res.layers.items()},
    )


@pytest.mark.parametrize(("px_m", "side"), [(10.0, 64), (0.5, 97), (10.0, 300)])
def test_areas_joined_across_windows_are_the_whole_results(px_m: float, side: int) -> None:
    n = 300
    grid = Grid(CRS.from_epsg(32651), Affine(px_m, 0, 400000, 0, -px_m, 4400000), n, n)
    res = _result(n, 7)
    floor = 4 * px_m * px_m  # the blobs are tens of pixels at either pixel size

    def order(areas: list[ChangeArea]) -> list[ChangeArea]:  # areas of equal size: by score
        return sorted(areas, key=lambda a: (-a.area_m2, round(a.mean_magnitude, 9)))

    whole = order(change_areas_on(res, grid, min_area_m2=floor))
    assert len(whole) > 20
    pieces = []
    for t in tiles(grid.shape, 0, side):
        rows, cols = slice(t.row, t.row + t.height), slice(t.col, t.col + t.width)
        window = grid.crop(t.row, t.col, t.height, t.width)
        pieces += change_areas_on(_crop(res, rows, cols), window, min_area_m2=floor, window=True)
    joined = join_pieces(pieces)
    # in the same order as the whole result's (largest first, then from the top)
    assert [(a.area_m2, a.change_type) for a in joined] == [
        (a.area_m2, a.change_type) for a in change_areas_on(res, grid, min_area_m2=floor)
    ]
    joined = order(joined)
    assert [a.area_m2 for a in joined] == [a.area_m2 for a in whole]
    assert all(a.piece is None for a in joined)
    for got, want in zip(joined, whole, strict=True):
        assert got.change_type == want.change_type
        assert got.mean_magnitude == pytest.approx(want.mean_magnitude, rel=1e-12)
        assert got.confidence == pytest.approx(want.confidence, rel=1e-12)
        # the same pixels, simplified to a pixel either way (from rings that start elsewhere)
        assert got.geometry.hausdorff_distance(want.geometry) <= px_m


def test_a_window_alone_keeps_its_small_areas_away_from_its_border() -> None:
    n = 300
    grid = Grid(CRS.from_epsg(32651), Affine(10.0, 0, 400000, 0, -10.0, 4400000), n, n)
    res = _result(n, 7)
    closed = change_areas_on(res, grid, window=True)
    assert any(a.piece is not None for a in closed)  # blobs at the border wait to be joined
    assert [a.area_m2 for a in join_pieces(closed)] == [
        a.area_m2 for a in change_areas_on(res, grid)
    ]


def test_areas_of_one_size_come_from_the_top_then_the_left_whatever_the_windows() -> None:
    n = 120
    grid = Grid(CRS.from_epsg(32651), Affine(10.0, 0, 400000, 0, -10.0, 4400000), n, n)
    mask = np.zeros((n, n), np.uint8)
    corners = [(r, c) for r in range(5, n - 5, 17) for c in range(7, n - 5, 13)]
    for r, c in corners:  # squares of 3 x 3, some across the 40 px windows' borders
        mask[r : r + 3, c : c + 3] = 1
    res = ChangeResult(np.full((n, n), 5.0, np.float32), mask, 3.0, mask != 255, {}, {})
    whole = change_areas_on(res, grid)
    pieces = []
    for t in tiles(grid.shape, 0, 40):
        rows, cols = slice(t.row, t.row + t.height), slice(t.col, t.col + t.width)
        window = grid.crop(t.row, t.col, t.height, t.width)
        pieces += change_areas_on(_crop(res, rows, cols), window, window=True)
    assert sum(p.piece is not None for p in pieces) > 4
    for areas in (whole, join_pieces(pieces)):
        assert len(areas) == len(corners)
        tops_lefts = [(-a.geometry.bounds[3], a.geometry.bounds[0]) for a in areas]
        assert tops_lefts == sorted(tops_lefts)


def test_a_roof_on_a_lawn_is_no_vegetation_change() -> None:
    """An area green on both dates in the mean (NDVI above 0.3) is vegetation change, unless
    its texture changed as a structure's does and it was green all over on the date without
    the structure but not on the date with it: a roof that came on a lawn takes a third of its
    change area, and the grass around it keeps the mean green. Shares (BEFORE, AFTER)."""
    lawn = {"ndvi_before": 0.6, "ndvi_after": 0.45}
    assert classify_change(0.5, 2.0, green=(0.97, 0.65), **lawn) == "new_structure"
    assert classify_change(0.5, -2.0, green=(0.65, 0.97), **lawn) == "removed_structure"
    assert classify_change(0.5, 2.0, green=(0.97, 0.97), **lawn) == "vegetation"  # mown grass
    # trees whose shadows moved: part not green on both dates
    assert classify_change(0.5, 2.0, green=(0.65, 0.7), **lawn) == "vegetation"
    # a texture that came where the green went: not a roof on a lawn
    assert classify_change(0.5, 2.0, green=(0.65, 0.97), **lawn) == "vegetation"
    assert classify_change(0.5, 0.3, green=(0.97, 0.6), **lawn) == "vegetation"  # no texture
    assert classify_change(0.5, 2.0, green=None, **lawn) == "vegetation"  # shares unknown
    # green on one date only, the texture unchanged: a crop harvested (as before)
    assert classify_change(-1.5, 0.2, 0.6, 0.1, green=(1.0, 0.0)) == "vegetation"


def _mask_result(mask: np.ndarray) -> ChangeResult:
    magnitude = np.where(mask == 1, 5.0, 1.0).astype(np.float32)
    return ChangeResult(magnitude, mask.astype(np.uint8), 3.0, np.ones(mask.shape, bool), {})


def test_small_areas_at_10m_keep_their_area_and_are_valid() -> None:
    """At 10 m a one-pixel simplification made a 6-pixel L a triangle of a third of its area,
    and pixels touching only at a corner gave a ring pinched at that vertex (invalid in QGIS
    and GEOS). Every outline is now valid and within 5 % of the area its pixels report."""
    grid = Grid(CRS.from_epsg(32651), Affine(10.0, 0, 400000, 0, -10.0, 4400000), 40, 40)
    mask = np.zeros((40, 40), np.uint8)
    mask[2:5, 2:4] = 1  # an L of 6 pixels
    mask[4, 4] = 1
    mask[10:14, 10:14] = 1  # two squares meeting at one corner
    mask[14:18, 14:18] = 1
    mask[20:30, 20:30] = 1  # a square with a corner-touching hole
    mask[22, 22] = 0
    mask[23, 23] = 0
    for y, x in zip(*np.nonzero(ndi.binary_dilation(np.eye(12, dtype=bool)[::-1])), strict=True):
        mask[26 + y % 12, 2 + x % 12] = 1  # a staircase
    areas = change_areas_on(_mask_result(mask), grid, min_area_m2=400.0)
    assert len(areas) == 4
    for a in areas:
        assert a.geometry.is_valid
        assert a.geometry.area == pytest.approx(a.area_m2, rel=0.05)
    pinched = next(a for a in areas if a.area_m2 == 3200.0)
    assert pinched.geometry.geom_type == "MultiPolygon"


def test_simplification_still_drops_staircase_corners_where_area_allows() -> None:
    grid = Grid(CRS.from_epsg(32651), Affine(1.0, 0, 400000, 0, -1.0, 4400000), 200, 200)
    yy, xx = np.mgrid[0:200, 0:200]
    mask = ((xx - 100) ** 2 / 80**2 + (yy - 100) ** 2 / 50**2 < 1).astype(np.uint8)
    (area,) = change_areas_on(_mask_result(mask), grid)
    traced = 4 * int(mask.sum())  # a corner per boundary pixel, about: far more than kept
    assert len(area.geometry.exterior.coords) < traced / 8
    assert area.geometry.area == pytest.approx(area.area_m2, rel=0.05)
