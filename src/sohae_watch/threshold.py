"""Thresholds on a change score that respect how rare change usually is.

Everything here works on a histogram, so a threshold can be fitted from a sample of windows and
costs no global sort.
"""

from __future__ import annotations

import numpy as np

__all__ = ["histogram_quantiles", "kittler_illingworth", "otsu"]


def _histogram(values: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    v = values[np.isfinite(values)]
    if v.size == 0:
        raise ValueError("no finite values to threshold")
    lo, hi = float(v.min()), float(v.max())
    if hi <= lo:
        hi = lo + 1.0
    counts, edges = np.histogram(v, bins=bins, range=(lo, hi))
    return counts.astype(np.float64), 0.5 * (edges[:-1] + edges[1:])


def otsu(values: np.ndarray, bins: int = 512) -> float:
    """Otsu's threshold (maximum between-class variance): the textbook baseline."""
    h, c = _histogram(values, bins)
    w0 = np.cumsum(h)
    w1 = w0[-1] - w0
    m0 = np.cumsum(h * c)
    mt = m0[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mt * w0 / w0[-1] - m0) ** 2 / (w0 * w1)
    between[~np.isfinite(between)] = -1
    return float(c[int(np.argmax(between))])


def kittler_illingworth(values: np.ndarray, bins: int = 512) -> float:
    """Minimum-error threshold of Kittler and Illingworth (two Gaussians of unequal size and spread)."""
    h, c = _histogram(values, bins)
    p = h / h.sum()
    w0 = np.cumsum(p)
    w1 = 1.0 - w0
    m0c = np.cumsum(p * c)
    s0c = np.cumsum(p * c * c)
    with np.errstate(divide="ignore", invalid="ignore"):
        mu0 = m0c / w0
        mu1 = (m0c[-1] - m0c) / w1
        v0 = s0c / w0 - mu0**2
        v1 = (s0c[-1] - s0c) / w1 - mu1**2
        j = 1 + 2 * (w0 * np.log(np.sqrt(v0)) + w1 * np.log(np.sqrt(v1)))
        j -= 2 * (w0 * np.log(w0) + w1 * np.log(w1))
    ok = np.isfinite(j) & (w0 > 1e-4) & (w1 > 1e-4) & (v0 > 0) & (v1 > 0)
    if not ok.any():
        return float(c[-1])
    j[~ok] = np.inf
    return float(c[int(np.argmin(j))])


def histogram_quantiles(values: np.ndarray, qs: list[float], bins: int = 4096) -> list[float]:
    """Approximate quantiles of ``values`` (finite ones) from a fine histogram."""
    h, c = _histogram(values, bins)
    cdf = np.cumsum(h) / h.sum()
    return [float(c[min(len(c) - 1, int(np.searchsorted(cdf, q)))]) for q in qs]
