"""A veil's soft edge across a footprint: haze, thin cloud or a cloud's shadow over part of it.

A veil on one date acts on every surface under it by one law per band: a haze passes a share of
the light and adds its own (``v = u * (1 - k t) + L t``, ``k`` near 1), a cloud's shadow keeps a
share (``L = 0``), ``t`` the veil's cover (0 clear, 1 full). Clouds and their shadows are hundreds
of metres across, so around one footprint the cover is a straight soft edge at most; it goes on
into the ground around, which a modification leaves as it was. A veil edge across a footprint
reorders its cells as a rebuilt half would (:func:`sohae_watch.footprint.pattern_change`).

:func:`find_veil` fits that law to the ground around a footprint alone: every straight soft edge
(direction, position, width) is tried, and for each the per-band affine relation of the dates is
linear in the law's coefficients, so each try is a small least-squares problem. A veil is kept
when it explains most of what the ground's plain affine relation of the dates leaves; the
footprint's pixels never enter the fit of the law (they only settle the edge's place by less
than a step of the search), so a modification cannot be taken for a veil.
:meth:`Veil.lift` then removes the veil from its date (the inverse of the law), and the interior
test judges what is left.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

DIRECTIONS = 16  # edge directions tried, over half a turn
WIDTHS_M = (1.0, 4.0, 10.0, 20.0)  # soft edge widths tried (a cloud shadow's penumbra: ~10-30 m)
POSITIONS = 16  # edge positions tried across the window (quantiles of the ground's)
MIN_GROUND_PX = 200  # ground pixels needed to fit a veil
SAMPLE_PX = 1500  # ground pixels the coarse search is made on
FIT_PX = 3000  # ground pixels the edge is refined and the law fitted on
# a veil is kept when it explains this share of what the ground's plain affine relation of the
# dates leaves (squared residuals, after trimming the ground that changed otherwise)
EXPLAINS = 0.5
# ... and changes the ground under it by at least this factor (mean visible band, full cover)
MIN_EFFECT = math.log(1.1)
MAX_TAKEN = 0.9  # a veil seen through passes at least a tenth of the light (more: opaque)
LIGHT_SLACK = 0.05  # light a veil adds, no less than this share of the band's level below none
END_PX = 20  # clear and veiled ground pixels needed beyond each end of the edge's crossing
END_M = 5.0  # ... within this distance of the soft edge
# ... where a deviation is at least this share of the band's level (not the residual's own
# spread: the veil's law fits unchanged ground to the noise, and a small misplacement of the
# edge would otherwise trim the very pixels that place it)
NOISE = 0.02
TRIM = 3.0  # residuals beyond this many robust standard deviations are other change: left out


@dataclass(frozen=True)
class Veil:
    """A straight soft edge of a veil on one date and the law it acts by.

    ``nx, ny``: unit normal of the edge (columns, rows), pointing out of the veil; ``offset``:
    the edge's position along it (pixels, window coordinates); ``width``: its soft width
    (pixels); ``k`` and ``light`` per band: the share of the light the veil takes and the light
    it adds at full cover, in the veiled date's units; ``on_after``: which date it is on;
    ``explained``: the share of the ground's residual it explains."""

    nx: float
    ny: float
    offset: float
    width: float
    k: np.ndarray
    light: np.ndarray
    on_after: bool
    explained: float

    def cover(self, shape: tuple[int, int]) -> np.ndarray:
        """The veil's cover (0 to 1) on every pixel of a window of ``shape`` (rows, cols)."""
        rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
        return _ramp(cols * self.nx + rows * self.ny, self.offset, self.width)

    def lift(self, before: np.ndarray, after: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The two dates (bands, rows, cols) with the veil taken off its date: ``(v - L t) /
        (1 - k t)``, the transmission floored at a tenth (a veil that dark leaves little to
        see)."""
        t = self.cover(before.shape[1:])[None]
        veiled = after if self.on_after else before
        keep = np.maximum(1.0 - self.k[:, None, None] * t, 0.1)
        lifted = ((veiled - self.light[:, None, None] * t) / keep).astype(veiled.dtype)
        return (before, lifted) if self.on_after else (lifted, after)


def _ramp(s: np.ndarray, offset: float, width: float) -> np.ndarray:
    """Cover falling linearly from 1 to 0 across ``width`` around ``offset`` along ``s``."""
    return np.clip((offset - s) / width + 0.5, 0.0, 1.0)


def _fit(
    x: np.ndarray, y: np.ndarray, t: np.ndarray, w: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per band and try (rows of ``t``), the weighted least-squares fit of ``y`` on
    ``[x, 1, t, t x]``: the coefficients (bands, tries, 4) and the residual sums of squares
    (bands, tries). ``x``, ``y``: (bands, pixels); ``w``: the pixels' weights."""
    nb, m = x.shape[0], len(t)
    wx = w * x
    cols = np.concatenate([wx * x, wx, np.broadcast_to(w, x.shape), wx * y, w * y])  # (5 nb, n)
    s1 = (t @ cols.T).reshape(m, 5, nb)  # sums of t * (x^2, x, 1, x y, y)
    s2 = ((t * t) @ cols[: 3 * nb].T).reshape(m, 3, nb)  # sums of t^2 * (x^2, x, 1)
    s0 = cols.sum(axis=1).reshape(5, nb)
    a = np.empty((nb, m, 4, 4))
    for band in range(nb):
        a[band, :, 0, 0], a[band, :, 0, 1], a[band, :, 1, 1] = s0[0, band], s0[1, band], s0[2, band]
        a[band, :, 0, 2], a[band, :, 0, 3] = s1[:, 1, band], s1[:, 0, band]
        a[band, :, 1, 2], a[band, :, 1, 3] = s1[:, 2, band], s1[:, 1, band]
        a[band, :, 2, 2], a[band, :, 2, 3] = s2[:, 2, band], s2[:, 1, band]
        a[band, :, 3, 3] = s2[:, 0, band]
    for i, j in ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)):
        a[..., j, i] = a[..., i, j]
    b = np.stack(
        [
            np.broadcast_to(s0[3][:, None], (nb, m)),
            np.broadcast_to(s0[4][:, None], (nb, m)),
            s1[:, 4].T,
            s1[:, 3].T,
        ],
        axis=-1,
    )
    a += np.eye(4) * 1e-9 * np.trace(a, axis1=2, axis2=3)[..., None, None]
    coef = np.linalg.solve(a, b[..., None])[..., 0]
    sse = np.sum(w * y * y, axis=1)[:, None] - np.einsum("bmi,bmi->bm", coef, b)
    return coef, np.maximum(sse, 0.0)


