"""With both dates' views known, a tall structure is found where they draw its roof, however far
beyond the footprint's tolerance that is: a tower leaning 14 m differently between the dates is
unchanged (its height read back from the lean), one that went is still removed and one that
came still appeared; views at nadir change no call."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from rasterio.crs import CRS

from sohae_watch.classify import classify_structures
from sohae_watch.grid import Grid
from sohae_watch.lean import lean_px, line_shifts, shift_heights
from sohae_watch.scene import Scene, ViewAngle
from sohae_watch.site import Structure
from towers import footprint, tower_scene

RES = 0.5
GRID = Grid.from_bounds(CRS.from_epsg(32651), (500000.0, 4390000.0, 500100.0, 4390100.0), RES)
BLOCK = (84, 88, 116, 112)  # rows r0:r1, cols c0:c1: a 16 m x 12 m footprint
HEIGHT = 24.0
# the satellite east of the site on the before date (roofs drawn west), south-south-west on the
# after date (roofs drawn north-north-east): a 24 m tower's roof 8.7 m west, then 8.7 m NNE
BEFORE, AFTER = ViewAngle(20.0, 90.0), ViewAngle(20.0, 200.0)


def _lean_m(view: ViewAngle) -> tuple[float, float]:
    east, north = view.lean()
    return HEIGHT * east, HEIGHT * north


def _scene(view: ViewAngle | None, seed: int) -> Scene:
    """Ground with texture and, unless ``view`` is None, a ``HEIGHT`` m tower seen from ``view``:
    its roof moved by its lean, the walls facing the satellite between footprint and roof."""
    if view is None:
        return tower_scene(GRID, BLOCK, None, seed)
    east, north = _lean_m(view)
    return tower_scene(GRID, BLOCK, (round(east / RES), round(-north / RES)), seed, walls=True)


def _structure() -> Structure:
    return footprint(GRID, BLOCK)


MASK = np.zeros(GRID.shape, np.uint8)


def _call(before: ViewAngle | None, after: ViewAngle | None, views: bool = True) -> dict:
    """The call on the tower seen from ``before`` and ``after`` (None: not there that date),
    with the views given to the classifier or not."""
    got = classify_structures(
        [_structure()],
        _scene(before, seed=1),
        _scene(after, seed=2),
        MASK,
        views=(BEFORE, AFTER) if views else (None, None),
    )[0]
    return got.to_dict()


def test_lean_in_pixels_is_east_columns_and_north_up_rows() -> None:
    """Seen from the south (azimuth 180) 45 degrees off nadir, a point 1 m up is drawn 1 m north:
    two pixels up (-row) on a 0.5 m north-up grid; from the east, 1 m west: two columns left."""
    cols, rows = lean_px(GRID, ViewAngle(45.0, 180.0))
    assert abs(cols) < 1e-9 and rows == pytest.approx(-2.0)
    cols, rows = lean_px(GRID, ViewAngle(45.0, 90.0))
    assert cols == pytest.approx(-2.0) and abs(rows) < 1e-9


def test_line_shifts_step_every_pixel_and_read_back_their_height() -> None:
    """The heights searched reach every whole pixel along the longer lean, once, none at no lean;
    each shift's height is the one that draws it."""
    lb, la = lean_px(GRID, BEFORE), lean_px(GRID, AFTER)
    shifts = line_shifts(lb, la, 60.0)
    assert len(shifts) == len(np.unique(shifts, axis=0))
    assert not (np.abs(shifts).sum(axis=1) == 0).any()
    steps = np.abs(np.diff(shifts[np.argsort(shift_heights(shifts, lb, la))], axis=0)).max(axis=1)
    assert steps.max() <= 1
    heights = shift_heights(shifts, lb, la)
    assert heights.max() == pytest.approx(60.0, abs=0.5)
    assert len(line_shifts((0.0, 0.0), (0.0, 0.0), 60.0)) == 0


