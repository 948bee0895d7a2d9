"""Cast-shadow and spectral evidence of the structure classifier, on synthetic footprints.

Each scene is 0.5 m ground with texture, a flat-roofed block in the middle and, when the sun is
given, the block's shadow cast away from it; the footprint is the block's outline.
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest
from rasterio.crs import CRS
from shapely.geometry import box, shape

from sohae_watch.classify import Evidence, classify_structures, decide
from sohae_watch.grid import Grid
from sohae_watch.scene import Scene, SunPosition
from sohae_watch.shadow import (
    away_from_sun,
    dark_share,
    estimate_azimuth,
    shadow_llr,
    vegetation_llr,
)
from sohae_watch.site import Structure

RES = 0.5
GRID = Grid.from_bounds(CRS.from_epsg(32651), (500000.0, 4390000.0, 500060.0, 4390060.0), RES)
BLOCK = (40, 50, 80, 70)  # rows r0:r1, cols c0:c1 -> a 20 m x 10 m block in the middle
GROUND = (0.19, 0.16, 0.12, 0.25)  # bare soil (red, green, blue, nir)
SNOW = (0.84, 0.86, 0.89, 0.70)
ROOF = (0.27, 0.28, 0.29, 0.31)  # grey metal
GRASS = (0.04, 0.085, 0.035, 0.42)
SUN = SunPosition(135.0, 40.0)  # south-east, 40 degrees up


def _footprint() -> np.ndarray:
    fp = np.zeros(GRID.shape, bool)
    r0, c0, r1, c1 = BLOCK
    fp[r0:r1, c0:c1] = True
    return fp


def _shadow(fp: np.ndarray, azimuth: float, length_px: int) -> np.ndarray:
    dc, dr = away_from_sun(azimuth)
    out = np.zeros_like(fp)
    rows, cols = np.nonzero(fp)
    for k in range(1, length_px + 1):
        r = np.clip(np.round(rows + k * dr).astype(int), 0, fp.shape[0] - 1)
        c = np.clip(np.round(cols + k * dc).astype(int), 0, fp.shape[1] - 1)
        out[r, c] = True
    return out & ~fp


def scene(
    *,
    standing: bool = True,
    sun: SunPosition | None = SUN,
    cast: bool = True,
    ground: tuple[float, ...] = GROUND,
    roof: tuple[float, ...] = ROOF,
    seed: int = 0,
    gain: float = 1.0,
    offset: float = 0.0,
) -> Scene:
    """A 4-band scene in digital numbers (gain and offset applied)."""
    rng = np.random.default_rng(seed)
    tex = 1.0 + 0.06 * rng.standard_normal((1, *GRID.shape))
    refl = np.asarray(ground, np.float32)[:, None, None] * tex
    fp = _footprint()
    if standing:
        if cast and sun is not None:
            length = int(round(10.0 / math.tan(math.radians(sun.elevation)) / RES))
            sh = _shadow(fp, sun.azimuth, length)
            refl[:, sh] *= 0.25
        refl[:, fp] = np.asarray(roof, np.float32)[:, None] * tex[:, fp]
    data = (offset + gain * 10000.0 * refl).astype(np.float32)
    valid = np.ones(GRID.shape, bool)
    return Scene(data, valid, ("red", "green", "blue", "nir"), GRID, dt.date(2024, 1, 1), sun=sun)


def test_shadow_is_found_on_the_side_away_from_the_sun() -> None:
    s = scene(sun=SunPosition(135.0, 40.0))  # sun in the south-east, shadow to the north-west
    img, fp = s.intensity(), _footprint()
    right = dark_share(img, s.valid, fp, 135.0, RES)
    wrong = dark_share(img, s.valid, fp, 315.0, RES)  # as if the sun were in the north-west
    assert right > 0.9
    assert wrong < 0.1
    assert shadow_llr(right) > 1.5 and shadow_llr(wrong) < -1.0


def test_no_shadow_without_a_structure_or_when_the_shadow_is_missing() -> None:
    bare = scene(standing=False)
    unlit = scene(cast=False)  # a roof without a cast shadow (e.g. overcast)
    for s in (bare, unlit):
        assert dark_share(s.intensity(), s.valid, _footprint(), 135.0, RES) < 0.1


def test_shadow_share_ignores_gain_offset_and_snow_and_follows_the_sun() -> None:
    """A shadow that moved with the sun, on snow, in other sensor units, is the same evidence."""
    winter = scene(sun=SunPosition(210.0, 25.0), ground=SNOW, gain=0.8, offset=300.0, seed=1)
    share = dark_share(winter.intensity(), winter.valid, _footprint(), 210.0, RES)
    assert share > 0.9
    bare_snow = scene(standing=False, ground=SNOW, seed=2)
    assert dark_share(bare_snow.intensity(), bare_snow.valid, _footprint(), 210.0, RES) < 0.1


def test_vegetation_over_the_footprint_is_evidence_against_a_roof() -> None:
    grass = scene(standing=False, ground=GRASS)
    share, llr = vegetation_llr(grass, _footprint())
    assert share > 0.95 and llr < -2.5
    roofed = scene(ground=GRASS)  # a grey roof in a meadow
    share, llr = vegetation_llr(roofed, _footprint())
    assert share < 0.05 and llr > -0.2
    for roof in ((0.11, 0.25, 0.19, 0.26), (0.13, 0.21, 0.32, 0.29)):  # green and blue roofs
        share, _ = vegetation_llr(scene(roof=roof, offset=200.0), _footprint())
        assert share < 0.05
    no_nir = Scene(grass.data[:3], grass.valid, ("red", "green", "blue"), GRID, grass.date)
    share, llr = vegetation_llr(no_nir, _footprint())
    assert math.isnan(share) and llr == 0.0


def test_sun_azimuth_is_estimated_from_where_shadows_fall() -> None:
    sun = SunPosition(150.0, 35.0)
    views = [(scene(sun=sun, seed=k), _footprint()) for k in range(2)]
    est = estimate_azimuth(views)
    assert est is not None and abs(est - 150.0) <= 20.0
    assert estimate_azimuth([(scene(standing=False), _footprint())]) is None


def _evidence(cb: float, ca: float, sb: float, sa: float, pattern: float = 0.2) -> Evidence:
    return Evidence(1.0, 0.0, cb, ca, pattern, 0.0, sb, sa, 0.0, 0.0)


def test_shadow_tips_a_weak_outline_change_but_never_makes_one() -> None:
    # outline 0.7 after (below PRESENT alone), 0.2 before: the shadow that came decides
    assert decide(_evidence(0.2, 0.7, 0.0, 1.0), min_observed=0.5)[0] == "appeared"
    assert decide(_evidence(0.2, 0.7, float("nan"), float("nan")), min_observed=0.5)[0] == (
        "unchanged"
    )
    # a dark band beside the footprint on both dates (a road, an unsnowed apron) tips nothing
    assert decide(_evidence(0.05, 0.7, 1.0, 1.0), min_observed=0.5)[0] == "unchanged"
    # a shadow that came or went with an unchanged outline is not structure change
    assert decide(_evidence(0.9, 0.9, 1.0, 0.0), min_observed=0.5)[0] == "unchanged"
    assert decide(_evidence(0.3, 0.35, 0.0, 1.0), min_observed=0.5)[0] == "unchanged"
    # a clear outline loss with its shadow gone: removed, confidently
    status, conf = decide(_evidence(0.95, 0.1, 1.0, 0.0), min_observed=0.5)
    assert status == "removed" and conf > 0.9


def test_vegetation_counts_against_presence() -> None:
    ev = Evidence(1.0, 0.0, 0.6, 0.6, 0.2, 0.0, float("nan"), float("nan"), 1.0, 0.0)
    assert ev.presence(0) < ev.presence(1) - 2.5


@pytest.mark.parametrize(
    ("after_kwargs", "want"),
    [
        (
            {"sun": SunPosition(200.0, 28.0), "ground": SNOW, "gain": 0.9, "offset": 150.0},
            "unchanged",
        ),
        ({"standing": False, "sun": SunPosition(200.0, 28.0), "ground": SNOW}, "removed"),
    ],
    ids=["shadow-moved-snow-came", "block-gone-snow-came"],
)
def test_classify_structures_with_sun_and_snow(after_kwargs: dict[str, object], want: str) -> None:
    """A block that stood through a change of sun and snow is unchanged; one that went is removed."""
    before = scene(sun=SunPosition(140.0, 55.0), seed=3)
    after = scene(seed=4, **after_kwargs)  # type: ignore[arg-type]
    mask = np.zeros(GRID.shape, np.uint8)
    call = classify_structures([_block_structure()], before, after, mask)[0]
    assert call.status == want, call.evidence
    assert call.evidence["shadow_before"] > 0.9


def _block_structure() -> Structure:
    r0, c0, r1, c1 = BLOCK
    x0, y0 = GRID.transform * (c0, r1)
    x1, y1 = GRID.transform * (c1, r0)
    return Structure("block", "block", shape(GRID.geometry_to_lonlat(box(x0, y0, x1, y1))))


def test_cloud_flag_over_a_sharply_outlined_footprint_is_overruled() -> None:
    """The change mask's 255 (cloud) is kept unless the outline is clear on both dates."""
    cloud = np.full(GRID.shape, 255, np.uint8)
    s = _block_structure()
    standing = classify_structures([s], scene(seed=5), scene(seed=6), cloud)[0]
    assert standing.status == "unchanged" and standing.observed_fraction == 1.0
    bare = classify_structures(
        [s], scene(standing=False, seed=5), scene(standing=False, seed=6), cloud
    )[0]
    assert bare.status == "obscured"


