"""Registration noise: the spectral evidence that textured ground shows when it did not change.

Co-registration leaves a fraction of a pixel, and two views, two suns and two point-spread
functions move fine texture by as much again. Where the ground is smooth that is nothing; where
it is textured (gravel, a roof's seams, a wall's edge, woods) a pixel's value moves by about the
shift times the local gradient, so the residual of the no-change fit grows with the gradient
(Dai and Khorram 1998; Bruzzone and Cossu 2003 call it registration noise). The fit's scatter is
set by the common, smooth ground, so without a model of this growth textured ground that did not
change reads as change.

The model: the spectral evidence's median at shared texture ``m`` is ``q0 * (1 + c2 * m^2)``,
``m = min(gbn, gan)``, each date's gradient magnitude in units of its typical one. The minimum,
not either date alone: registration noise needs the texture on both dates, while an outline that
came or went is texture on one date only and keeps its evidence in full. ``c2`` is fitted on the
fit sample (:func:`fit_registration_noise`) and the change stage divides the spectral evidence
by ``1 + c2 * m^2`` (:func:`damp_registration_noise`).
"""

from __future__ import annotations

import numpy as np

TEXTURED = 1.0  # shared texture (units of the typical gradient) from which the growth is fitted
BINS = 8  # quantile bins of the textured sample the growth is fitted over
MIN_TEXTURED = 800  # textured sample pixels needed for a fit (else no growth: c2 = 0)
FLAT_SHARE = 0.2  # the flattest share of the sample, whose median sets q0


def shared_texture(gbn: np.ndarray, gan: np.ndarray) -> np.ndarray:
    """The texture both dates show: ``min(gbn, gan)`` (float32, a new array)."""
    return np.minimum(gbn, gan)


def fit_registration_noise(spec2: np.ndarray, shared: np.ndarray) -> float:
    """``c2`` of the model above, from the fit sample's spectral evidence ``spec2`` (the mean
    squared standardised residual over the bands) and its :func:`shared_texture` ``shared``.

    ``q0``: the median of ``spec2`` over the flattest :data:`FLAT_SHARE` of the sample. The
    pixels with shared texture of at least :data:`TEXTURED` fall in :data:`BINS` bins of equal
    count by ``shared``; each bin gives its median ``shared^2`` and ``median(spec2) / q0 - 1``,
    and ``c2`` is their least-squares slope through the origin, at least 0. Medians, so the
    changed pixels in a bin (a minority where change is the exception) do not move it. 0 when
    fewer than :data:`MIN_TEXTURED` pixels are textured."""
    ok = np.isfinite(spec2) & np.isfinite(shared)
    spec2, shared = spec2[ok], shared[ok]
    if shared.size < MIN_TEXTURED:
        return 0.0
    q0 = float(np.median(spec2[shared <= np.quantile(shared, FLAT_SHARE)]))
    textured = shared >= TEXTURED
    if not q0 > 0 or int(np.count_nonzero(textured)) < MIN_TEXTURED:
        return 0.0
    m, s = shared[textured], spec2[textured]
    order = np.argsort(m, kind="stable")
    x = np.empty(BINS)
    y = np.empty(BINS)
    for i, part in enumerate(np.array_split(order, BINS)):
        x[i] = float(np.median(m[part])) ** 2
        y[i] = float(np.median(s[part])) / q0 - 1.0
    return max(0.0, float((x * y).sum() / (x * x).sum()))


def damp_registration_noise(spec2: np.ndarray, gbn: np.ndarray, gan: np.ndarray, c2: float) -> None:
    """Divide ``spec2`` in place by ``1 + c2 * min(gbn, gan)^2`` (nothing when ``c2`` is 0)."""
    if not c2 > 0:
        return
    m = shared_texture(gbn, gan)
    np.square(m, out=m)
    m *= np.float32(c2)
    m += np.float32(1.0)
    spec2 /= m