def test_a_tower_leaning_apart_between_known_views_is_unchanged() -> None:
    """The roof 8.7 m west on one date, 8.7 m north-north-east on the other (14 m apart): with the
    views, both outlines are found at one height (24 m) and the inside compared with itself;
    without them neither date shows the roof within the footprint's tolerance."""
    (bx, by), (ax, ay) = _lean_m(BEFORE), _lean_m(AFTER)
    apart = math.hypot(ax - bx, ay - by)
    assert apart > 10.0
    call = _call(BEFORE, AFTER)
    ev = call["evidence"]
    assert call["status"] == "unchanged", ev
    assert ev["outline_before"] > 0.8 and ev["outline_after"] > 0.8
    assert abs(ev["lean_height_m"] - HEIGHT) < 1.5
    assert abs(ev["outline_shift_between_dates_m"] - apart) < 1.0
    assert ev["pattern_change"] < 0.5
    blind = _call(BEFORE, AFTER, views=False)
    assert min(blind["evidence"]["outline_before"], blind["evidence"]["outline_after"]) < 0.6
    assert blind["confidence"] < 0.5 and "lean_height_m" not in blind["evidence"]


@pytest.mark.parametrize(
    ("before", "after", "want"), [(BEFORE, None, "removed"), (None, AFTER, "appeared")]
)
def test_a_tower_that_went_or_came_is_still_called_so_with_views_known(
    before: ViewAngle | None, after: ViewAngle | None, want: str
) -> None:
    """Outlined where its view draws it on one date, nothing on the other: the other date read
    where the same height puts it, not wherever the ground happens to show edges."""
    call = _call(before, after)
    assert call["status"] == want, call["evidence"]
    ev = call["evidence"]
    present, gone = (ev["outline_before"], ev["outline_after"])[:: 1 if before else -1]
    assert present > 0.8 and gone < 0.3
    # placed by one date alone, the lowest height that outlines it (a pixel of lean is 1.4 m)
    assert abs(ev["lean_height_m"] - HEIGHT) < 3.0


def test_views_at_nadir_change_no_call() -> None:
    """Both dates seen straight down: the call and every number in it as with the views unknown
    (the line searched is empty), the height only said to be unknown."""
    nadir = ViewAngle(0.0, 123.0)
    scenes = _scene(ViewAngle(0.0, 0.0), seed=1), _scene(ViewAngle(0.0, 0.0), seed=2)
    blind, seen = (
        classify_structures([_structure()], *scenes, MASK, views=v)[0]
        for v in ((None, None), (nadir, nadir))
    )
    assert math.isnan(seen.evidence["lean_height_m"])
    rest = {k: v for k, v in seen.evidence.items() if k != "lean_height_m"}
    assert dataclasses.replace(seen, evidence=rest).to_dict() == blind.to_dict()
    assert blind.status == "unchanged"


def test_another_tower_on_the_line_is_not_the_listed_structure_come_or_gone() -> None:
    """The listed structure stands on neither date. Another tower of its shape stands on both:
    on the before date its roof is drawn where the listed one's would be at 48 m, on the after
    date where its own 24 m draws it. The one-date search found that roof on the before date and
    called the listed structure removed; the after date shows it where its view draws a roof
    found there at some height, so it is another structure, and nothing is called."""
    lb, la = lean_px(GRID, BEFORE), lean_px(GRID, AFTER)
    base = (round(HEIGHT * lb[0]), round(HEIGHT * lb[1]))  # the other tower's base, px from BLOCK
    r0, c0, r1, c1 = BLOCK
    other = (r0 + base[1], c0 + base[0], r1 + base[1], c1 + base[0])
    drawn = [(round(HEIGHT * x), round(HEIGHT * y)) for x, y in (lb, la)]
    before = tower_scene(GRID, other, drawn[0], seed=1, walls=True)
    after = tower_scene(GRID, other, drawn[1], seed=2, walls=True)
    call = classify_structures([_structure()], before, after, MASK, views=(BEFORE, AFTER))[0]
    assert call.status == "unchanged", call.evidence
    assert max(call.evidence["outline_before"], call.evidence["outline_after"]) < 0.5
