"""Batched FFT phase correlation of window pairs: the measuring instrument of co-registration.

Pure numpy/scipy, no I/O. The measuring functions work on a stack of windows of shape
(n, w, w) so that thousands of tie points cost a few batched FFTs.

Sign convention (the project contract's): when the target window shows the reference window's
content moved by ``(dx, dy)`` pixels (a feature at ``(c, r)`` in the reference is at
``(c + dx, r + dy)`` in the target), :func:`correlate_windows` returns ``(dx, dy)``. This is the
opposite sign of ``skimage.registration.phase_cross_correlation(reference, target)``.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import fft as sfft
from scipy import ndimage as ndi

#: a window needs at least this fraction of valid pixels in both images to be measured
MIN_VALID_FRACTION = 0.75
# gradient windows: the updates must shrink at least by half per iteration from the third on, and
# the last be under SETTLED px; one converging that slowly, where the texture is nearly
# one-dimensional (a single wave's crests), has no settled estimate (eight iterations left some
# 0.5 px from it)
STALL = 0.5
SETTLED = 0.01
#: upsampling factor of the matrix-multiply DFT around the integer peak
UPSAMPLE = 10
#: half-width (px) of the upsampled search around the integer peak
SPAN = 0.6


@dataclass(frozen=True)
class WindowShifts:
    """Per-window results of :func:`correlate_windows` (arrays of length n)."""

    dx: np.ndarray
    dy: np.ndarray
    psr: np.ndarray  # peak-to-sidelobe ratio of the correlation surface
    reliability: np.ndarray  # psr mapped to [0, 1]
    measured: np.ndarray  # bool: False where the window was skipped (too little valid data)


@lru_cache(maxsize=8)
def _taper(w: int) -> np.ndarray:
    """2-D Hann window of size (w, w), float32."""
    h = np.hanning(w + 2)[1:-1].astype(np.float32)
    return np.outer(h, h)


@lru_cache(maxsize=8)
def _spectral_weight(w: int) -> np.ndarray:
    """Gaussian low-pass weight on the whitened cross-power spectrum (tames noise and blur)."""
    f = sfft.fftfreq(w).astype(np.float32)
    r2 = f[:, None] ** 2 + f[None, :] ** 2
    low = np.exp(-r2 / (2 * 0.18**2))
    # drop the lowest frequencies (illumination, haze, brightness gradients)
    high = 1.0 - np.exp(-r2 / (2 * (1.5 / w) ** 2))
    return (low * high).astype(np.float32)


def normalise_windows(win: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Zero-mean, unit-variance windows with invalid pixels zeroed and a soft mask edge.

    Parameters
    ----------
    win : ndarray of shape (n, w, w)
        Float windows (NaN allowed where invalid).
    valid : ndarray of shape (n, w, w)
        Boolean validity.

    Returns
    -------
    (ndarray of shape (n, w, w), ndarray of shape (n,))
        The prepared windows (float32) and the valid fraction of each.
    """
    a = np.array(win, dtype=np.float32)  # a copy, prepared in place
    v = valid & np.isfinite(a)
    full = bool(v.all())
    npx = a.shape[1] * a.shape[2]
    if full:
        frac = np.ones(a.shape[0])
        cnt = np.full(a.shape[0], float(npx))
    else:
        cnt = v.sum(axis=(1, 2), dtype=np.float64)
        frac = cnt / npx
        cnt = np.maximum(cnt, 1.0)
        a[~v] = 0.0
    mean = (a.sum(axis=(1, 2), dtype=np.float64) / cnt).astype(np.float32)
    a -= mean[:, None, None]
    if not full:
        a[~v] = 0.0
    std = np.sqrt(np.einsum("nij,nij->n", a, a, dtype=np.float64) / cnt)
    a *= (1.0 / np.maximum(std, 1e-12)).astype(np.float32)[:, None, None]
    if not full:
        # soften the mask boundary so that it carries no sharp edge of its own
        soft = ndi.uniform_filter(v.astype(np.float32), size=(1, 7, 7), mode="nearest")
        a *= np.where(v, soft, np.float32(0.0))
    return a, frac