Edge = tuple[float, float, float]  # direction (radians), offset (pixels), width (pixels)


def _covers(rows: np.ndarray, cols: np.ndarray, edges: list[Edge]) -> np.ndarray:
    """The covers (tries, pixels) of straight soft ``edges`` at pixels ``rows``, ``cols``."""
    out = np.empty((len(edges), rows.size))
    for i, (a, off, width) in enumerate(edges):
        out[i] = _ramp(cols * math.cos(a) + rows * math.sin(a), off, width)
    return out


def _coarse(rows: np.ndarray, cols: np.ndarray, px_m: float) -> list[Edge]:
    """Every straight soft edge of the coarse search: :data:`DIRECTIONS` directions over half a
    turn, :data:`POSITIONS` positions across the ground, the widths :data:`WIDTHS_M`."""
    edges: list[Edge] = []
    for i in range(DIRECTIONS):
        a = math.pi * i / DIRECTIONS
        s = cols * math.cos(a) + rows * math.sin(a)
        for off in np.quantile(s, np.linspace(0.02, 0.98, POSITIONS)):
            edges.extend((a, float(off), max(1.0, wm / px_m)) for wm in WIDTHS_M)
    return edges


def _near(edge: Edge, step: float) -> list[Edge]:
    """Edges around ``edge``: direction, offset and width moved by ``step`` of the coarse grid's
    spacing (offset in pixels of a quarter of the width, at least one)."""
    a, off, width = edge
    da = step * math.pi / DIRECTIONS
    do = step * max(1.0, width / 4)
    return [
        (a + i * da, off + j * do, max(1.0, width * 1.5 ** (k * step)))
        for i in (-1, 0, 1)
        for j in (-1, 0, 1)
        for k in (-1, 0, 1)
    ]


