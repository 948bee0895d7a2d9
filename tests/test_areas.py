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
