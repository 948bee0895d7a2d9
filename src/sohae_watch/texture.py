"""The texture of a footprint's inside, cell by cell, compared between two dates.

A roof whose vents, skylights or panels went (or came) while its tone stayed keeps the order of
its cells' brightness and its hue: :func:`sohae_watch.footprint.pattern_change`'s rank and hue
tests do not see it. What changes is the spread of the values within the cells that held the
texture. Spreads (P90 - P10, in the band's units) are free of an offset (haze); a gain scales
every cell alike, and is taken out as the median over the cells of the log ratio of the dates.

A texture is also where a misregistration shows first: a skylight strip moved by a pixel or two
leaves one cell for the next. AFTER is therefore first aligned on BEFORE inside the footprint (the
whole-pixel offset within :data:`ALIGN_PX` that correlates best), and each cell then takes the
best of the offsets within a pixel of that.
"""

from __future__ import annotations

import math

import numpy as np

ALIGN_PX = 3  # AFTER's whole-pixel offsets searched inside the footprint
CELL_SLACK_PX = 1  # ... and around that, cell by cell
# a cell's spread grew or shrank this many times more than the roof's as a whole: texture that
# came or went. Set at 2.5 (log 0.92) so that a date twice as noisy as the other, read on cells
# that are flat but for the noise, stays below (log 2 = 0.69)
TEXTURE_CHANGE = math.log(2.5)
MIN_VALUES = 4  # finite values a cell needs for a spread
# a spread is taken as at least this share of the footprint's level: a flat cell with no noise
# (saturated, or quantised to a few levels) would otherwise change "texture" by any factor
SPREAD_FLOOR = 0.01


def _spread(values: np.ndarray) -> float:
    v = values[np.isfinite(values)]
    if v.size < MIN_VALUES:
        return math.nan
    lo, hi = np.percentile(v, [10, 90])
    return float(hi - lo)


def _floor(values: np.ndarray) -> float:
    """:data:`SPREAD_FLOOR` of the values' level (their median), at least a tiny positive."""
    v = values[np.isfinite(values)]
    level = float(np.median(np.abs(v))) if v.size else 0.0
    return max(SPREAD_FLOOR * level, 1e-9)


def interior_offset(before: np.ndarray, after: np.ndarray, core: np.ndarray) -> tuple[int, int]:
    """The whole-pixel offset (rows, columns) within :data:`ALIGN_PX` at which AFTER's intensity
    (the mean of its bands) correlates best with BEFORE's over ``core``; (0, 0) when no offset
    keeps 90 % of the core's observable pixels inside the arrays."""
    ib = before.mean(axis=0)  # NaN where a band is: left out
    ia = after.mean(axis=0)
    rows, cols = np.nonzero(core)
    h, w = core.shape
    xb = ib[rows, cols]
    best, arg = -math.inf, (0, 0)
    for dy in range(-ALIGN_PX, ALIGN_PX + 1):
        for dx in range(-ALIGN_PX, ALIGN_PX + 1):
            r, c = rows + dy, cols + dx
            inside = (r >= 0) & (r < h) & (c >= 0) & (c < w)
            xa = np.full(xb.shape, np.nan)
            xa[inside] = ia[r[inside], c[inside]]
            ok = np.isfinite(xb) & np.isfinite(xa)
            if ok.sum() < max(MIN_VALUES, 0.9 * np.isfinite(xb).sum()):
                continue
            u, v = xb[ok], xa[ok]
            corr = float(np.mean((u - u.mean()) * (v - v.mean())) / (u.std() * v.std() + 1e-9))
            # the nearer offset wins a tie (a flat roof correlates alike everywhere)
            near = abs(dy) + abs(dx) < abs(arg[0]) + abs(arg[1])
            if corr > best + 1e-9 or (abs(corr - best) <= 1e-9 and near):
                best, arg = corr, (dy, dx)
    return arg


def texture_change(
    before: np.ndarray,
    after: np.ndarray,
    core: np.ndarray,
    cells: list[tuple[slice, slice]],
) -> float:
    """How much the texture of a footprint's cells changed against the footprint's own, as a log
    factor (see the module): per band, each cell's log ratio of the dates' spreads less the
    median over the cells; per cell the second largest over the bands (texture that came or
    went shows in every band; one band alone is a colour); the largest over the cells. The
    first three bands are read, as for the hue. NaN with fewer than two cells or two bands.
    ``before``/``after``: (bands, rows, cols); ``core``: the footprint's inner part; ``cells``:
    its split (:func:`sohae_watch.footprint._cells`)."""
    before, after = before[:3], after[:3]
    if len(cells) < 2 or before.shape[0] < 2:
        return math.nan
    oy, ox = interior_offset(before, after, core)
    h, w = core.shape
    dev = np.full((before.shape[0], len(cells)), -math.inf)
    for b in range(before.shape[0]):
        # (a spread of too few values is NaN, and max keeps it NaN)
        floor_b, floor_a = (_floor(x[b][core]) for x in (before, after))
        spreads_b = [max(_spread(before[b][rr, cc][core[rr, cc]]), floor_b) for rr, cc in cells]

        def spread_a(
            rr: slice, cc: slice, dy: int, dx: int, band: int = b, floor: float = floor_a
        ) -> float:
            r0, c0 = rr.start + dy, cc.start + dx
            if r0 < 0 or c0 < 0 or rr.stop + dy > h or cc.stop + dx > w:
                return math.nan
            window = after[band][r0 : rr.stop + dy, c0 : cc.stop + dx]
            return max(_spread(window[core[rr, cc]]), floor)

        ratios = [
            math.log(spread_a(rr, cc, oy, ox) / sb)
            for (rr, cc), sb in zip(cells, spreads_b, strict=True)
        ]
        finite = [r for r in ratios if math.isfinite(r)]
        gain = float(np.median(finite)) if finite else math.nan
        if not math.isfinite(gain):
            continue
        for i, ((rr, cc), sb) in enumerate(zip(cells, spreads_b, strict=True)):
            if not math.isfinite(sb):
                continue
            best = math.inf
            for dy in range(oy - CELL_SLACK_PX, oy + CELL_SLACK_PX + 1):
                for dx in range(ox - CELL_SLACK_PX, ox + CELL_SLACK_PX + 1):
                    sa = spread_a(rr, cc, dy, dx)
                    if math.isfinite(sa):
                        best = min(best, abs(math.log(sa / sb) - gain))
            if math.isfinite(best):
                dev[b, i] = best
    per_cell = np.sort(dev, axis=0)[-2]  # -inf where a cell has fewer than two bands
    return float(per_cell.max()) if np.isfinite(per_cell).any() else math.nan
