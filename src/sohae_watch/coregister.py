"""Co-registration: the sub-pixel shift (or affine) of a target acquisition against a reference.

Coarse to fine on a tie-point grid:

1. coarse: large windows (up to 7 x 7, 3 rows on large images) block-averaged by 2-4, a robust
   model fitted; this finds shifts of tens of pixels;
2. fine: a grid of 128 px windows (up to ``MAX_POINTS``; on large images side by side along
   fewer rows, which costs less reading), each target window placed at the coarse
   model's whole-pixel offset, phase-correlated with sub-pixel peaks (see :mod:`coreg_phase`);
   on large images three rows spread over the height (top, middle, bottom) are measured
   first, and when they give fewer than three usable peaks the other rows are not (a probe:
   step 4 then runs, and they are measured after all if it fails too);
3. fit: robust translation and RANSAC affine (see :mod:`coreg_fit`); the affine is kept only
   when it is significantly better. Never a silent zero: no agreeing tie points means ``failed``.
4. when phase correlation finds no agreement, the same steps again with least squares on image
   gradients (:func:`coreg_phase.gradient_windows`) in larger windows, at most
   ``GRADIENT_POINTS`` of them (the coarse windows already read are not read again): smooth
   texture under strong white noise (a few long waves), where the whitened spectrum is mostly
   noise. Images without common texture still fail there.
5. when neither agrees, one wide window (the middle of the grid, up to ``WIDE_WINDOW`` px,
   averaged to at most 256 px) is phase-correlated: a shift beyond the coarse windows' reach
   (a georeference error of tens of metres) moves the target's windows, and steps 1-4 run again
   from there; their result is kept only when its own tie points agree.

Windows are read for both images at once and measured on ``threads`` threads when asked.

Windows with too little valid data (nodata, saturated cloud) are not measured; windows without
common texture (cloud, water, snow) give low correlation peaks and are rejected by reliability
and by the robust fit.

Shift convention (``../shared/CONTRACT.md``): a feature at ``(c, r)`` in the reference is at
``(c + shift_x_px, r + shift_y_px)`` in the target. ``CoregResult.model`` maps reference pixel
coordinates to target pixel coordinates, so a target resampled with
``dst_transform = grid.transform * model`` lies on the reference.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from affine import Affine
from scipy import ndimage as ndi

from sohae_watch.blocks import block_sum
from sohae_watch.coreg_fit import ModelFit, choose_model, fit_translation
from sohae_watch.coreg_phase import correlate_windows, gradient_windows
from sohae_watch.grid import Grid
from sohae_watch.parallel import concurrently

log = logging.getLogger(__name__)

Mode = Literal["auto", "global", "local"]
Status = Literal["ok", "low-confidence", "failed"]
Method = Literal["phase", "gradient"]
#: reads ``(row, col, height, width)`` -> (float32 data NaN-invalid, bool valid), padding outside;
#: the arrays may be views of the reader's own (copy before changing them)
WindowReader = Callable[[int, int, int, int], tuple[np.ndarray, np.ndarray]]

#: most tie points measured on the fine grid
MAX_POINTS = 2500
#: fine window size (px), smaller only for small images
FINE_WINDOW = 128
#: most windows the gradient fallback measures: each is up to 512 px (16 fine windows' pixels) and
#: measures a shift to about 0.01-0.03 px, so 64 leave the robust fit a wide margin; on the
#: 10980^2 benchmark pair 64 gave the shift within 0.003 px, as 156 did, in half the time
GRADIENT_POINTS = 64
#: a tie point below this peak reliability is not used
MIN_POINT_RELIABILITY = 0.15
RELIABLE = 0.4  # reliability from which a registration is `ok` (with enough points)
#: windows correlated per FFT batch (bounds memory)
BATCH = 128
#: the phase measurement of a grid with at least this many groups of tie-point rows starts with
#: three of them spread over the height (a probe; see :func:`_register`)
PROBE_GROUPS = 6
#: a probe decides only when it measured at least this many windows
PROBE_MIN_MEASURED = 64
#: side (px) of the one wide window measured when no tie points agree (see
#: :func:`_wide_offset`): 2048 px averaged by 8 reach shifts of a few hundred pixels
WIDE_WINDOW = 2048
#: rows kept free at the top and bottom of a block row holding tie-point windows (the target's
#: windows, moved by the coarse shift, stay in the same block row up to this shift)
BLOCK_MARGIN = 32


@dataclass(frozen=True)
class TiePoint:
    """One measured window: centre ``(col, row)`` in the reference, displacement ``(dx, dy)``."""

    col: float
    row: float
    dx: float
    dy: float
    reliability: float
    valid: bool


@dataclass(frozen=True)
class CoregResult:
    """Outcome of co-registration (see the module docstring for the conventions)."""

    method: str
    status: Status
    reliability: float
    shift_x_px: float | None
    shift_y_px: float | None
    model: Affine | None
    n_points: int
    n_valid_points: int
    points: tuple[TiePoint, ...]

    @property
    def model_kind(self) -> str | None:
        """``translation``, ``affine`` or None when failed."""
        if self.model is None:
            return None
        m = self.model
        return "translation" if (m.a, m.b, m.d, m.e) == (1.0, 0.0, 0.0, 1.0) else "affine"

    def to_dict(self, grid: Grid) -> dict[str, Any]:
        """The contract's ``coregistration`` record (map shifts east and north positive)."""
        sx_m = sy_m = None
        if self.shift_x_px is not None and self.shift_y_px is not None:
            sx_m, sy_m = grid.offset_m(self.shift_x_px, self.shift_y_px)
        return {
            "method": self.method,
            "shift_x_px": self.shift_x_px,
            "shift_y_px": self.shift_y_px,
            "shift_x_m": sx_m,
            "shift_y_m": sy_m,
            "reliability": self.reliability,
            "status": self.status,
            "n_points": self.n_points,
            "n_valid_points": self.n_valid_points,
            "model": self.model_kind,
        }