@lru_cache(maxsize=8)
def _half_weight(w: int) -> np.ndarray:
    """Column weights of a half (rfft) spectrum in a sum over the full one: 2 for the columns
    that stand for a conjugate pair, 1 for the DC and Nyquist columns."""
    c = np.full(w // 2 + 1, 2.0, dtype=np.float32)
    c[0] = 1.0
    if w % 2 == 0:
        c[-1] = 1.0
    return c


def _upsampled_peak(
    xspec: np.ndarray, py: np.ndarray, px: np.ndarray, up: int, w: int
) -> tuple[np.ndarray, np.ndarray]:
    """Sub-pixel peak of the inverse DFT of the half spectrum ``xspec`` (of (h, w) surfaces)
    near integer peaks ``(py, px)``.

    Evaluates the correlation on a ``1/up`` pixel lattice over +-``SPAN`` px by matrix
    multiplication (as skimage's ``_upsampled_dft``, on the rfft half spectrum: the surface is
    real), then refines the best node with a parabola.
    """
    n, h, wh = xspec.shape
    half = int(round(SPAN * up))
    r = 2 * half + 1
    steps = (np.arange(r) - half) / up
    fy = sfft.fftfreq(h)
    fx = sfft.rfftfreq(w)
    # move each window's integer peak to the origin (separable phase ramps), so that one pair
    # of DFT matrices serves every window and the products are two large BLAS calls
    ry = np.exp(2j * np.pi * py[:, None] * fy[None, :]).astype(np.complex64)  # (n, h)
    rx = np.exp(2j * np.pi * px[:, None] * fx[None, :]).astype(np.complex64)  # (n, wh)
    rx *= _half_weight(w)[None, :]
    shifted = xspec * ry[:, :, None]
    shifted *= rx[:, None, :]
    ky = np.exp(2j * np.pi * steps[:, None] * fy[None, :]).astype(np.complex64)  # (r, h)
    kx = np.exp(2j * np.pi * steps[:, None] * fx[None, :]).astype(np.complex64)  # (r, wh)
    z = (shifted.reshape(n * h, wh) @ kx.T).reshape(n, h, r)
    z = z.transpose(1, 0, 2).reshape(h, n * r)
    up_corr = (ky @ z).real.reshape(r, n, r).transpose(1, 0, 2)  # (n, r, r): [window, y, x]
    flat = up_corr.reshape(n, -1).argmax(axis=1)
    iy, ix = np.unravel_index(flat, (r, r))
    iy = np.clip(iy, 1, r - 2)
    ix = np.clip(ix, 1, r - 2)
    idx = np.arange(n)
    c0 = up_corr[idx, iy, ix]
    ym, yp = up_corr[idx, iy - 1, ix], up_corr[idx, iy + 1, ix]
    xm, xp = up_corr[idx, iy, ix - 1], up_corr[idx, iy, ix + 1]
    dy = _parabola(ym, c0, yp)
    dx = _parabola(xm, c0, xp)
    return py + (iy - half + dy) / up, px + (ix - half + dx) / up


def _parabola(m: np.ndarray, c: np.ndarray, p: np.ndarray) -> np.ndarray:
    den = m - 2 * c + p
    with np.errstate(divide="ignore", invalid="ignore"):
        off = np.where(den < 0, 0.5 * (m - p) / den, 0.0)
    return np.clip(off, -0.5, 0.5)


def psr_to_reliability(psr: np.ndarray) -> np.ndarray:
    """Map a peak-to-sidelobe ratio to [0, 1]: about 0 for noise (psr <= 6), 1 from psr 25 on."""
    return np.clip((psr - 6.0) / 19.0, 0.0, 1.0)


def _psr(corr: np.ndarray, k: np.ndarray, py: np.ndarray, px: np.ndarray) -> np.ndarray:
    """Peak-to-sidelobe ratio: the peak against the surface outside a 5x5 neighbourhood of it
    (sums over the whole surface less the 25 neighbours: no masked copy of the surfaces)."""
    m, h, w = corr.shape
    flat = corr.reshape(m, -1)
    idx = np.arange(m)
    peak = flat[idx, k].astype(np.float64)
    total = flat.sum(axis=1, dtype=np.float64)
    sq = np.einsum("ij,ij->i", flat, flat, dtype=np.float64)
    oy, ox = np.mgrid[-2:3, -2:3]
    ny = (py.astype(np.intp)[:, None] + oy.ravel()[None, :]) % h
    nx = (px.astype(np.intp)[:, None] + ox.ravel()[None, :]) % w
    near = corr[idx[:, None], ny, nx].astype(np.float64)  # (m, 25)
    cnt = h * w - near.shape[1]
    mu = (total - near.sum(axis=1)) / cnt
    var = (sq - (near * near).sum(axis=1)) / cnt - mu * mu
    return (peak - mu) / np.maximum(np.sqrt(np.maximum(var, 0.0)), 1e-12)


def correlate_windows(
    ref: np.ndarray,
    tgt: np.ndarray,
    ref_valid: np.ndarray,
    tgt_valid: np.ndarray,
    *,
    refine: bool = False,
    whiten: float = 1.0,
    workers: int = 2,
) -> WindowShifts:
    """Shift of the target relative to the reference in each window pair.

    Parameters
    ----------
    ref, tgt : ndarray of shape (n, w, w)
        Windows at the same nominal position (NaN where invalid).
    ref_valid, tgt_valid : ndarray of shape (n, w, w)
        Boolean validity.
    refine : bool
        Second pass with the measured fractional shift removed from the target window (a Fourier
        shift before tapering), which cancels the taper's pull towards zero shift.
    whiten : float
        Exponent ``p`` of the cross-power normalisation ``X / |X|**p``: 1 is phase correlation
        (every frequency counts alike: sharp peaks on broadband texture), 0.5 a partial whitening
        that lets strong narrow-band texture (a few waves under white noise) outweigh the noise.
    workers : int
        Threads for the FFTs (scipy.fft convention).

    Returns
    -------
    WindowShifts
        Shifts in the contract's convention, within +-w/2.
    """
    if ref.shape != tgt.shape or ref.ndim != 3 or ref.shape[1] != ref.shape[2]:
        raise ValueError(f"window stacks must be (n, w, w) and equal, got {ref.shape} {tgt.shape}")
    n, w, _ = ref.shape
    a, fa = normalise_windows(ref, ref_valid)
    b, fb = normalise_windows(tgt, tgt_valid)
    measured = (fa >= MIN_VALID_FRACTION) & (fb >= MIN_VALID_FRACTION)
    dx = np.full(n, np.nan)
    dy = np.full(n, np.nan)
    psr = np.zeros(n)
    if not measured.any():
        return WindowShifts(dx, dy, psr, psr_to_reliability(psr), measured)
    sel = np.flatnonzero(measured)
    if len(sel) < n:
        a, b = a[sel], b[sel]
    taper = _taper(w)
    weight = _spectral_weight(w)[:, : w // 2 + 1]
    fa_ = np.conj(sfft.rfft2(a * taper, workers=workers))
    fb_raw = sfft.rfft2(b, workers=workers) if refine else None
    b *= taper

    def cross(fb_t: np.ndarray) -> np.ndarray:
        x = fb_t * fa_
        mag = np.abs(x)
        if whiten == 1.0:
            mag += np.float32(1e-6)
        else:
            mag = np.power(mag, np.float32(whiten), out=mag)
            mag += np.float32(1e-6)
        np.divide(weight, mag, out=mag)
        x *= mag
        return x.astype(np.complex64, copy=False)

    xs = cross(sfft.rfft2(b, workers=workers))
    corr = sfft.irfft2(xs, s=(w, w), workers=workers)
    m = len(sel)
    k = corr.reshape(m, -1).argmax(axis=1)
    iy, ix = np.unravel_index(k, (w, w))
    p = _psr(corr, k, iy, ix)
    del corr
    py = np.where(iy > w // 2, iy - w, iy).astype(np.float64)
    px = np.where(ix > w // 2, ix - w, ix).astype(np.float64)
    sy, sx = _upsampled_peak(xs, py, px, UPSAMPLE, w)
    if refine:
        assert fb_raw is not None
        # remove the measured shift from the untapered target, taper again, measure what is left
        fy = sfft.fftfreq(w)[:, None]
        fx = sfft.rfftfreq(w)[None, :]
        ramp = np.exp(2j * np.pi * (sy[:, None, None] * fy + sx[:, None, None] * fx))
        b2 = sfft.irfft2(fb_raw * ramp.astype(np.complex64), s=(w, w), workers=workers)
        xs2 = cross(sfft.rfft2(b2.astype(np.float32) * taper, workers=workers))
        zero = np.zeros(m)
        ey, ex = _upsampled_peak(xs2, zero, zero, UPSAMPLE, w)
        ok = (np.abs(ey) < 0.75) & (np.abs(ex) < 0.75)
        sy = np.where(ok, sy + ey, sy)
        sx = np.where(ok, sx + ex, sx)
    dx[sel], dy[sel], psr[sel] = sx, sy, p
    return WindowShifts(dx, dy, psr, psr_to_reliability(psr), measured)


def ncc_to_reliability(ncc: np.ndarray) -> np.ndarray:
    """Map the normalised cross-correlation of aligned windows to [0, 1]: 0 up to 0.6 (unrelated
    smooth fields reach that by chance), 1 from 0.9 on."""
    return np.clip((ncc - 0.6) / 0.3, 0.0, 1.0)


def _stack_level(win: np.ndarray, valid: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of a stack of windows over its valid pixels."""
    # all valid (the common case): the stack itself, not a copy (the same sums: contiguous)
    vals = win.ravel() if valid.all() and win.flags.c_contiguous else win[valid]
    mu = float(vals.mean()) if vals.size else 0.0
    sd = float(vals.std()) if vals.size else 1.0
    return mu, max(sd, 1e-12)


@lru_cache(maxsize=8)
def _gaussian_taps(sigma: float) -> np.ndarray:
    """The right half (centre first) of ``scipy.ndimage.gaussian_filter``'s kernel for
    ``sigma`` (truncated at 4 sigma, normalised), float32."""
    radius = int(4.0 * sigma + 0.5)
    x = np.arange(radius + 1)
    phi = np.exp(-0.5 / (sigma * sigma) * x.astype(np.float64) ** 2)
    return (phi / (2.0 * phi.sum() - phi[0])).astype(np.float32)


def gaussian_nearest(img: np.ndarray, sigma: float) -> np.ndarray:
    """``scipy.ndimage.gaussian_filter(img, sigma, mode="nearest")`` of a 2-D float32 image, to
    float32 rounding (the kernel's symmetric taps summed pairwise over edge-padded slices, in
    float32): about twice as fast, as scipy filters the columns through a strided line buffer
    and in float64 (on 512 px gradient windows it was a third of the solve)."""
    half = _gaussian_taps(float(sigma))
    r = len(half) - 1
    h, w = img.shape
    tmp = np.empty((h, w), np.float32)
    # along rows (columns padded), then along columns (rows padded)
    p = np.pad(np.asarray(img, np.float32), ((0, 0), (r, r)), mode="edge")
    out = p[:, r : r + w] * half[0]
    for j in range(1, r + 1):
        np.add(p[:, r - j : r - j + w], p[:, r + j : r + j + w], out=tmp)
        tmp *= half[j]
        out += tmp
    p = np.pad(out, ((r, r), (0, 0)), mode="edge")
    out = p[r : r + h] * half[0]
    for j in range(1, r + 1):
        np.add(p[r - j : r - j + h], p[r + j : r + j + h], out=tmp)
        tmp *= half[j]
        out += tmp
    return out


def _prepared(
    win: np.ndarray, valid: np.ndarray, level: tuple[float, float], smooth: float
) -> tuple[np.ndarray, np.ndarray]:
    """One window less the stack's mean, over its standard deviation, 0 where invalid (float32),
    smoothed (Gaussian ``smooth`` px); and its validity without the pixels the smoothing carried
    invalid ones into."""
    mu, sd = level
    out = np.where(valid, (win - mu) / sd, 0.0).astype(np.float32)
    if smooth <= 0:
        return out, valid
    out = gaussian_nearest(out, smooth)
    if not valid.all():
        r = int(math.ceil(3 * smooth))
        valid = ~ndi.maximum_filter(~valid, size=2 * r + 1)
    return out, valid


def _sample_bilinear(
    img: np.ndarray, sy: float, sx: float, rows: tuple[int, int], cols: tuple[int, int]
) -> np.ndarray:
    """``img`` sampled at ``(y + sy, x + sx)`` for ``y`` in ``range(*rows)`` and ``x`` in
    ``range(*cols)``: bilinear, coordinates outside clamped to the edge (float32).

    An integer slice plus a 4-tap fractional blend; equal (to float32 rounding) to that part
    of ``scipy.ndimage.shift(img, (-sy, -sx), order=1, mode="nearest")``. Slices when every
    sample lies inside ``img``, else clipped index arrays.
    """
    h, w = img.shape
    iy, ix = math.floor(sy), math.floor(sx)
    ty, tx = np.float32(sy - iy), np.float32(sx - ix)
    r0, r1 = rows[0] + iy, rows[1] + iy + (1 if ty else 0)
    c0, c1 = cols[0] + ix, cols[1] + ix + (1 if tx else 0)
    if r0 >= 0 and c0 >= 0 and r1 <= h and c1 <= w:
        src = img[r0:r1, c0:c1]
    else:
        src = img[np.clip(np.arange(r0, r1), 0, h - 1)][:, np.clip(np.arange(c0, c1), 0, w - 1)]
    src = np.asarray(src, dtype=np.float32)
    if tx:
        src = src[:, :-1] * (np.float32(1.0) - tx) + src[:, 1:] * tx
    if ty:
        src = src[:-1] * (np.float32(1.0) - ty) + src[1:] * ty
    return np.array(src, dtype=np.float32, copy=not (tx or ty))


def shift_bilinear(img: np.ndarray, shift: tuple[float, float]) -> np.ndarray:
    """``scipy.ndimage.shift(img, shift, order=1, mode="nearest")`` of a 2-D image, in float32
    (an integer slice plus a fractional blend: several times faster)."""
    h, w = img.shape
    return _sample_bilinear(img, -float(shift[0]), -float(shift[1]), (0, h), (0, w))


def gradient_windows(
    ref: np.ndarray,
    tgt: np.ndarray,
    ref_valid: np.ndarray,
    tgt_valid: np.ndarray,
    init_dx: np.ndarray,
    init_dy: np.ndarray,
    *,
    iterations: int = 8,
    smooth: float = 1.5,
    threads: int = 1,
) -> WindowShifts:
    """Shift of the target in each window pair by iterated least squares on image gradients
    (Lucas-Kanade), for smooth texture that phase correlation cannot pin down: a few long waves
    under strong white noise (its whitened spectrum is mostly noise, and one wave alone fixes the
    shift only across its crests).

    Both stacks are normalised with one gain and offset each (per-window normalisation would
    discard the level change a long wave moved along its crests causes) and smoothed (Gaussian
    ``smooth`` px: it removes the noise's gradients, not the texture's). Each iteration moves
    the target window by the current estimate (bilinear: the smoothed texture is smooth) and
    solves ``tgt_moved - ref = -delta . grad + gain * tgt_moved`` in least squares over the
    pixels valid in both and away from the moved border, with the gradient of the mean of both
    (central differences: second-order accurate). Starts at
    ``init``; iterates until the update is below 2e-3 px (at most ``iterations`` times);
    windows whose estimate leaves the window, whose normal equations are singular, or whose
    updates do not settle (see :data:`STALL`) are not measured.

    Only the interior the solve uses is resampled (an integer slice and a 4-tap blend, float32),
    and the 3 x 3 normal equations are summed row by row in float32 and over rows in float64.
    Windows are solved on ``threads`` threads (numpy releases the GIL on arrays this size); each
    window's solve is independent, so the result does not depend on ``threads``.

    Returns
    -------
    WindowShifts
        Shifts in the contract's convention; ``psr`` holds the normalised cross-correlation of
        the aligned windows, ``reliability`` its :func:`ncc_to_reliability`.
    """
    n, w, _ = ref.shape
    va = ref_valid & np.isfinite(ref)
    vbb = tgt_valid & np.isfinite(tgt)
    fa, fb = va.mean(axis=(1, 2)), vbb.mean(axis=(1, 2))
    measured = (fa >= MIN_VALID_FRACTION) & (fb >= MIN_VALID_FRACTION)
    sx = np.asarray(init_dx, dtype=np.float64).copy()
    sy = np.asarray(init_dy, dtype=np.float64).copy()
    ncc = np.zeros(n)
    # one gain and offset for the whole stack, not per window: a long wave moved along its
    # crests changes a window's level, which per-window normalisation would discard
    level_a, level_b = _stack_level(ref, va), _stack_level(tgt, vbb)
    sel = np.flatnonzero(measured)  # only these are smoothed and measured

    def solve(j: int) -> None:
        i = int(sel[j])
        ai, vai = _prepared(ref[i], va[i], level_a, smooth)
        bi, vbi = _prepared(tgt[i], vbb[i], level_b, smooth)
        ref_full = bool(vai.all())
        vb = None if vbi.all() else vbi.astype(np.float32)
        ok = True
        use: np.ndarray | None = None
        lo = hi = 0
        last = math.inf  # the size of the last update (px)
        for it in range(iterations):
            if not (abs(sx[i]) < w / 4 and abs(sy[i]) < w / 4):
                ok = False
                break
            # the pixels solved for: ``edge`` px in from the window's border (the moved target
            # is resampled there from inside the window only), one more for the gradient
            edge = int(math.ceil(max(abs(sx[i]), abs(sy[i])))) + 3
            lo, hi = edge, w - edge
            # bw(x) = b(x + s): the target moved back onto the reference
            bw = _sample_bilinear(bi, sy[i], sx[i], (lo - 1, hi + 1), (lo - 1, hi + 1))
            use = None if ref_full else vai[lo:hi, lo:hi]
            if vb is not None:
                vw = _sample_bilinear(vb, sy[i], sx[i], (lo, hi), (lo, hi)) > 0.999
                use = vw if use is None else use & vw
            count = (hi - lo) ** 2 if use is None else int(np.count_nonzero(use))
            if count < 0.25 * w * w:
                ok = False
                break
            m = ai[lo - 1 : hi + 1, lo - 1 : hi + 1] + bw
            k = hi - lo
            # per row: gradient x, gradient y, moved target (unknowns: the shift update and a
            # gain of the window; no offset: see above), residual
            jac = np.empty((k, 4, k), np.float32)
            np.subtract(m[1:-1, 2:], m[1:-1, :-2], out=jac[:, 0])
            np.subtract(m[2:, 1:-1], m[:-2, 1:-1], out=jac[:, 1])
            jac[:, :2] *= np.float32(0.25)  # half the mean's central difference
            jac[:, 2] = bw[1:-1, 1:-1]
            np.subtract(jac[:, 2], ai[lo:hi, lo:hi], out=jac[:, 3])
            if use is not None:
                jac[:, :3] *= use[:, None, :]
            gram = np.matmul(jac, jac.transpose(0, 2, 1)).sum(axis=0, dtype=np.float64)
            h = gram[:3, :3]
            # 2-norm condition number of the symmetric Gram matrix from its eigenvalues (a
            # quarter of np.linalg.cond's SVD time, once per window and iteration)
            ev = np.abs(np.linalg.eigvalsh(h)) if np.isfinite(h).all() else np.zeros(3)
            if not ev.max() < 1e6 * ev.min():
                ok = False
                break
            step = np.linalg.solve(h, gram[:3, 3])
            sx[i] -= step[0]
            sy[i] -= step[1]
            size = max(abs(step[0]), abs(step[1]))
            if it >= 2 and size > STALL * last and size >= SETTLED:
                ok = False  # shrinking too slowly to settle in the iterations left
                break
            last = size
            if size < 2e-3:
                break
        if not ok or last >= SETTLED:
            measured[i] = False
            return
        bw = _sample_bilinear(bi, sy[i], sx[i], (lo, hi), (lo, hi))
        x, y = ai[lo:hi, lo:hi], bw
        if use is not None:
            x, y = x[use], y[use]
        x = x - x.mean()
        y = y - y.mean()
        ncc[i] = float(
            np.vdot(x, y) / max(math.sqrt(float(np.vdot(x, x)) * float(np.vdot(y, y))), 1e-12)
        )

    if threads > 1 and len(sel) > 1:
        with ThreadPoolExecutor(min(threads, len(sel))) as pool:
            list(pool.map(solve, range(len(sel))))
    else:
        for j in range(len(sel)):
            solve(j)
    sx[~measured] = np.nan
    sy[~measured] = np.nan
    return WindowShifts(sx, sy, ncc, ncc_to_reliability(ncc) * measured, measured)