def test_chance_edges_gate_a_change_without_discounting_presence() -> None:
    nan = float("nan")
    # busy real ground around a new building (chance about 0.3): 0.81 measured after, 0.66
    # beyond chance, 0.2 before: it appeared (presence is on the measured scale)
    built = Evidence(1.0, 0.0, 0.05, 0.66, 0.2, 0.0, nan, nan, 0.0, 0.0, 0.2, 0.81)
    assert decide(built, min_observed=0.5)[0] == "appeared"
    # an empty footprint on patchy snow: 0.70 measured before but only 0.25 beyond the snow's
    # chance edges, a dark band beside it that melted away: no structure went
    snow = Evidence(1.0, 0.0, 0.25, 0.14, 0.2, 0.0, 1.0, 0.0, 0.0, 0.0, 0.70, 0.14)
    assert decide(snow, min_observed=0.5)[0] == "unchanged"
    # the same outlines beyond chance on clean ground are a removal
    clean = Evidence(1.0, 0.0, 0.70, 0.14, 0.2, 0.0, 1.0, 0.0, 0.0, 0.0, 0.70, 0.14)
    assert decide(clean, min_observed=0.5)[0] == "removed"


def test_a_footprint_a_few_pixels_across_is_not_judged() -> None:
    """A footprint 2 x 2 px across was called unchanged at 0.99 with no outline on either date,
    or removed at 0.72 where the structure was modified (the structure audit): there is no
    outline, shadow or inside to judge at that size. Under 3 of the coarser date's pixels
    across, the call is obscured and says why."""
    r0, c0 = BLOCK[:2]
    x0, y0 = GRID.transform * (c0, r0 + 2)
    tiny = Structure(
        "dot", "survey marker", shape(GRID.geometry_to_lonlat(box(x0, y0, x0 + 1, y0 + 1)))
    )
    before, after = scene(seed=5), scene(standing=False, seed=6)
    mask = np.zeros(GRID.shape, np.uint8)
    dot, block = classify_structures([tiny, _block_structure()], before, after, mask)
    assert dot.status == "obscured" and dot.event is None
    assert dot.summary == (
        "The survey marker could not be assessed: its footprint is 1 x 1 m, under 3 pixels of "
        "0.5 m across."
    )
    assert block.status == "removed"
    # the 10 m wide block seen by a 4 m sensor on one date: under 3 of its pixels across
    coarse = classify_structures([_block_structure()], before, after, mask, native_m=(0.5, 4.0))
    assert coarse[0].status == "obscured" and "pixels of 4 m" in coarse[0].summary