def failed(method: str, points: tuple[TiePoint, ...] = ()) -> CoregResult:
    """A failed result: no shift, no model."""
    return CoregResult(method, "failed", 0.0, None, None, None, len(points), 0, points)


# ---------------------------------------------------------------------------------------------
# window access


def array_reader(data: np.ndarray, valid: np.ndarray | None) -> WindowReader:
    """A :data:`WindowReader` over an in-memory single-band array (pads outside with invalid)."""
    h, w = data.shape

    def read(row: int, col: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        r0, r1 = max(row, 0), min(row + height, h)
        c0, c1 = max(col, 0), min(col + width, w)
        if (r0, r1, c0, c1) == (row, row + height, col, col + width):
            # inside (the common case): a view of the array, no padded copy (the caller copies)
            sl = (slice(r0, r1), slice(c0, c1))
            fin = np.isfinite(data[sl])
            return np.asarray(data[sl], np.float32), fin if valid is None else valid[sl] & fin
        out = np.full((height, width), np.nan, dtype=np.float32)
        ok = np.zeros((height, width), dtype=bool)
        if r0 < r1 and c0 < c1:
            sl = (slice(r0, r1), slice(c0, c1))
            dst = (slice(r0 - row, r1 - row), slice(c0 - col, c1 - col))
            out[dst] = data[sl]
            ok[dst] = np.isfinite(data[sl]) if valid is None else valid[sl] & np.isfinite(data[sl])
        return out, ok

    return read


def mask_saturated(data: np.ndarray, valid: np.ndarray, min_fraction: float = 0.02) -> np.ndarray:
    """Validity with clipped highlights removed, per window of a (n, h, w) stack.

    A window whose maximum value is shared by more than ``min_fraction`` of its pixels is
    clipped (saturated cloud, snow, roofs): those pixels and a 2 px border are made invalid.
    """
    top = np.max(np.where(valid, data, -np.inf), axis=(1, 2))
    thr = (top - 1e-6 * np.abs(top)).astype(data.dtype)[:, None, None]
    at_top = data >= thr  # NaN compares False
    at_top &= valid
    frac = np.count_nonzero(at_top, axis=(1, 2)) / float(data.shape[1] * data.shape[2])
    hit = np.flatnonzero(frac > min_fraction)
    if hit.size == 0:
        return valid
    out = valid.copy()
    grown = ndi.maximum_filter(at_top[hit], size=(1, 5, 5))
    out[hit] &= ~grown
    return out


def _read_stack(
    reader: WindowReader, boxes: list[tuple[int, int]], size: int
) -> tuple[np.ndarray, np.ndarray]:
    data = np.empty((len(boxes), size, size), dtype=np.float32)
    valid = np.empty((len(boxes), size, size), dtype=bool)
    for i, (r, c) in enumerate(boxes):
        data[i], valid[i] = reader(r, c, size, size)
    return data, mask_saturated(data, valid)


def _read_means(
    reader: WindowReader, boxes: list[tuple[int, int]], size: int, f: int
) -> tuple[np.ndarray, np.ndarray]:
    """The windows at ``boxes``, read and averaged over f x f blocks."""
    return _block_mean(*_read_stack(reader, boxes, size), f)


def _block_mean(data: np.ndarray, valid: np.ndarray, f: int) -> tuple[np.ndarray, np.ndarray]:
    """Average (n, h, w) stacks over f x f blocks using valid pixels only."""
    if f == 1:
        return data, valid
    full = bool(valid.all())  # the common case: no count of valid pixels needed
    s = _block_sum(data if full else np.where(valid, data, np.float32(0.0)), f)
    if full:
        out = (s / np.float64(f * f)).astype(np.float32)
        return out, np.ones(out.shape, bool)
    cnt = _block_sum(valid.view(np.uint8), f)  # exact: at most f * f
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (s / cnt).astype(np.float32)
    ok = cnt >= (f * f) / 2
    return np.where(ok, out, np.nan).astype(np.float32), ok


def _block_sum(x: np.ndarray, f: int) -> np.ndarray:
    """Float32 sums of an (n, h, w) stack over f x f blocks (:func:`blocks.block_sum`: the same
    numbers as ``x.reshape(n, h // f, f, w // f, f).sum(axis=(2, 4))``, numpy's order of
    additions there, in a fifth of the time). Over 4 columns numpy sums in another order:
    ``f`` > 4 (the wide window) keeps that expression, so its shifts stay as they were."""
    if f > 4:
        return np.asarray(x.reshape(x.shape[0], x.shape[1] // f, f, -1, f).sum(axis=(2, 4)))
    return block_sum(x, f)


# ---------------------------------------------------------------------------------------------
# measuring


def _positions(extent: int, size: int, count: int) -> list[int]:
    """``count`` window origins spread evenly over ``extent`` (windows fully inside)."""
    if extent <= size:
        return [0]
    count = max(1, min(count, extent - size + 1))
    return sorted({round(i * (extent - size) / max(count - 1, 1)) for i in range(count)})


def _block_rows(h: int, size: int, count: int, block: int | None, margin: int) -> list[int] | None:
    """Origins of ``count`` rows of ``size`` px windows packed into as few ``block``-row bands
    of the grid as possible (bands spread evenly over the height), ``margin`` px inside each
    band; None when the bands are too small or too few for that.

    A file reader decodes whole internal blocks: windows packed into a few block rows decode
    those rows only (the target's windows, moved by the coarse shift, stay within the margin).
    """
    if block is None or block <= 0:
        return None
    per = (block - 2 * margin) // size
    full = h // block
    if per < 1 or count < 2:
        return None
    n = math.ceil(count / per)
    if n < 2 or full < n:
        return None
    picks = _positions(full, 1, n)
    rows: list[int] = []
    for i, b in enumerate(picks):
        k = count // n + (1 if i < count % n else 0)
        rows.extend(b * block + margin + j * size for j in range(k))
    return rows


def _measure(
    ref: WindowReader,
    tgt: WindowReader,
    origins: list[tuple[int, int]],
    offsets: list[tuple[int, int]],
    size: int,
    factor: int,
    method: Method = "phase",
    init: np.ndarray | None = None,
    stacks: list[tuple[np.ndarray, ...]] | None = None,
    threads: int = 1,
) -> list[TiePoint]:
    """Correlate reference windows at ``origins`` with target windows at origin + offset.

    ``method``: ``phase`` (phase correlation) or ``gradient`` (least squares on gradients,
    starting at ``init``, the expected remaining shifts (n, 2) in window pixels, else zero).
    ``stacks``: when given empty, the windows read (block-averaged) are appended to it, one
    entry per batch; when given filled (by a call on the same windows), they are not read again.

    A reader with a ``plan(rows, size)`` method is told up front which window rows it will be
    asked for, in order (a file reader then decodes only those rows, ahead of time).

    ``threads`` > 1: the reference's and the target's windows are read at the same time (two
    readers, two sources) and the gradient method solves windows in parallel; the tie points
    are the same whatever ``threads``."""
    points: list[TiePoint] = []
    # BATCH windows of 128 px; fewer of larger ones (bounds memory)
    batch = max(4, BATCH * 128 * 128 // (size * size))
    boxes = [(r + oy, c + ox) for (r, c), (ox, oy) in zip(origins, offsets, strict=True)]
    cached = bool(stacks)
    for reader, bx in ((ref, origins), (tgt, boxes)):
        plan = getattr(reader, "plan", None)
        if plan is not None and not cached:
            plan([r for r, _ in bx], size)
    for j, k in enumerate(range(0, len(origins), batch)):
        chunk = origins[k : k + batch]
        offs = offsets[k : k + batch]
        if stacks and cached:
            a, av, b, bv = stacks[j]
        else:
            (a, av), (b, bv) = concurrently(
                functools.partial(_read_means, ref, chunk, size, factor),
                functools.partial(_read_means, tgt, boxes[k : k + batch], size, factor),
                threads,
            )
            if stacks is not None:
                stacks.append((a, av, b, bv))
        if method == "gradient":
            start = np.zeros((len(chunk), 2)) if init is None else init[k : k + batch]
            res = gradient_windows(a, b, av, bv, start[:, 0], start[:, 1], threads=threads)
        else:
            res = correlate_windows(a, b, av, bv)
        for i, ((r, c), (ox, oy)) in enumerate(zip(chunk, offs, strict=True)):
            if not res.measured[i]:
                continue
            points.append(
                TiePoint(
                    col=c + size / 2.0,
                    row=r + size / 2.0,
                    dx=float(ox + res.dx[i] * factor),
                    dy=float(oy + res.dy[i] * factor),
                    reliability=float(res.reliability[i]),
                    valid=bool(res.reliability[i] >= MIN_POINT_RELIABILITY),
                )
            )
    return points


SECOND_MOTION = 0.25  # share of the usable tie points a second consistent shift must hold
SECOND_MOTION_PX = 1.0  # ... at least this far from the model's (px)
SECOND_MOTION_SPREAD = 4.0  # ... and this many times the two fits' scatter: apart, not one cloud


def second_motion(
    c: np.ndarray,
    r: np.ndarray,
    d: np.ndarray,
    wt: np.ndarray,
    inliers: np.ndarray,
    extent: tuple[float, float],
    shift: tuple[float, float],
    scatter: float = 0.0,
) -> tuple[float, float, int] | None:
    """A second shift the model's outliers agree on: (x, y, points), or None. Outliers of one
    rigid misregistration scatter (clouds, change, repeated texture); a quarter of the usable
    tie points agreeing, within the inlier radius, on a shift a pixel or more from the model's,
    and well apart from both fits' scatter (``scatter``: the model's RMS residual, px), are a
    second motion the model leaves misaligned. (A coarse date's tie points scatter by a pixel
    of the grid or more, and split in two by chance.)"""
    out = ~inliers
    need = max(6, math.ceil(SECOND_MOTION * inliers.size))
    if int(out.sum()) < need:
        return None
    fit, _ = choose_model(c[out], r[out], d[out], wt[out], extent, "global", tol=0.5)
    n = int(fit.inliers.sum())
    ox, oy = fit.displacement(extent[0] / 2.0, extent[1] / 2.0)
    apart = math.hypot(ox - shift[0], oy - shift[1])
    if n < need or apart < max(SECOND_MOTION_PX, SECOND_MOTION_SPREAD * max(scatter, fit.rms)):
        return None
    return float(ox), float(oy), n


def _arrays(points: list[TiePoint]) -> tuple[np.ndarray, ...]:
    c = np.array([p.col for p in points], dtype=float)
    r = np.array([p.row for p in points], dtype=float)
    d = np.array([[p.dx, p.dy] for p in points], dtype=float).reshape(-1, 2)
    w = np.array([p.reliability for p in points], dtype=float)
    return c, r, d, w


@dataclass
class _CoarseWindows:
    """The coarse windows of a pair and their block-averaged pixels (one entry per batch):
    read once, measured by phase correlation and, when that finds no agreement, by gradients."""

    origins: list[tuple[int, int]]
    size: int
    factor: int
    stacks: list[tuple[np.ndarray, ...]]


def _coarse_windows(
    shape: tuple[int, int], fine_rows: list[int] | None = None, block: int | None = None
) -> _CoarseWindows:
    """Up to 7 x 7 large windows, block-averaged by 1-4 (not read yet).

    With ``fine_rows`` packed into ``block``-row bands (see :func:`_block_rows`), the three
    rows of coarse windows of a large image are placed on the first, middle and last of those
    bands, which the fine grid then reads again (from the decoder's cache)."""
    h, w = shape
    f = 4 if min(h, w) >= 2048 else 2 if min(h, w) >= 256 else 1
    size = min(128 * f, (min(h, w) // f) * f)
    size -= size % (2 * f)
    # on large images three rows of coarse windows are plenty, and they cost less reading
    rows = _positions(h, size, min(7 if h < 4096 else 3, math.ceil(2 * h / size)))
    if fine_rows and block and h >= 4096 and size <= block:
        bands = sorted({(r // block) * block for r in fine_rows})
        if len(bands) >= 3:
            rows = [bands[0], bands[len(bands) // 2], bands[-1]]
    cols = _positions(w, size, min(7, math.ceil(2 * w / size)))
    return _CoarseWindows([(r, c) for r in rows for c in cols], size, f, [])


def _coarse(
    ref: WindowReader,
    tgt: WindowReader,
    shape: tuple[int, int],
    windows: _CoarseWindows,
    method: Method = "phase",
    threads: int = 1,
) -> ModelFit | None:
    """Coarse model from the coarse ``windows`` (read unless already read); None without
    agreement."""
    h, w = shape
    origins, size, f = windows.origins, windows.size, windows.factor
    zero = [(0, 0)] * len(origins)
    pts = _measure(ref, tgt, origins, zero, size, f, method, None, windows.stacks, threads)
    pts = [p for p in pts if p.valid]
    if not pts:
        return None
    c, r, d, wt = _arrays(pts)
    if len(pts) < 3:
        fit = fit_translation(c, r, d, wt, tol=1.0 * f)
        best = float(wt.max())
        return fit if fit.inliers.sum() >= 2 or best >= 0.5 else None
    fit, _ = choose_model(c, r, d, wt, (float(w), float(h)), "auto", tol=1.0 * f)
    if fit.inliers.sum() < 2:
        return None
    return fit


def coregister_readers(
    ref: WindowReader,
    tgt: WindowReader,
    shape: tuple[int, int],
    *,
    mode: Mode = "auto",
    max_points: int = MAX_POINTS,
    row_block: int | None = None,
    threads: int = 1,
) -> CoregResult:
    """Co-register through window readers over a reference grid of ``shape`` (rows, cols).

    The engine behind :func:`coregister_arrays` and the file path: it only reads the windows it
    measures, so memory is bounded by ``BATCH`` windows. ``row_block``: the height (grid rows,
    from row 0) of the blocks the reference is stored in; on a large image the tie-point rows
    are packed into as few of them as possible (see :func:`_block_rows`). ``threads``: see
    :func:`_measure` (the readers must then be safe to call from two threads at once, each
    reader from one at a time).

    When no tie points agree, one wide window (:func:`_wide_offset`) looks for a shift beyond
    the coarse windows' reach; when it finds one, the pair is measured again with the target's
    windows moved by it, and the result stands only if its own tie points agree.
    """
    if mode not in ("auto", "global", "local"):
        raise ValueError(f"mode must be 'auto', 'global' or 'local', got {mode!r}")
    h, w = shape
    if min(h, w) < 32:
        raise ValueError(f"images of {h} x {w} px are too small to co-register (need >= 32)")
    measure = functools.partial(
        _coregister, shape=shape, mode=mode, max_points=max_points, threads=threads
    )
    result = measure(ref, tgt, row_block=row_block)
    if result.status != "failed":
        return result
    offset = _wide_offset(ref, tgt, shape)
    if offset is None:
        return result
    ox, oy = offset

    def moved(row: int, col: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        return tgt(row + oy, col + ox, height, width)

    # the moved windows no longer fall in the reference's block rows: no packing
    again = measure(ref, moved, row_block=None)
    return _offset_by(again, ox, oy) if again.status != "failed" else result


def _offset_by(result: CoregResult, ox: int, oy: int) -> CoregResult:
    """``result`` measured against a target read ``(ox, oy)`` px further on, as against the
    target itself."""
    assert result.model is not None and result.shift_x_px is not None
    assert result.shift_y_px is not None
    return dataclasses.replace(
        result,
        shift_x_px=result.shift_x_px + ox,
        shift_y_px=result.shift_y_px + oy,
        model=Affine.translation(ox, oy) * result.model,
        points=tuple(dataclasses.replace(p, dx=p.dx + ox, dy=p.dy + oy) for p in result.points),
    )


def within(result: CoregResult, row: int, col: int, shape: tuple[int, int]) -> CoregResult:
    """``result``, measured on a grid, as on its sub-grid of ``shape`` (rows, cols) whose origin
    is pixel ``(row, col)`` of it: the model in the sub-grid's pixels, the shift at its centre,
    the tie points in its pixels (those outside it keep coordinates beyond its edges)."""
    if result.model is None:
        return result
    model = Affine.translation(-col, -row) * result.model * Affine.translation(col, row)
    cx, cy = shape[1] / 2.0, shape[0] / 2.0
    x, y = model * (cx, cy)
    return dataclasses.replace(
        result,
        shift_x_px=float(x - cx),
        shift_y_px=float(y - cy),
        model=model,
        points=tuple(
            dataclasses.replace(p, col=p.col - col, row=p.row - row) for p in result.points
        ),
    )


def _wide_offset(
    ref: WindowReader, tgt: WindowReader, shape: tuple[int, int]
) -> tuple[int, int] | None:
    """The whole-pixel shift of one wide window (the middle of the grid, up to
    :data:`WIDE_WINDOW` px, averaged down to at most 256 px) when it is beyond what the coarse
    windows would have found; None otherwise or without a peak above noise.

    Phase correlation of the averaged window reaches about a quarter of its side: on a 500 m
    site at 0.5 m, shifts of a few hundred pixels (the coarse windows: a few tens)."""
    h, w = shape
    side = min(h, w, WIDE_WINDOW)
    f = max(1, math.ceil(side / 256))
    side -= side % (2 * f)
    coarse = _coarse_windows(shape)
    if side <= coarse.size:
        return None  # no wider than the coarse windows: nothing more to see
    origin = ((h - side) // 2, (w - side) // 2)
    pts = _measure(ref, tgt, [origin], [(0, 0)], side, f, "phase")
    # any peak above noise will do (a tie point needs more): the pair measured again with it
    # must agree in its own tie points before the shift is used
    if not pts or pts[0].reliability <= 0.0:
        return None
    ox, oy = round(pts[0].dx), round(pts[0].dy)
    if max(abs(ox), abs(oy)) <= coarse.size // 8:
        return None  # within the coarse windows' reach: measuring again would change nothing
    return ox, oy


def _coregister(
    ref: WindowReader,
    tgt: WindowReader,
    *,
    shape: tuple[int, int],
    mode: Mode,
    max_points: int,
    row_block: int | None,
    threads: int,
) -> CoregResult:
    """:func:`coregister_readers` without the wide window."""
    h, w = shape
    size = FINE_WINDOW if min(h, w) >= 2 * FINE_WINDOW else 64 if min(h, w) >= 128 else 32
    origins, packed = _layout(h, w, size, max_points, row_block)
    coarse = _coarse_windows(shape, packed, row_block)
    band = row_block if packed else None
    phase = functools.partial(
        _register, ref, tgt, shape, mode, origins, size, coarse, "phase", band, threads=threads
    )
    result, probed = phase(probe=True)
    if result.status != "failed":
        return result
    # no agreement from phase correlation: smooth texture under noise (a few long waves) is
    # measured by least squares on gradients instead (the coarse windows already read), in
    # windows up to four times as large (a long wave's curvature must show in a window) and
    # fewer of them (each costs more); unrelated images still fail there
    size = max(size, min(4 * FINE_WINDOW, min(h, w) // 2))
    count = min(max(max_points // 16, 16), GRADIENT_POINTS)
    origins, packed = _layout(h, w, size, count, row_block)
    fit = None if row_block is None else row_block - 2 * BLOCK_MARGIN
    if packed is None and fit is not None and 3 * FINE_WINDOW <= fit < size:
        # a little smaller, they pack into the file's block rows (one row of windows each):
        # half the rows decoded
        small = _layout(h, w, fit, count, row_block)
        if small[1] is not None:
            size, (origins, packed) = fit, small
    second, _ = _register(ref, tgt, shape, mode, origins, size, coarse, "gradient", threads=threads)
    if second.status != "failed":
        return second
    if probed:
        # the probe rows were no sample of the texture after all: every phase window
        result, _ = phase(probe=False)
    return result


def _probe_split(
    origins: list[tuple[int, int]], size: int, band: int | None
) -> tuple[list[int], list[int]] | None:
    """Indices of the probe windows (the first, last and middle of the groups of rows: one
    group per ``band`` rows, else per row of windows) and of the others, in order; None when
    there are fewer than :data:`PROBE_GROUPS` groups, or when rows of ``size`` px windows
    overlap (they are read together: measuring some first would read them twice)."""
    keys = [r // band if band else r for r, _ in origins]
    groups = sorted(set(keys))
    if len(groups) < PROBE_GROUPS:
        return None
    rows = sorted({r for r, _ in origins})
    if band is None and min(b - a for a, b in itertools.pairwise(rows)) < size:
        return None  # overlapping rows of windows (a small grid): read together, cheap anyway
    pick = {groups[0], groups[len(groups) // 2], groups[-1]}
    head = [i for i, k in enumerate(keys) if k in pick]
    rest = [i for i, k in enumerate(keys) if k not in pick]
    return head, rest


def _layout(
    h: int, w: int, size: int, max_points: int, row_block: int | None
) -> tuple[list[tuple[int, int]], list[int] | None]:
    """Origins of the fine windows, and their rows when packed into block rows."""
    step = max(size // 2, int(math.ceil(math.sqrt(h * w / max_points))))
    packed = None
    if step > size and w // size >= 2:
        # a large image: windows side by side along each row, fewer rows spread over the
        # height (a file reader decodes whole rows of the image, so a row of windows costs the
        # same however many it holds; this halves the rows read for the same number of points),
        # packed into few of the file's block rows when they are known
        cols = _positions(w, size, w // size)
        count = max(2, max_points // len(cols))
        packed = _block_rows(h, size, count, row_block, BLOCK_MARGIN)
        rows = packed or _positions(h, size, count)
    else:
        rows = list(range(0, max(h - size, 0) + 1, step))
        cols = list(range(0, max(w - size, 0) + 1, step))
    return [(r, c) for r in rows for c in cols], packed


def _register(
    ref: WindowReader,
    tgt: WindowReader,
    shape: tuple[int, int],
    mode: Mode,
    origins: list[tuple[int, int]],
    size: int,
    windows: _CoarseWindows,
    how: Method,
    band: int | None = None,
    *,
    probe: bool = False,
    threads: int = 1,
) -> tuple[CoregResult, bool]:
    """Coarse model from ``windows``, tie points at ``origins`` measured by ``how``, model fit
    and reliability; and whether the measuring stopped after the probe.

    ``probe``: on a large grid, first measure the windows of three groups of rows spread over
    the height (top, middle, bottom; groups of ``band`` rows, see :func:`_probe_split`); when
    at least :data:`PROBE_MIN_MEASURED` of them were measured (valid data) and fewer than 3
    give a usable peak, texture this method sees is nowhere in the sample: the result is
    ``failed`` without measuring the others (the caller measures them when nothing else works).
    """
    h, w = shape
    coarse = _coarse(ref, tgt, shape, windows, how, threads)
    if coarse is None:
        return failed("tie-points"), False
    ctr = coarse.displacement(
        np.array([c + size / 2.0 for _, c in origins]),
        np.array([r + size / 2.0 for r, _ in origins]),
    )
    offsets = [(round(float(x)), round(float(y))) for x, y in zip(ctr[0], ctr[1], strict=True)]
    init = ctr.T - np.array(offsets, dtype=float).reshape(-1, 2)
    split = _probe_split(origins, size, band) if probe else None
    if split is None:
        pts = _measure(ref, tgt, origins, offsets, size, 1, how, init, threads=threads)
    else:
        pts = []
        for k, part in enumerate(split):
            sub = ([origins[i] for i in part], [offsets[i] for i in part])
            pts += _measure(ref, tgt, *sub, size, 1, how, init[part], threads=threads)
            if k == 0 and len(pts) >= PROBE_MIN_MEASURED and sum(p.valid for p in pts) < 3:
                return failed("tie-points", tuple(pts)), True
        # back in grid order (the robust fit samples in that order)
        order = {(r + size / 2.0, c + size / 2.0): i for i, (r, c) in enumerate(origins)}
        pts.sort(key=lambda p: order[(p.row, p.col)])
    cand = [p for p in pts if p.valid]
    method = "tie-points"
    if len(cand) < 3:
        return failed(method, tuple(pts)), False
    c, r, d, wt = _arrays(cand)
    fit, _ = choose_model(c, r, d, wt, (float(w), float(h)), mode, tol=0.5)
    inl = fit.inliers
    n_in = int(inl.sum())
    flags = iter(inl)
    points = tuple(
        TiePoint(p.col, p.row, p.dx, p.dy, p.reliability, bool(next(flags)) if p.valid else False)
        for p in pts
    )
    method = "tie-points-affine" if fit.kind == "affine" else "phase-correlation-global"
    if how == "gradient":
        method = "gradient-affine" if fit.kind == "affine" else "gradient-global"
    if n_in < 3:
        return failed(method, points), False
    mean_rel = float((wt[inl] * wt[inl]).sum() / wt[inl].sum())
    support = min(1.0, n_in / 10.0) * min(1.0, 2.0 * n_in / max(len(pts), 1)) ** 0.5
    precision = math.exp(-((fit.rms / 0.5) ** 2))
    reliability = float(np.clip(mean_rel * support * precision, 0.0, 1.0))
    sx, sy = fit.displacement(w / 2.0, h / 2.0)
    other = second_motion(c, r, d, wt, inl, (float(w), float(h)), (float(sx), float(sy)), fit.rms)
    if other is not None:
        ox, oy, n_other = other
        log.warning(
            "co-registration: the tie points follow two shifts (%+.1f, %+.1f px at %d points; "
            "%+.1f, %+.1f px at %d), as when one tile of a date is georeferenced apart from the "
            "others or tall structures lean differently: one model cannot align both",
            sx,
            sy,
            n_in,
            ox,
            oy,
            n_other,
        )
        reliability *= n_in / (n_in + n_other)
    status: Status = (
        "ok" if reliability >= RELIABLE and n_in >= 6 and other is None else "low-confidence"
    )
    result = CoregResult(
        method=method,
        status=status,
        reliability=round(reliability, 4),
        shift_x_px=float(sx),
        shift_y_px=float(sy),
        model=fit.to_affine(),
        n_points=len(pts),
        n_valid_points=n_in,
        points=points,
    )
    return result, False


def coregister_arrays(
    reference: np.ndarray,
    target: np.ndarray,
    reference_valid: np.ndarray | None = None,
    target_valid: np.ndarray | None = None,
    *,
    mode: Mode = "auto",
) -> CoregResult:
    """Co-register two single-band images on the same grid.

    Parameters
    ----------
    reference, target : ndarray of shape (rows, cols)
        Float images (e.g. the mean of the visible bands), NaN where invalid.
    reference_valid, target_valid : ndarray of shape (rows, cols), optional
        Boolean validity (default: finite pixels).
    mode : {"auto", "global", "local"}
        ``global``: one translation; ``local``: an affine from the tie points; ``auto``: the
        affine only when it is significantly better than a translation.

    Returns
    -------
    CoregResult
        ``model`` maps reference pixel coordinates to target pixel coordinates.
    """
    if reference.ndim != 2 or reference.shape != target.shape:
        raise ValueError(
            f"reference and target must be 2-D arrays of one shape, got {reference.shape} "
            f"and {target.shape}"
        )
    for name, m in (("reference_valid", reference_valid), ("target_valid", target_valid)):
        if m is not None and m.shape != reference.shape:
            raise ValueError(f"{name} has shape {m.shape}, expected {reference.shape}")
    return coregister_readers(
        array_reader(reference, reference_valid),
        array_reader(target, target_valid),
        (int(reference.shape[0]), int(reference.shape[1])),
        mode=mode,
    )
