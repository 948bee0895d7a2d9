"""Where two known views draw a structure's roof: its outline searched along the one line the
geometry allows.

A point h m up is drawn h tan(off-nadir) away from the satellite, its base in place
(:meth:`sohae_watch.scene.ViewAngle.lean`). With both dates' views known, a structure of height
h has its roof drawn at ``e + h * lean_before`` on the before date and at ``e + h * lean_after``
on the after date, ``e`` the footprint's own error (within the footprint tolerance). The search
within the tolerance (:func:`sohae_watch.footprint.lean_offsets`) lets each date sit at its own
offset there, so it finds a roof leaning up to the tolerance on either date, no farther: a 40 m
tower seen 30 degrees off nadir leans 23 m. One shared height reaches it at whatever lean while
adding a single parameter to the footprint's error: the pairs of positions it allows are about
as many as the pairs within the tolerance :func:`~sohae_watch.footprint.lean_offsets` already
weighs, so the chance of a fit by chance stays about the same. A wide search of each date's
position on its own would allow a chance fit on either date anywhere within tens of metres.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from sohae_watch.footprint import (
    EdgeImage,
    OutlineFit,
    Side,
    above_chance_all,
    coverages,
    lean_fit,
    outline_coverages,
)
from sohae_watch.grid import Grid
from sohae_watch.scene import ViewAngle

# the tallest structure the views' line is searched to (m): Sohae's gantry tower is about 50 m
TALLEST_M = 60.0

Lean = tuple[float, float]  # pixels (columns, rows) a point 1 m up is drawn from its base


def lean_px(grid: Grid, view: ViewAngle) -> Lean:
    """Where ``grid`` draws a point 1 m up relative to its base on a date seen from ``view``, in
    pixels (columns, rows): the view's lean in metres east and north through the grid's
    transform (north is -row on a north-up grid)."""
    east, north = view.lean()
    mx, my = grid.metres_per_unit()
    inv = ~grid.transform
    ux, uy = east / mx, north / my
    return inv.a * ux + inv.b * uy, inv.d * ux + inv.e * uy


def lean_reach_m(before: ViewAngle | None, after: ViewAngle | None) -> float:
    """How far (m) the views draw the roof of a ``TALLEST_M`` structure from its base on the
    date that leans more; 0 unless both views are known (nothing is searched then)."""
    if before is None or after is None:
        return 0.0
    return TALLEST_M * max(math.hypot(*before.lean()), math.hypot(*after.lean()))


def line_shifts(lean_before: Lean, lean_after: Lean, tallest_m: float) -> np.ndarray:
    """The distinct whole-pixel shifts (before dx, dy, after dx, dy) at which the dates draw a roof
    between 0 and ``tallest_m`` up, except none (the tolerance's own search has it), as an
    (n, 4) array.

    Heights are stepped half a pixel of the longer lean apart, so no whole pixel is skipped."""
    reach = tallest_m * max(math.hypot(*lean_before), math.hypot(*lean_after))
    if reach < 0.5:
        return np.zeros((0, 4), np.int64)
    h = np.linspace(0.0, tallest_m, int(math.ceil(2 * reach)) + 1)
    shifts = np.rint(np.outer(h, [*lean_before, *lean_after])).astype(np.int64)
    shifts = np.unique(shifts, axis=0)
    return shifts[np.abs(shifts).sum(axis=1) > 0]


def shift_heights(shifts: np.ndarray, lean_before: Lean, lean_after: Lean) -> np.ndarray:
    """The height (m) that best explains each row of whole-pixel ``shifts`` (least squares over
    both dates' leans)."""
    lean = np.asarray([*lean_before, *lean_after], np.float64)
    return np.asarray(shifts @ lean / max(float(lean @ lean), 1e-12))


def _at(
    edges: EdgeImage, sides: Sequence[Side], where: np.ndarray, typical: float | None
) -> tuple[np.ndarray, np.ndarray]:
    """Raw outline coverage and edge strength (:func:`edge_strengths`) at each row (dx, dy) of
    ``where``, each distinct position measured once."""
    uniq, inverse = np.unique(where, axis=0, return_inverse=True)
    cov = outline_coverages(edges, sides, [(int(x), int(y)) for x, y in uniq], typical)
    strength = edge_strengths(edges, sides, uniq)
    return np.asarray(cov[inverse.ravel()]), np.asarray(strength[inverse.ravel()])


def edge_strengths(edges: EdgeImage, sides: Sequence[Side], where: np.ndarray) -> np.ndarray:
    """The mean gradient across the outline moved by each row (dx, dy) of ``where``, at the
    outline's own pixels only (valid ones; 0 where none is).

    The coverage takes an edge a pixel either side of the outline, so a roof's coverage is
    the same over a few pixels of position; on the line that is a few metres of height, and
    the two dates put that far apart compare a roof's inside with a shifted copy of itself.
    The gradient right on the outline peaks where the outline sits on the roof's edges."""
    h, w = edges.gx.shape
    dx, dy = where[:, :1], where[:, 1:]
    total = np.zeros(len(where))
    count = np.zeros(len(where))
    for s in sides:
        c = np.floor(s.x + dx).astype(int)
        r = np.floor(s.y + dy).astype(int)
        inside = (c >= 0) & (c < w) & (r >= 0) & (r < h)
        c, r = np.clip(c, 0, w - 1), np.clip(r, 0, h - 1)
        ok = inside & edges.valid[r, c]
        across = np.abs(edges.gx[r, c] * s.nx + edges.gy[r, c] * s.ny)
        total += np.where(ok, across, 0.0).sum(axis=1) * s.length / s.x.size
        count += ok.sum(axis=1) * s.length / s.x.size
    return np.where(count > 0, total / np.maximum(count, 1e-12), 0.0)


def _sharpest(score: np.ndarray, step: float, strength: np.ndarray, gap: np.ndarray) -> int:
    """Of the pairs scoring within ``step`` of the best, the one whose outlines sit on the
    strongest edges (``strength``), then the least footprint error (``gap``)."""
    near = score >= score.max() - step
    sharp = np.where(near, strength, -np.inf)
    pick = np.flatnonzero(sharp >= sharp.max() - 1e-9 * abs(sharp.max()))
    return int(pick[np.argmin(gap[pick])])


def _drawn_on_other(
    other: EdgeImage,
    sides: Sequence[Side],
    found: np.ndarray,
    lean_seen: Lean,
    lean_other: Lean,
    typical: float | None,
    chance: float,
    present: float,
    tallest_m: float = TALLEST_M,
) -> bool:
    """Whether ``other`` (a date) outlines, at least ``present`` beyond ``chance``, the roof
    another date outlines at ``found`` (dx, dy px from the footprint), where its view would
    draw a structure of any height up to ``tallest_m`` standing on both dates: at
    ``found + h * (lean_other - lean_seen)``."""
    diff = (lean_other[0] - lean_seen[0], lean_other[1] - lean_seen[1])
    shifts = line_shifts((0.0, 0.0), diff, tallest_m)[:, 2:]
    where = np.unique(np.vstack([np.zeros((1, 2), np.int64), shifts]), axis=0) + found
    cov = outline_coverages(other, sides, [(int(x), int(y)) for x, y in where], typical)
    return bool((np.nan_to_num(above_chance_all(cov, chance), nan=-1.0) >= present).any())


def view_offsets(
    before: EdgeImage,
    after: EdgeImage,
    sides: Sequence[Side],
    tol_px: int,
    ring: np.ndarray | None,
    standing: float,
    present: float,
    leans: tuple[Lean, Lean],
    tallest_m: float = TALLEST_M,
) -> OutlineFit:
    """:func:`sohae_watch.footprint.lean_offsets`, with the outlines also searched where the
    dates' known views draw a roof up to ``tallest_m`` high (``leans``: each date's
    :func:`lean_px`): the before outline at ``e + h * leans[0]``, the after one at
    ``e + h * leans[1]``, for every footprint error ``e`` within ``tol_px`` and height ``h``.

    The same two steps as within the tolerance, with the same chance levels, and one more
    condition: an outline found on the line beyond the tolerance must be as clear as that of
    a structure that clearly stands (coverage beyond chance at least ``present``), not only
    at the level of one that stood throughout (``standing``), as the line reaches tens of
    metres of ground with other edges than the footprint's ring, other structures' roofs
    among them. A structure so outlined on both dates at one height is taken there when that
    outlines both better (summed coverage, by more than a sample point of the outline) than
    the tolerance's own search does. Outlined so on one date only, nowhere both (a structure
    that came or went), the line is searched for that date's outline alone, and taken when
    it outlines that date better than the tolerance's shared fit does: a date outlined within
    the tolerance stays where it is found, not moved by the line. The other date is read
    where the same footprint error and height put it, never at a place of its own and never
    chosen for its own coverage (where the clearer date barely leans, every height places it
    alike), so a structure that came or went is not found on the other date by a chance fit.
    Of the pairs as well outlined as the best, the one whose outlines sit on the strongest
    edges (:func:`edge_strengths`), then the least footprint error. Where the line adds
    nothing, the tolerance's fit unchanged."""
    within = coverages(before, after, sides, tol_px, ring)
    offsets, (tb, ta) = within.offsets, (within.typical_before, within.typical_after)
    kb, ka = within.chance_before, within.chance_after
    base = lean_fit(within, sides, standing)
    shifts = line_shifts(*leans, tallest_m)
    if not len(shifts):
        return base
    e = np.asarray(offsets, np.int64)
    pb = (shifts[:, None, :2] + e[None]).reshape(-1, 2)
    pa = (shifts[:, None, 2:] + e[None]).reshape(-1, 2)
    heights = np.repeat(shift_heights(shifts, *leans), len(e))
    gap = np.tile((e**2).sum(axis=1), len(shifts))
    (raw_b, strong_b), (raw_a, strong_a) = _at(before, sides, pb, tb), _at(after, sides, pa, ta)
    beyond_b, beyond_a = above_chance_all(raw_b, kb), above_chance_all(raw_a, ka)
    step = 2.0 / sum(s.x.size for s in sides)
    base_both = base.before + base.after if min(base.before, base.after) >= standing else -np.inf
    # found beyond the tolerance, an outline must be as clear as that of a structure that
    # clearly stands: the line reaches ground with other edges than the footprint's ring, and
    # other structures' roofs
    ok = (np.nan_to_num(beyond_b, nan=-1.0) >= present) & (
        np.nan_to_num(beyond_a, nan=-1.0) >= present
    )
    if ok.any() or math.isfinite(base_both):
        score = np.where(ok, beyond_b + beyond_a, -np.inf)
        if not score.max() > base_both + step:
            return base
        k = _sharpest(score, step, strong_b / before.typical + strong_a / after.typical, gap)
    else:
        # the clearer date alone places the pair: the other's coverage, free to move along
        # the line wherever the clearer date's lean is small, would be a fit by chance
        clearer = np.fmax(beyond_b, beyond_a)
        seen = np.isfinite(raw_b) & np.isfinite(raw_a) & (clearer >= present)
        score = np.where(seen, clearer, -np.inf)
        if not score.max() > np.nanmax([base.before, base.after, 0.0]) + step:
            return base
        on_b = np.nan_to_num(beyond_b) >= np.nan_to_num(beyond_a)
        k = _sharpest(score, step, np.where(on_b, strong_b, strong_a), gap)
        # a roof found on one date that the other date shows where its own view draws that
        # roof, at some height, is another structure standing on both dates
        other = after if on_b[k] else before
        found, lean_seen, lean_other = (
            (pb[k], leans[0], leans[1]) if on_b[k] else (pa[k], leans[1], leans[0])
        )
        typical, chance = (ta, ka) if on_b[k] else (tb, kb)
        if _drawn_on_other(other, sides, found, lean_seen, lean_other, typical, chance, present):
            return base
    (dx, dy), (ax, ay) = pb[k], pa[k]
    return OutlineFit(
        int(dx),
        int(dy),
        float(raw_b[k]),
        float(raw_a[k]),
        kb,
        ka,
        int(ax - dx),
        int(ay - dy),
        float(heights[k]),
    )
