"""Fit a shift model to tie points: robust translation or RANSAC affine, chosen by evidence.

Pure numpy. Points are window centres ``(col, row)`` in reference pixel coordinates with the
measured displacement ``(dx, dy)`` in the contract's convention (reference -> target).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from affine import Affine

ModelKind = Literal["translation", "affine"]

#: F statistic above which the affine model is taken as significantly better than a translation
F_AFFINE = 25.0
#: ... and the least displacement difference over the area it must make (pixels)
MIN_AFFINE_EFFECT = 0.05


@dataclass(frozen=True)
class ModelFit:
    """A fitted displacement model ``d(p) = J @ p + t`` with its inliers."""

    kind: ModelKind
    jacobian: np.ndarray  # (2, 2), zeros for a translation
    offset: np.ndarray  # (2,)
    inliers: np.ndarray  # bool over the input points
    rms: float  # weighted RMS residual of the inliers (px)

    def displacement(self, col: np.ndarray | float, row: np.ndarray | float) -> np.ndarray:
        """Displacement ``(dx, dy)`` at reference position(s) ``(col, row)``; shape (2, ...)."""
        c = np.asarray(col, dtype=float)
        r = np.asarray(row, dtype=float)
        j, t = self.jacobian, self.offset
        return np.stack([j[0, 0] * c + j[0, 1] * r + t[0], j[1, 0] * c + j[1, 1] * r + t[1]])

    def to_affine(self) -> Affine:
        """The pixel-space map reference ``(col, row)`` -> target ``(col, row)``."""
        j, t = self.jacobian, self.offset
        if self.kind == "translation":
            return Affine.translation(float(t[0]), float(t[1]))
        return Affine(1.0 + j[0, 0], j[0, 1], float(t[0]), j[1, 0], 1.0 + j[1, 1], float(t[1]))


def _design(c: np.ndarray, r: np.ndarray) -> np.ndarray:
    return np.stack([c, r, np.ones_like(c)], axis=1)


def _wls_affine(
    c: np.ndarray, r: np.ndarray, d: np.ndarray, w: np.ndarray, centre: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted least-squares affine displacement model (centred coordinates for conditioning)."""
    cc, rc = c - centre[0], r - centre[1]
    a = _design(cc, rc) * np.sqrt(w)[:, None]
    coef, *_ = np.linalg.lstsq(a, d * np.sqrt(w)[:, None], rcond=None)  # (3, 2)
    jac = coef[:2].T  # rows: dx, dy; cols: c, r
    off = coef[2] - jac @ np.array(centre)
    return jac, off


def _residuals(c: np.ndarray, r: np.ndarray, d: np.ndarray, jac: np.ndarray, off: np.ndarray):
    pred = np.stack(
        [jac[0, 0] * c + jac[0, 1] * r + off[0], jac[1, 0] * c + jac[1, 1] * r + off[1]]
    )
    return np.hypot(d[:, 0] - pred[0], d[:, 1] - pred[1])


def fit_translation(
    c: np.ndarray, r: np.ndarray, d: np.ndarray, w: np.ndarray, tol: float = 0.5
) -> ModelFit:
    """Robust weighted translation: start at the weighted median, iterate inliers and mean."""
    order = np.argsort(d[:, 0])
    cum = np.cumsum(w[order])
    t0 = d[order[np.searchsorted(cum, cum[-1] / 2)], 0]
    order = np.argsort(d[:, 1])
    t1 = d[order[np.searchsorted(cum_y := np.cumsum(w[order]), cum_y[-1] / 2)], 1]
    t = np.array([t0, t1])
    zero = np.zeros((2, 2))
    inl = np.ones(len(c), dtype=bool)
    for _ in range(5):
        res = np.hypot(d[:, 0] - t[0], d[:, 1] - t[1])
        inl = res <= _adaptive_tol(res, inl, tol)
        if inl.sum() == 0:
            break
        t = (d[inl] * w[inl, None]).sum(axis=0) / w[inl].sum()
    res = np.hypot(d[:, 0] - t[0], d[:, 1] - t[1])
    return ModelFit("translation", zero, t, inl, _wrms(res, w, inl))


def _adaptive_tol(res: np.ndarray, inl: np.ndarray, tol: float) -> float:
    """Inlier radius: 3 robust sigmas of the current inliers, within [tol/3, tol]."""
    if inl.sum() < 3:
        return tol
    sigma = 1.4826 * float(np.median(res[inl]))
    return float(min(tol, max(tol / 3.0, 3.0 * sigma)))


def _wrms(res: np.ndarray, w: np.ndarray, inl: np.ndarray) -> float:
    if not inl.any():
        return float("inf")
    return float(np.sqrt((w[inl] * res[inl] ** 2).sum() / w[inl].sum()))