def _scores(xs: np.ndarray, ys: np.ndarray, covers: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Per try, the residual of the veil's relation of the dates as a share of the plain affine
    relation's, averaged over the bands (``xs``, ``ys``: bands, pixels; ``w``: weights)."""
    null = _fit(xs, ys, np.zeros((1, xs.shape[1])), w)[1]
    return np.mean(_fit(xs, ys, covers, w)[1] / np.maximum(null, 1e-12), axis=0)


def _refine(
    xs: np.ndarray,
    ys: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    edge: Edge,
    w: np.ndarray,
    steps: tuple[float, ...] = (0.5, 0.25, 0.125),
    moves: int = 8,
) -> Edge:
    """``edge`` moved to the best of its neighbours until none is better (at most ``moves``
    times), in ``steps`` of the coarse grid's spacing."""
    for step in steps:
        for _ in range(moves):
            tries = _near(edge, step)
            best = tries[int(np.argmin(_scores(xs, ys, _covers(rows, cols, tries), w)))]
            if best == edge:
                break
            edge = best
    return edge


@dataclass(frozen=True)
class _Fit:
    """The best straight soft edge for a veil on ``y``'s date, and the ground it was fitted on:
    pixels (``rows``, ``cols``), the dates' values scaled per band (``xs``, ``ys``: bands,
    pixels; ``scale``: the factor of ``y``), the pixels kept (``keep``) and the relation's
    coefficients per band (g, o, c2, c3: ``y = g x + o + c2 t + c3 t x``)."""

    edge: Edge
    rows: np.ndarray
    cols: np.ndarray
    xs: np.ndarray
    ys: np.ndarray
    scale: np.ndarray
    keep: np.ndarray
    coef: np.ndarray

    @property
    def cover(self) -> np.ndarray:
        return _covers(self.rows, self.cols, [self.edge])[0]

    def explained(self, part: np.ndarray) -> float:
        """The share of the plain affine relation's residual (fitted on all the kept ground) the
        veil explains on the kept ground in ``part`` (a mask of the pixels), mean of the bands."""
        sel = part & self.keep
        t = self.cover
        null = _fit(self.xs, self.ys, np.zeros((1, t.size)), self.keep * 1.0)[0][:, 0]
        out = []
        for b, (g, o, c2, c3) in enumerate(self.coef):
            x, y, tt = self.xs[b, sel], self.ys[b, sel], t[sel]
            r_veil = y - (g * x + o + c2 * tt + c3 * tt * x)
            r_null = y - (null[b, 0] * x + null[b, 1])
            out.append(float(np.sum(r_veil**2)) / max(float(np.sum(r_null**2)), 1e-12))
        return 1.0 - float(np.mean(out))

    def law(self) -> tuple[np.ndarray, np.ndarray, float]:
        """Per band k and L (``y = (g x + o)(1 - k t) + L t``, L in ``y``'s units), and how much
        the veil changes the ground at full cover (median over the kept ground of the visible
        bands' mean log factor)."""
        g, o, c2, c3 = self.coef.T
        k = np.where(np.abs(g) > 1e-9, -c3 / np.where(np.abs(g) > 1e-9, g, 1.0), 0.0)
        light = (c2 + k * o) * self.scale[:, 0]
        n = min(3, len(g))
        clear = g[:n, None] * self.xs[:n] + o[:n, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            factor = np.log(
                np.abs(clear + c2[:n, None] + c3[:n, None] * self.xs[:n]) / np.abs(clear)
            )
        return k, light, float(abs(np.nanmedian(factor[:, self.keep].mean(axis=0))))


def _start(
    x: np.ndarray, y: np.ndarray, rows: np.ndarray, cols: np.ndarray, px_m: float
) -> tuple[Edge, float]:
    """The coarse search's best edge for a veil on ``y``'s date (about :data:`SAMPLE_PX` of the
    pixels, an even spread) and its score (:func:`_scores`)."""
    scale = np.median(np.abs(y), axis=1)[:, None] + 1e-6
    few = np.arange(0, x.shape[1], max(1, x.shape[1] // SAMPLE_PX))
    coarse = _coarse(rows[few], cols[few], px_m)
    covers = _covers(rows[few], cols[few], coarse)
    scores = _scores(x[:, few] / scale, y[:, few] / scale, covers, np.ones(few.size))
    i = int(np.argmin(scores))
    return coarse[i], float(scores[i])


def _one_way(x: np.ndarray, y: np.ndarray, rows: np.ndarray, cols: np.ndarray, start: Edge) -> _Fit:
    """The straight soft edge that best explains ``y`` (bands, pixels) from ``x`` under a veil on
    ``y``'s date, from the coarse search's ``start`` (:func:`_start`).

    The edge refined on about :data:`FIT_PX` of the pixels (an even spread), then the ground
    neither relation explains (other change, a moving shadow: beyond :data:`TRIM` robust
    deviations) left out and the edge refined again."""
    scale = np.median(np.abs(y), axis=1)[:, None] + 1e-6
    # the fit on an even spread of the ground's pixels: a few thousand tell an edge
    sub = np.arange(0, x.shape[1], max(1, x.shape[1] // FIT_PX))
    xs, ys, rows, cols = x[:, sub] / scale, y[:, sub] / scale, rows[sub], cols[sub]
    keep = np.ones(xs.shape[1], bool)
    best = _refine(xs, ys, rows, cols, start, keep * 1.0)
    for _ in range(2):
        t = _covers(rows, cols, [best])[0]
        resid = np.zeros(xs.shape[1])
        for b, (g, o, c2, c3) in enumerate(_fit(xs, ys, t[None], keep * 1.0)[0][:, 0]):
            r = ys[b] - (g * xs[b] + o + c2 * t + c3 * t * xs[b])
            mid = float(np.median(r[keep]))
            mad = max(1.4826 * float(np.median(np.abs(r[keep] - mid))), NOISE)
            resid = np.maximum(resid, np.abs(r - mid) / mad)
        if (resid <= TRIM).sum() >= MIN_GROUND_PX:
            keep = resid <= TRIM
        best = _refine(xs, ys, rows, cols, best, keep * 1.0, (0.25, 0.125))
    t = _covers(rows, cols, [best])[0]
    coef = _fit(xs, ys, t[None], keep * 1.0)[0][:, 0]
    return _Fit(best, rows, cols, xs, ys, scale, keep, coef)


def _physical(k: np.ndarray, light: np.ndarray, level: np.ndarray) -> bool:
    """Whether a law (k, L per band, the visible bands judged) is a veil's, read from its clear
    side to its veiled one (the side the fit calls t = 1 may be either: from the other, k' =
    -k / (1 - k), L' = -L / (1 - k)): each band keeps a share of the light, between
    :data:`MAX_TAKEN` taken and none added back (0 <= k <= MAX_TAKEN), and adds no less than
    none (L >= -:data:`LIGHT_SLACK` of the band's ``level``)."""
    n = min(3, len(k))
    k, light, level = k[:n], light[:n], level[:n]
    if np.mean(k) < 0:  # the t = 1 side is the clear one
        k, light = -k / (1 - k), -light / (1 - k)
    return bool(np.all((k >= -0.05) & (k <= MAX_TAKEN) & (light >= -LIGHT_SLACK * level)))


def _settle(fit: _Fit, x: np.ndarray, y: np.ndarray, fp: np.ndarray, r0: float, c0: float) -> Edge:
    """The edge of ``fit`` settled where it crosses the footprint ``fp`` (``x``, ``y``: the
    dates' full windows, bands first; ``r0``, ``c0``: the footprint's centre).

    The ground places the edge only where it crosses the ring, and a deep shadow's lifting
    multiplies a misplacement (a few pixels of a 20 m penumbra is a tenth of the light in the
    shade), so the edge is moved, by less than a coarse step in all, to fit the kept ground and
    the roof together. A part of the roof that changed otherwise fits no placement of a smooth
    edge and barely moves it; the law itself stays the ground's."""
    fr, fc = np.nonzero(fp)
    xf = x[:, fr, fc].astype(np.float64) / fit.scale
    yf = y[:, fr, fc].astype(np.float64) / fit.scale
    ok = np.isfinite(xf).all(axis=0) & np.isfinite(yf).all(axis=0)
    xs = np.concatenate([fit.xs[:, fit.keep], xf[:, ok]], axis=1)
    ys = np.concatenate([fit.ys[:, fit.keep], yf[:, ok]], axis=1)
    rows = np.concatenate([fit.rows[fit.keep], fr[ok] - r0])
    cols = np.concatenate([fit.cols[fit.keep], fc[ok] - c0])
    sub = np.arange(0, xs.shape[1], max(1, xs.shape[1] // FIT_PX))
    w = np.ones(sub.size)
    return _refine(xs[:, sub], ys[:, sub], rows[sub], cols[sub], fit.edge, w, (0.125, 0.0625), 3)


def find_veil(
    before: np.ndarray, after: np.ndarray, fp: np.ndarray, ground: np.ndarray, px_m: float
) -> Veil | None:
    """The veil whose straight soft edge, on either date, crosses footprint ``fp`` and explains
    how the ``ground`` (rows, cols masks) around it changed between ``before`` and ``after``
    (bands, rows, cols); None when there is none. ``px_m``: the pixel size, metres.

    The veil must (a) explain at least :data:`EXPLAINS` of what a plain per-band affine relation
    of the dates leaves on the ground, and as much on the ground along the edge beyond each end
    of its crossing of the footprint, where it must run through clear and veiled ground (a
    veil's edge goes on across the outline; a structure's own shadow, a patch of snow or a
    modification does not); (b) change the ground under it by :data:`MIN_EFFECT`; (c) act by a
    veil's law (:func:`_physical`)."""
    rows, cols = np.nonzero(ground)
    x, y = before[:, rows, cols].astype(np.float64), after[:, rows, cols].astype(np.float64)
    ok = np.isfinite(x).all(axis=0) & np.isfinite(y).all(axis=0) & (x > 0).all(axis=0)
    ok &= (y > 0).all(axis=0)
    if ok.sum() < MIN_GROUND_PX or not fp.any():
        return None
    x, y, rows, cols = x[:, ok], y[:, ok], rows[ok], cols[ok]
    # coordinates from the footprint's centre: an edge turned about it keeps its place there
    fp_rows, fp_cols = np.nonzero(fp)
    r0, c0 = float(fp_rows.mean()), float(fp_cols.mean())
    r, c = rows - r0, cols - c0
    fr, fc = fp_rows - r0, fp_cols - c0
    # the date the veil is on: the one whose coarse edge explains the ground better (either
    # explains a sharp edge; the veiled date's law holds across a soft one)
    ways = [
        (True, x, y, (before, after)),
        (False, y, x, (after, before)),
    ]
    starts = [_start(u, v, r, c, px_m) for _, u, v, _ in ways]
    pick = int(np.argmin([score for _, score in starts]))
    on_after, u, v, full = ways[pick]
    fit = _one_way(u, v, r, c, starts[pick][0])
    explained = fit.explained(np.ones(fit.keep.size, bool))
    if explained < EXPLAINS:
        return None
    a, off, width = fit.edge
    # where the edge's midline crosses the footprint, and the ground beyond either end of that
    # crossing within the edge's band (its soft width and END_M either side)
    band = width / 2 + END_M / px_m
    across = fit.cols * math.cos(a) + fit.rows * math.sin(a)
    along = fit.cols * -math.sin(a) + fit.rows * math.cos(a)
    fp_across = fc * math.cos(a) + fr * math.sin(a)
    chord = (fc * -math.sin(a) + fr * math.cos(a))[np.abs(fp_across - off) <= 1.0]
    if chord.size == 0:  # the edge misses the footprint: nothing of it to take off
        return None
    near = np.abs(across - off) <= band
    t = fit.cover
    ends = (near & (along < chord.min()), near & (along > chord.max()))
    crossed = all(
        ((end & (t < 0.3)).sum() >= END_PX and (end & (t > 0.7)).sum() >= END_PX)
        and fit.explained(end) >= EXPLAINS
        for end in ends
    )
    k, light, effect = fit.law()
    if not (crossed and effect >= MIN_EFFECT and _physical(k, light, np.median(v, axis=1))):
        return None
    a, off, width = edge = _settle(fit, *full, fp, r0, c0)
    t = _covers(fit.rows, fit.cols, [edge])
    k, light, _ = replace(
        fit, edge=edge, coef=_fit(fit.xs, fit.ys, t, fit.keep * 1.0)[0][:, 0]
    ).law()
    off += c0 * math.cos(a) + r0 * math.sin(a)  # from the window's corner
    return Veil(math.cos(a), math.sin(a), off, width, k, light, on_after, explained)
