"""Snow that came or went is not structure change (issue 5), on synthetic scenes with known truth.

Patchy snow breaks the ground into small bright patches whose borders cross any line drawn over
it: an outline drawn on an empty footprint then finds edges along much of its length. A flat
roof whose cells hold a fine two-tone lattice has a cell median that flips between the two tones
with blur or resampling. Neither is a structure appearing, going or being rebuilt.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
from scipy import ndimage
from shapely.geometry import box, shape

from sohae_watch.classify import classify_structures
from sohae_watch.footprint import (
    EdgeImage,
    chance_coverage,
    footprint_px,
    footprint_sides,
    gradient_levels,
    pattern_change,
)
from sohae_watch.scene import Scene, SunPosition
from sohae_watch.site import Structure
from test_classify_evidence import BLOCK, GRID, GROUND, SNOW, _footprint

ROOF = (0.07, 0.08, 0.10, 0.12)  # dark tar paper
SUN = SunPosition(160.0, 35.0)


def _structure() -> Structure:
    r0, c0, r1, c1 = BLOCK
    x0, y0 = GRID.transform @ (c0, r1)
    x1, y1 = GRID.transform @ (c1, r0)
    return Structure("block", "block", shape(GRID.geometry_to_lonlat(box(x0, y0, x1, y1))))


def _snow_patches(seed: int, cover: float) -> np.ndarray:
    """Snow lying in patches of about a metre over ``cover`` of the ground."""
    field = ndimage.gaussian_filter(np.random.default_rng(seed).standard_normal(GRID.shape), 0.7)
    return np.asarray(field > np.quantile(field, 1.0 - cover))


def _scene(
    *, standing: bool, snow: float = 0.0, seed: int = 0, gain: float = 1.0, offset: float = 0.0
) -> Scene:
    """Soil with ``snow`` of it under patchy snow and, when ``standing``, a grey block with its
    shadow; 4 bands in digital numbers, slightly blurred as a sensor would."""
    rng = np.random.default_rng(seed)
    tex = 1.0 + 0.05 * rng.standard_normal((1, *GRID.shape))
    refl = np.asarray(GROUND, np.float32)[:, None, None] * tex
    if snow > 0:
        patches = _snow_patches(seed + 100, snow)
        refl[:, patches] = np.asarray(SNOW, np.float32)[:, None] * tex[:, patches]
    fp = _footprint()
    if standing:
        shadow = np.zeros_like(fp)
        r0, c0, _, c1 = BLOCK
        shadow[r0 - 14 : r0, c0 - 4 : c1 - 4] = True  # north and a little west: sun from SSE
        refl[:, shadow & ~fp] *= 0.3
        refl[:, fp] = np.asarray(ROOF, np.float32)[:, None] * tex[:, fp]
    for b in range(refl.shape[0]):
        refl[b] = ndimage.gaussian_filter(refl[b], 0.55)
    data = (offset + gain * 10000.0 * refl).astype(np.float32)
    data += rng.normal(0.0, 30.0, data.shape).astype(np.float32)
    valid = np.ones(GRID.shape, bool)
    return Scene(data, valid, ("red", "green", "blue", "nir"), GRID, dt.date(2024, 1, 1), sun=SUN)


def _call(before: Scene, after: Scene) -> tuple[str, dict[str, float]]:
    """The block's call; each date's gradient levels are those of a whole scene in which snow
    covers little, as the pipeline measures them (a window around one footprint is mostly snow)."""
    mask = np.zeros(GRID.shape, np.uint8)
    levels = gradient_levels(_scene(standing=False, seed=99))
    call = classify_structures([_structure()], before, after, mask, levels=(levels, levels))[0]
    return call.status, dict(call.evidence)


def test_patchy_snow_gives_an_outline_by_chance_that_proves_nothing() -> None:
    """On patchy snow an outline anywhere crosses patch borders along much of its length; that
    chance level is measured on the ground around the footprint, plain ground gives about none."""
    sides = footprint_sides(footprint_px(GRID, GRID.geometry_from_lonlat(
        _structure().geometry.__geo_interface__)))  # fmt: skip
    ring = ndimage.binary_dilation(_footprint(), iterations=24) & ~ndimage.binary_dilation(
        _footprint(), iterations=8
    )
    levels = gradient_levels(_scene(standing=False, seed=99))
    snowy = EdgeImage.of(_scene(standing=False, snow=0.4, seed=1), levels)
    plain = EdgeImage.of(_scene(standing=False, seed=2), levels)
    assert chance_coverage(snowy, sides, ring, snowy.local_typical(ring)) > 0.3
    assert chance_coverage(plain, sides, ring, plain.local_typical(ring)) < 0.1


def test_empty_footprint_under_melting_snow_is_unchanged() -> None:
    """Nothing stands on the footprint on either date; patchy snow lies on the first date only
    (the seed-53 failure: called ``removed`` as the snow melted)."""
    for seed in range(3):
        status, ev = _call(
            _scene(standing=False, snow=0.4, seed=10 + seed, gain=1.1, offset=200.0),
            _scene(standing=False, seed=20 + seed),
        )
        assert status == "unchanged", ev
        # and the other way round: snow that came is not a structure built
        status, ev = _call(
            _scene(standing=False, seed=30 + seed),
            _scene(standing=False, snow=0.4, seed=40 + seed, gain=0.9, offset=100.0),
        )
        assert status == "unchanged", ev


def test_block_through_patchy_snow_is_unchanged_and_its_removal_is_seen() -> None:
    """Discounting chance edges must not hide a structure that stands on snow, nor its removal."""
    for seed in range(3):
        status, ev = _call(
            _scene(standing=True, snow=0.4, seed=50 + seed), _scene(standing=True, seed=60 + seed)
        )
        assert status == "unchanged", ev
        status, ev = _call(
            _scene(standing=True, snow=0.4, seed=70 + seed), _scene(standing=False, seed=80 + seed)
        )
        assert status == "removed", ev


def _lattice_roof(phase: int, seed: int) -> np.ndarray:
    """A 3-band roof stack: the north half plain, the south half a fine lattice of bright bars and
    dark gaps. In the red band the bars cover a little more (``phase`` 0) or a little less (1)
    than half of the lattice: how blur and resampling left the mixed pixels of one band."""
    rng = np.random.default_rng(seed)
    r0, _, r1, _ = BLOCK
    mid = (r0 + r1) // 2
    rows, cols = np.mgrid[0 : GRID.shape[0], 0 : GRID.shape[1]]
    wide = ((rows % 4) < 2) | ((cols % 4) < 1)  # 5/8 of the pixels: bars
    narrow = ((rows % 4) < 1) | ((cols % 4) < 1)  # 7/16: gaps in the majority
    bands = []
    for k, bars in ((1.0, narrow if phase else wide), (1.03, wide), (1.06, wide)):
        img = np.full(GRID.shape, 2500.0)
        img[mid:r1] = np.where(bars, 3300.0, 1100.0)[mid:r1]
        bands.append(k * (img + rng.normal(0.0, 30.0, img.shape)))
    return np.stack(bands).astype(np.float32)


def test_a_fine_lattice_flipping_its_majority_tone_is_not_modification() -> None:
    """The seed-51 failure: in one band a lattice cell's median jumped from a gap to a bar value
    between two unchanged dates, so the cell seemed reordered; the other bands kept its order."""
    fp = _footprint()
    same = pattern_change(_lattice_roof(0, 1), _lattice_roof(1, 2), fp)
    assert same < 1.0
    # half the roof replaced by a brighter one is still a modification
    rebuilt = _lattice_roof(0, 3)
    r0, c0, r1, c1 = BLOCK
    rebuilt[:, r0 : (r0 + r1) // 2, c0:c1] *= 1.6
    assert pattern_change(_lattice_roof(0, 1), rebuilt, fp) > 1.0