def fit_affine_ransac(
    c: np.ndarray,
    r: np.ndarray,
    d: np.ndarray,
    w: np.ndarray,
    centre: tuple[float, float],
    tol: float = 0.5,
    iterations: int = 300,
    seed: int = 0,
) -> ModelFit:
    """RANSAC affine displacement model, then iterated weighted least squares on its inliers."""
    n = len(c)
    rng = np.random.default_rng(seed)
    best = np.ones(n, dtype=bool)
    if n > 3:
        idx = np.stack([rng.choice(n, 3, replace=False) for _ in range(iterations)])
        cc, rc = c - centre[0], r - centre[1]
        a = np.stack([cc[idx], rc[idx], np.ones(idx.shape)], axis=2)  # (k, 3, 3)
        b = d[idx]  # (k, 3, 2)
        det = np.linalg.det(a)
        good = np.abs(det) > 1e-6 * (np.abs(cc).max() * np.abs(rc).max() + 1.0)
        if good.any():
            coef = np.linalg.solve(a[good], b[good])  # (k, 3, 2)
            pred_x = (
                cc[None, :] * coef[:, 0, 0, None] + rc * coef[:, 1, 0, None] + coef[:, 2, 0, None]
            )
            pred_y = (
                cc[None, :] * coef[:, 0, 1, None] + rc * coef[:, 1, 1, None] + coef[:, 2, 1, None]
            )
            res = np.hypot(d[None, :, 0] - pred_x, d[None, :, 1] - pred_y)
            score = ((res <= tol) * w[None, :]).sum(axis=1)
            best = res[int(score.argmax())] <= tol
    inl = best
    jac, off = np.zeros((2, 2)), np.zeros(2)
    for _ in range(5):
        if inl.sum() < 3:
            break
        jac, off = _wls_affine(c[inl], r[inl], d[inl], w[inl], centre)
        res = _residuals(c, r, d, jac, off)
        inl = res <= _adaptive_tol(res, inl, tol)
    res = _residuals(c, r, d, jac, off)
    return ModelFit("affine", jac, off, inl, _wrms(res, w, inl))


def choose_model(
    c: np.ndarray,
    r: np.ndarray,
    d: np.ndarray,
    w: np.ndarray,
    extent: tuple[float, float],
    mode: Literal["auto", "global", "local"] = "auto",
    tol: float = 0.5,
) -> tuple[ModelFit, float]:
    """Fit translation and affine; keep the affine only where it is significantly better.

    Parameters
    ----------
    c, r : ndarray of shape (n,)
        Tie-point positions (reference pixel coordinates).
    d : ndarray of shape (n, 2)
        Measured displacements.
    w : ndarray of shape (n,)
        Weights (peak reliabilities).
    extent : (width, height)
        The area, for the model's centre and its effect across the area.
    mode : {"auto", "global", "local"}
        ``global`` forces a translation, ``local`` an affine (given at least 6 points).
    tol : float
        Inlier radius in pixels (upper bound; shrinks to 3 robust sigmas).

    Returns
    -------
    (ModelFit, float)
        The chosen model and the F statistic of affine against translation (0 when not tested).
    """
    centre = (extent[0] / 2.0, extent[1] / 2.0)
    trans = fit_translation(c, r, d, w, tol)
    for wider in (3.0 * tol, 9.0 * tol):
        # a shift that varies over the area leaves few points within tol of any translation:
        # widen the radius (the residual RMS then lowers the reliability) rather than give up
        if trans.inliers.sum() >= max(3, 0.3 * len(c)):
            break
        trans = fit_translation(c, r, d, w, wider)
    if mode == "global" or len(c) < 6:
        return trans, 0.0
    aff = fit_affine_ransac(c, r, d, w, centre, tol)
    inl = aff.inliers
    k = int(inl.sum())
    if k < 6:
        return (aff if mode == "local" and k >= 3 else trans), 0.0
    # F test on the affine's inliers: 4 extra parameters, 2 observations per point
    t = (d[inl] * w[inl, None]).sum(axis=0) / w[inl].sum()
    rss_t = float((w[inl] * ((d[inl] - t) ** 2).sum(axis=1)).sum())
    rss_a = float(
        (w[inl] * _residuals(c[inl], r[inl], d[inl], aff.jacobian, aff.offset) ** 2).sum()
    )
    dof = max(2 * k - 6, 1)
    f = ((rss_t - rss_a) / 4.0) / max(rss_a / dof, 1e-12)
    corners_c = np.array([0.0, extent[0], 0.0, extent[0]])
    corners_r = np.array([0.0, 0.0, extent[1], extent[1]])
    dc = aff.displacement(corners_c, corners_r) - aff.displacement(*centre)[:, None]
    effect = float(np.hypot(dc[0], dc[1]).max())
    if mode == "local" or (f > F_AFFINE and effect > MIN_AFFINE_EFFECT):
        return aff, f
    return trans, f
