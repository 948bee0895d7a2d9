"""Batched FFT phase correlation of window pairs: the measuring instrument of co-registration.

Pure numpy/scipy, no I/O. Every function works on a stack of windows of shape (n, w, w) so that
thousands of tie points cost a few batched FFTs.

Sign convention (the project contract's): when the target window shows the reference window's
content moved by ``(dx, dy)`` pixels (a feature at ``(c, r)`` in the reference is at
``(c + dx, r + dy)`` in the target), :func:`correlate_windows` returns ``(dx, dy)``. This is the
opposite sign of ``skimage.registration.phase_cross_correlation(reference, target)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import fft as sfft
from scipy import ndimage as ndi

#: a window needs at least this fraction of valid pixels in both images to be measured
MIN_VALID_FRACTION = 0.75
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
    v = valid & np.isfinite(win)
    frac = v.mean(axis=(1, 2))
    a = np.where(v, win, 0.0).astype(np.float32)
    vf = v.astype(np.float32)
    cnt = np.maximum(v.sum(axis=(1, 2)), 1)
    mean = a.sum(axis=(1, 2)) / cnt
    a = np.where(v, a - mean[:, None, None], 0.0)
    std = np.sqrt((a * a).sum(axis=(1, 2)) / cnt)
    a /= np.maximum(std, 1e-12)[:, None, None]
    if not v.all():
        # soften the mask boundary so that it carries no sharp edge of its own
        soft = ndi.uniform_filter(vf, size=(1, 7, 7), mode="nearest")
        a *= np.where(v, soft, 0.0)
    return a.astype(np.float32), frac


def _upsampled_peak(
    xspec: np.ndarray, py: np.ndarray, px: np.ndarray, up: int
) -> tuple[np.ndarray, np.ndarray]:
    """Sub-pixel peak of the inverse DFT of ``xspec`` near integer peaks ``(py, px)``.

    Evaluates the correlation on a ``1/up`` pixel lattice over +-``SPAN`` px by matrix
    multiplication (as skimage's ``_upsampled_dft``), then refines the best node with a parabola.
    """
    n, h, w = xspec.shape
    half = int(round(SPAN * up))
    r = 2 * half + 1
    steps = (np.arange(r) - half) / up
    fy = sfft.fftfreq(h)
    fx = sfft.fftfreq(w)
    # move each window's integer peak to the origin (separable phase ramps), so that one pair
    # of DFT matrices serves every window and the products are two large BLAS calls
    ry = np.exp(2j * np.pi * py[:, None] * fy[None, :]).astype(np.complex64)  # (n, h)
    rx = np.exp(2j * np.pi * px[:, None] * fx[None, :]).astype(np.complex64)  # (n, w)
    shifted = xspec * ry[:, :, None] * rx[:, None, :]
    ky = np.exp(2j * np.pi * steps[:, None] * fy[None, :]).astype(np.complex64)  # (r, h)
    kx = np.exp(2j * np.pi * steps[:, None] * fx[None, :]).astype(np.complex64)  # (r, w)
    z = (shifted.reshape(n * h, w) @ kx.T).reshape(n, h, r)
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


def correlate_windows(
    ref: np.ndarray,
    tgt: np.ndarray,
    ref_valid: np.ndarray,
    tgt_valid: np.ndarray,
    *,
    refine: bool = False,
    workers: int = -1,
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
    a, b = a[sel], b[sel]
    taper = _taper(w)
    weight = _spectral_weight(w)
    fa_ = sfft.fft2(a * taper, workers=workers)
    fb_raw = sfft.fft2(b, workers=workers)
    fb_ = sfft.fft2(b * taper, workers=workers)

    def cross(fb_t: np.ndarray) -> np.ndarray:
        x = fb_t * np.conj(fa_)
        x /= np.abs(x) + 1e-6
        x *= weight
        return x.astype(np.complex64)

    xs = cross(fb_)
    corr = sfft.ifft2(xs, workers=workers).real
    m = len(sel)
    flat = corr.reshape(m, -1)
    k = flat.argmax(axis=1)
    py, px = np.unravel_index(k, (w, w))
    py = np.where(py > w // 2, py - w, py).astype(np.float64)
    px = np.where(px > w // 2, px - w, px).astype(np.float64)
    # peak-to-sidelobe ratio: peak against the surface outside a 5x5 neighbourhood of it
    peak = flat[np.arange(m), k]
    mask = np.ones((m, w, w), dtype=bool)
    for oy in range(-2, 3):
        for ox in range(-2, 3):
            mask[np.arange(m), (py.astype(int) + oy) % w, (px.astype(int) + ox) % w] = False
    side = np.where(mask, corr, np.nan).reshape(m, -1)
    mu = np.nanmean(side, axis=1)
    sd = np.nanstd(side, axis=1)
    p = (peak - mu) / np.maximum(sd, 1e-12)
    sy, sx = _upsampled_peak(xs, py, px, UPSAMPLE)
    if refine:
        # remove the measured shift from the untapered target, taper again, measure what is left
        fy = sfft.fftfreq(w)[:, None]
        fx = sfft.fftfreq(w)[None, :]
        ramp = np.exp(2j * np.pi * (sy[:, None, None] * fy + sx[:, None, None] * fx))
        b2 = sfft.ifft2(fb_raw * ramp, workers=workers).real.astype(np.float32)
        xs2 = cross(sfft.fft2(b2 * taper, workers=workers))
        zero = np.zeros(m)
        ey, ex = _upsampled_peak(xs2, zero, zero, UPSAMPLE)
        ok = (np.abs(ey) < 0.75) & (np.abs(ex) < 0.75)
        sy = np.where(ok, sy + ey, sy)
        sx = np.where(ok, sx + ex, sx)
    dx[sel], dy[sel], psr[sel] = sx, sy, p
    return WindowShifts(dx, dy, psr, psr_to_reliability(psr), measured)
