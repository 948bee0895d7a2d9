"""A haze or cloud shadow whose soft edge crosses an unchanged structure is no modification.

Each scene is 0.5 m textured ground with a ridged roof in the middle; the after date is another
acquisition of the same (another gain, other noise) with a veil over the west part of the
window, edge crossing the roof. The truth is known by construction: the roof is unchanged unless
a part of it is re-roofed in another colour.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from rasterio.crs import CRS
from scipy import ndimage
from shapely.geometry import box, shape

from sohae_watch.classify import classify_structures
from sohae_watch.grid import Grid
from sohae_watch.scene import Scene
from sohae_watch.site import Structure
from sohae_watch.veil import find_veil

RES = 0.5
GRID = Grid.from_bounds(CRS.from_epsg(32651), (500000.0, 4390000.0, 500060.0, 4390060.0), RES)
ROOF = (40, 35, 80, 85)  # rows r0:r1, cols c0:c1: a 20 m x 25 m roof
HAZE_LIGHT = np.array([9000.0, 9000.0, 9200.0, 8500.0])  # the light a haze adds, per band


def _image(seed: int, gain: float) -> np.ndarray:
    """Ground of varied brightness (patches a few metres across) and a two-tone ridged roof."""
    rng = np.random.default_rng(seed)
    patches = ndimage.gaussian_filter(np.random.default_rng(0).normal(size=GRID.shape), 4.0)
    ground = np.array([2900.0, 2950.0, 2800.0, 3200.0])[:, None, None]
    img = ground * np.clip(1.0 + 4.0 * patches, 0.3, None)[None]
    r0, c0, r1, c1 = ROOF
    img[:, r0:r1, c0:c1] = np.array([1200.0, 2400.0, 1900.0, 2500.0])[:, None, None]
    img[:, r0:r1:6, c0:c1] *= 1.5  # ridges
    img = img + rng.normal(0.0, 25.0, img.shape)
    return (gain * img).astype(np.float32)


def _veiled(img: np.ndarray, kind: str, edge_col: float, width_px: float) -> np.ndarray:
    """``img`` under a haze (half its light replaced by the haze's) or a cloud shadow (a quarter
    of the light kept) west of ``edge_col``, the soft edge ``width_px`` wide."""
    cols = np.arange(GRID.width, dtype=np.float64)[None, :].repeat(GRID.height, 0)
    t = np.clip((edge_col - cols) / width_px + 0.5, 0.0, 1.0)[None]
    if kind == "haze":
        return (img * (1 - 0.5 * t) + HAZE_LIGHT[:, None, None] * 0.5 * t).astype(np.float32)
    return (img * (1 - 0.75 * t)).astype(np.float32)


def _scene(data: np.ndarray, day: int) -> Scene:
    valid = np.ones(GRID.shape, bool)
    return Scene(data, valid, ("red", "green", "blue", "nir"), GRID, dt.date(2024, 1, day))


def _roof() -> Structure:
    r0, c0, r1, c1 = ROOF
    x0, y0 = GRID.transform * (c0, r1)
    x1, y1 = GRID.transform * (c1, r0)
    return Structure("roof", "roof", shape(GRID.geometry_to_lonlat(box(x0, y0, x1, y1))))


def _call(after: np.ndarray) -> tuple[str, float]:
    before = _scene(_image(1, 1.0), 1)
    mask = np.zeros(GRID.shape, np.uint8)
    call = classify_structures([_roof()], before, _scene(after, 2), mask)[0]
    return call.status, call.evidence["pattern_change"]


@pytest.mark.parametrize(
    ("kind", "width_px"), [("haze", 4.0), ("haze", 40.0), ("shadow", 4.0), ("shadow", 40.0)]
)
def test_a_veil_edge_across_an_unchanged_roof_is_no_modification(
    kind: str, width_px: float
) -> None:
    """The veiled third of the roof brightens or darkens and loses contrast, which reads as a
    reordered inside; the ground around went under the same veil, whose edge goes on across
    the outline, so the veil is taken off and the roof is unchanged."""
    after = _veiled(_image(2, 1.2), kind, 52.0, width_px)
    status, pattern = _call(after)
    assert status == "unchanged", pattern


def test_a_part_re_roofed_is_still_modified_under_clear_sky_and_under_a_veil() -> None:
    """The east half re-roofed in another colour: modified, with and without a haze edge across
    the west third."""
    after = _image(2, 1.2)
    r0, _, r1, c1 = ROOF
    after[:, r0:r1, 60:c1] *= np.array([0.5, 1.0, 1.6, 1.0], np.float32)[:, None, None]
    assert _call(after)[0] == "modified"
    assert _call(_veiled(after, "haze", 45.0, 4.0))[0] == "modified"


def test_the_veil_is_found_where_its_edge_runs() -> None:
    """The law and the edge of a haze are read off the ground: a vertical edge where it was
    laid, half the light passed."""
    before, after = _image(1, 1.0), _veiled(_image(2, 1.2), "haze", 52.0, 4.0)
    fp = np.zeros(GRID.shape, bool)
    r0, c0, r1, c1 = ROOF
    fp[r0:r1, c0:c1] = True
    ground = ndimage.binary_dilation(fp, iterations=20) & ~ndimage.binary_dilation(fp)
    veil = find_veil(before, after, fp, ground, RES)
    assert veil is not None
    cover = veil.cover(GRID.shape)
    assert abs(cover[60, 40] - cover[60, 64]) > 0.9  # either side may be called t = 1
    taken = veil.k[:3] if np.mean(veil.k[:3]) > 0 else -veil.k[:3] / (1 - veil.k[:3])
    assert np.allclose(taken, 0.5, atol=0.1)
