"""A roof drawn a few pixels off on one date only (a tall structure seen from another off-nadir
view) is the same structure: outlined at its own place on each date, its inside compared with
itself, called unchanged; a structure that went is still removed."""

from __future__ import annotations

import numpy as np
from rasterio.crs import CRS

from sohae_watch.classify import classify_structures
from sohae_watch.grid import Grid
from sohae_watch.scene import Scene
from sohae_watch.site import Structure
from towers import footprint, tower_scene

RES = 0.5
GRID = Grid.from_bounds(CRS.from_epsg(32651), (500000.0, 4390000.0, 500060.0, 4390060.0), RES)
BLOCK = (40, 50, 80, 74)  # rows r0:r1, cols c0:c1: a 20 m x 12 m roof


def _scene(shift: tuple[int, int] | None, seed: int) -> Scene:
    """Ground with texture and, unless ``shift`` is None, the roof moved by ``shift`` (dx, dy) px."""
    return tower_scene(GRID, BLOCK, shift, seed)


def _structure() -> Structure:
    return footprint(GRID, BLOCK)


def test_a_roof_drawn_elsewhere_on_one_date_is_unchanged_and_a_removal_still_removed() -> None:
    mask = np.zeros(GRID.shape, np.uint8)
    before = _scene((0, 0), seed=1)
    # the roof 5 px east and 4 px south after (3.2 m: a 20 m tower seen 9 degrees off nadir)
    leaning = classify_structures([_structure()], before, _scene((5, 4), seed=2), mask)[0]
    assert leaning.status == "unchanged", leaning.evidence
    assert leaning.evidence["outline_before"] > 0.9 and leaning.evidence["outline_after"] > 0.9
    assert abs(leaning.evidence["outline_shift_between_dates_m"] - 3.2) < 0.6
    assert leaning.evidence["pattern_change"] < 0.5
    gone = classify_structures([_structure()], before, _scene(None, seed=2), mask)[0]
    assert gone.status == "removed", gone.evidence
    assert gone.evidence["outline_shift_between_dates_m"] == 0.0
