"""Relative radiometric normalisation fitted on pixels that did not change.

AFTER is mapped onto BEFORE's radiometry band by band with an orthogonal (total least squares)
regression, fitted on the pixels whose standardised change is small (the MAD/radcal idea). The
reweighting is a trimmed iteration: a pixel is "no change" when its chi-square statistic is below the
90 % quantile, and when that set collapses (season, snow, a scene that changed a lot) the lowest
``min_keep`` share of the statistic is used instead, so the fit never rests on a handful of pixels.

Where a near-infrared band tells vegetation, the ground green on both dates and the ground bare on
both get a fit each (:class:`Strata`): grass and crops change colour with the season while roofs,
paving and soil do not, so one line per band through both follows the larger of them and reads the
other as changed. A pixel green on one date only keeps the scene-wide fit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import chdtri

__all__ = [
    "VEGETATED_NDVI",
    "BandFit",
    "Strata",
    "agreeing_share",
    "chi_squares",
    "fit_normalisation",
    "fit_strata",
    "follows_neither",
    "green_on_either",
    "matched",
    "ndvi",
    "ndvi_classes",
    "residual_into",
    "sample_pixels",
    "scatter_shares",
    "standardised_residuals",
]


@dataclass(frozen=True)
class BandFit:
    """``after ≈ offset + gain * before`` on no-change pixels; ``sigma``: robust residual scale."""

    gain: float
    offset: float
    sigma: float


def sample_pixels(mask: np.ndarray, max_samples: int, seed: int = 0) -> np.ndarray:
    """Flat indices of at most ``max_samples`` True pixels of ``mask``, on a regular stride.

    A stride (not a random draw) keeps the sample reproducible and cheap on huge masks.
    """
    idx = np.flatnonzero(mask.ravel())
    if idx.size > max_samples:
        step = idx.size / max_samples
        idx = idx[(np.arange(max_samples) * step).astype(np.int64)]
    return idx


def _tls(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Orthogonal regression ``y = o + g x`` (principal axis of the 2-d scatter)."""
    mx, my = float(x.mean()), float(y.mean())
    sxx = float(((x - mx) ** 2).mean())
    syy = float(((y - my) ** 2).mean())
    sxy = float(((x - mx) * (y - my)).mean())
    if sxx <= 0 or abs(sxy) < 1e-12:
        g = float(np.sqrt(syy / sxx)) if sxx > 0 else 1.0
    else:
        g = (syy - sxx + np.sqrt((syy - sxx) ** 2 + 4 * sxy * sxy)) / (2 * sxy)
    if not np.isfinite(g) or g <= 0:
        # a negative or undefined principal axis means the two dates do not share radiometry;
        # fall back to matching robust spreads, which is at least monotone
        g = float(np.sqrt(syy / sxx)) if sxx > 0 and syy > 0 else 1.0
    return float(g), float(my - g * mx)


def _mad(r: np.ndarray) -> float:
    return float(1.4826 * np.median(np.abs(r - np.median(r))))


def _robust_start(
    before: np.ndarray, after: np.ndarray, floors: list[float], min_keep: float
) -> np.ndarray:
    """Initial no-change set: the pixels best explained by a median/MAD match of each band.

    Matching medians and spreads is unaffected by up to half the scene changing, unlike a first
    least-squares fit on every pixel, which a bright cloud or snow field can tilt arbitrarily.
    """
    stat = np.zeros(before.shape[1], dtype=np.float64)
    for b in range(before.shape[0]):
        x = before[b].astype(np.float64)
        y = after[b].astype(np.float64)
        sx, sy = _mad(x), _mad(y)
        g = sy / sx if sx > 0 and sy > 0 else 1.0
        r = y - (np.median(y) + g * (x - np.median(x)))
        stat += (r / max(_mad(r), floors[b])) ** 2
    return np.asarray(stat <= np.quantile(stat, 0.5 if min_keep < 0.5 else min_keep))


MAX_GAIN = 4.0  # a relative gain beyond this (or below its inverse) is not sun, sensor or haze
# a ratio of the two dates' levels beyond this is units, not the ground: reflectance (0-1)
# against counts is 10^3-10^4; sun, season and sensor stay within MAX_GAIN, and snow over the
# darkest ground within about 30
UNITS = 100.0
# between MAX_GAIN and UNITS (an 8-bit product against an 11-bit one is 8x), the ratio is units
# when every band's deciles and quartiles scaled alike, within this factor of each other: snow
# or cloud lifts the dark ground many times more than the bright (on the samples and seeds
# 30-35: pairs with snow or cloud on one date 4.3-27, snow on both 3.3, neither 1.2-3.3)
SAME_SHAPE = 3.0
SHAPE_QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


def units_factor(before: np.ndarray, after: np.ndarray) -> float:
    """AFTER's level over BEFORE's (medians of all sampled values) when the two dates are in
    different units, else 1: the ratio beyond :data:`UNITS` either way, or beyond
    :data:`MAX_GAIN` with the whole distribution of every band scaled by it (see
    :data:`SAME_SHAPE`)."""
    lb, la = float(np.median(np.abs(before))), float(np.median(np.abs(after)))
    if not (lb > 0 and la > 0) or 1.0 / MAX_GAIN <= la / lb <= MAX_GAIN:
        return 1.0
    if not 1.0 / UNITS <= la / lb <= UNITS:
        return la / lb
    qb = np.quantile(before, SHAPE_QUANTILES, axis=-1)
    qa = np.quantile(after, SHAPE_QUANTILES, axis=-1)
    if not (np.all(qb > 0) and np.all(qa > 0)):
        return 1.0
    scaled = qa / qb
    return la / lb if float(scaled.max() / scaled.min()) <= SAME_SHAPE else 1.0


def fit_normalisation(
    before: np.ndarray,
    after: np.ndarray,
    *,
    iterations: int = 6,
    min_keep: float = 0.3,
    quantile: float = 0.9,
    floor_share: float = 0.02,
    units: float | None = None,
) -> list[BandFit]:
    """Fit one :class:`BandFit` per band from sampled pixel values.

    ``before`` and ``after`` are float arrays of shape (bands, n) holding only observable pixels.
    Dates in different units (see :func:`units_factor`) are fitted with AFTER brought to
    BEFORE's level, so the fit's gain bound (:data:`MAX_GAIN`) judges the ground, not the units.
    ``units``: the units factor, when the caller decided it on a larger sample (a stratum's own
    level ratio may fall on the other side of a bound than the scene's).
    """
    if before.shape != after.shape or before.ndim != 2:
        raise ValueError(f"before/after samples must share shape (bands, n), got {before.shape}")
    u = units_factor(before, after) if units is None else units
    if u != 1.0:
        level = fit_normalisation(
            before,
            after / u,
            iterations=iterations,
            min_keep=min_keep,
            quantile=quantile,
            floor_share=floor_share,
            units=1.0,
        )
        return [BandFit(f.gain * u, f.offset * u, f.sigma * u) for f in level]
    k, n = before.shape
    if n < 10:
        raise ValueError(f"too few observable pixels to fit a normalisation ({n})")
    fits: list[BandFit] = []
    # the no-change scatter is never below a small share of the band's own contrast (registration,
    # view and sun geometry, quantisation); without that floor an exact gain/offset pair would have
    # zero scatter and every rounding error would look like change
    floors = [max(floor_share * _mad(after[b].astype(np.float64)), 1e-6) for b in range(k)]
    cut = float(chdtri(k, 1.0 - quantile))
    keep = _robust_start(before, after, floors, min_keep)
    for _ in range(iterations):
        fits = []
        stat = np.zeros(n, dtype=np.float64)
        for b in range(k):
            x = before[b].astype(np.float64)
            y = after[b].astype(np.float64)
            g, o = _tls(x[keep], y[keep])
            r = y - (o + g * x)
            sigma = max(_mad(r[keep]), floors[b])
            fits.append(BandFit(g, o, sigma))
            stat += (r / sigma) ** 2
        new_keep = stat < cut
        if new_keep.sum() < min_keep * n:
            new_keep = stat <= np.quantile(stat, min_keep)
        if np.array_equal(new_keep, keep):
            break
        keep = new_keep
    return [_guard(before[b], after[b], f, floors[b]) for b, f in enumerate(fits)]


def _quantile_line(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Straight line through the matched quantiles (5-95 %) of the two dates: histogram matching
    made linear. It needs no no-change set, so it survives a scene that changed almost everywhere."""
    qs = np.linspace(0.05, 0.95, 19)
    qx = np.quantile(x, qs)
    qy = np.quantile(y, qs)
    if float(np.ptp(qx)) <= 0:
        return 1.0, float(np.median(y) - np.median(x))
    g, o = np.polyfit(qx, qy, 1)
    return float(g), float(o)


def _guard(x: np.ndarray, y: np.ndarray, fit: BandFit, floor: float) -> BandFit:
    """Replace a collapsed fit (gain far from any plausible sensor/sun change) by the quantile
    line, gain bounded, offset matching medians; residual scale from the central half."""
    lo, hi = 1.0 / MAX_GAIN, MAX_GAIN
    if lo <= fit.gain <= hi:
        return fit
    xd = x.astype(np.float64)
    yd = y.astype(np.float64)
    g, o = _quantile_line(xd, yd)
    if not lo <= g <= hi:
        g = float(np.clip(g, lo, hi)) if np.isfinite(g) else 1.0
        o = float(np.median(yd) - g * np.median(xd))
    r = yd - (o + g * xd)
    return BandFit(g, o, max(_mad(r), floor))


UNMATCHED = 1.0  # no-change scatter of at least the band's own spread: the fit explains nothing
ABOVE_NOISE = 0.1  # ... and of at least this share of its level: surfaces, not a sensor's noise


def scatter_shares(
    after: np.ndarray, fits: Sequence[BandFit]
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per band, the fit's no-change scatter as a share of AFTER's spread over the sample (MAD)
    and of its level (median). ``after``: sampled values, shape (bands, n)."""
    spread, level = [], []
    for b, f in enumerate(fits):
        x = after[b].astype(np.float64)
        spread.append(f.sigma / max(_mad(x), 1e-6))
        level.append(f.sigma / max(abs(float(np.median(x))), 1e-6))
    return tuple(spread), tuple(level)


COLLAPSED = 0.15  # agreeing share below half the least share the fit keeps (0.3): collapsed


def agreeing_share(before: np.ndarray, after: np.ndarray, fits: Sequence[BandFit]) -> float:
    """Share of the sampled pixels within the fitted no-change law: their chi-square over the
    bands below its 90 % quantile, the test by which the fit's reweighting keeps a pixel.
    ``before``/``after``: sampled values, shape (bands, n)."""
    stat = np.zeros(before.shape[1], dtype=np.float64)
    for b, f in enumerate(fits):
        r = (after[b].astype(np.float64) - (f.offset + f.gain * before[b])) / f.sigma
        stat += r * r
    return float(np.mean(stat < chdtri(len(fits), 0.1)))


def matched(spread: Sequence[float], level: Sequence[float], agreeing: float = 1.0) -> bool:
    """Whether the normalisation found ground the two dates share. Not when, in every band, the
    pixels it kept as unchanged scatter about its line as much as the band varies across the
    scene (:data:`UNMATCHED`), and by more than a sensor's noise (:data:`ABOVE_NOISE` of the
    level; a featureless scene, all noise, is matched however its noise compares with its
    spread): then no unchanged population was found (snow over most of one date, haze, change
    almost everywhere), and the spectral score cannot flag any change short of one several
    times the scene's own contrast. Nor when fewer than :data:`COLLAPSED` of the pixels agree
    with the fitted law (``agreeing``, see :func:`agreeing_share`): the reweighting collapsed
    and the fit rests on the share it keeps whatever happens, whose bands disagree (a fit
    through snow over one date's ground)."""
    if agreeing < COLLAPSED:
        return False
    return not all(s >= UNMATCHED and v >= ABOVE_NOISE for s, v in zip(spread, level, strict=True))


def standardised_residuals(
    before: np.ndarray, after: np.ndarray, fits: list[BandFit]
) -> np.ndarray:
    """Per band ``(after - offset - gain * before) / sigma`` as float32, shape (bands, ...)."""
    out = np.empty(after.shape, dtype=np.float32)
    for b, f in enumerate(fits):
        residual_into(out[b], before[b], after[b], f)
    return out


def chi_squares(
    before: np.ndarray, after: np.ndarray, fit_sets: tuple[tuple[BandFit, ...], ...]
) -> np.ndarray:
    """Per fit set, each pixel's sum over the bands of its squared standardised residuals
    (float32, ``(len(fit_sets), *pixels)``); ``before``/``after``: (bands, ...) stacks."""
    chi = np.zeros((len(fit_sets), *before.shape[1:]), dtype=np.float32)
    zk = np.empty(before.shape[1:], dtype=np.float32)
    for fits, out in zip(fit_sets, chi, strict=True):
        for k, fit in enumerate(fits):
            residual_into(zk, before[k], after[k], fit)
            np.square(zk, out=zk)
            out += zk
    return chi


def residual_into(out: np.ndarray, before: np.ndarray, after: np.ndarray, fit: BandFit) -> None:
    """One band's ``(after - offset - gain * before) / sigma`` written into ``out`` (float32)."""
    np.multiply(before, np.float32(-fit.gain), out=out)
    out += after
    out -= np.float32(fit.offset)
    out *= np.float32(1.0 / fit.sigma)


VEGETATED_NDVI = 0.3  # NDVI above which ground is green vegetation (the usual cut)
MIN_STRATUM = 0.05  # share of the sample each stratum needs for the pair to be stratified ...
MIN_STRATUM_PIXELS = 1000  # ... and at least this many pixels


def ndvi(red: np.ndarray, nir: np.ndarray) -> np.ndarray:
    """``(nir - red) / (nir + red)`` as float32 (NaN where undefined)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray((nir - red) / (nir + red), dtype=np.float32)


def _green_and_bare(red: np.ndarray, nir: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixels whose NDVI is above :data:`VEGETATED_NDVI`, and those at most at it, without a
    division: ``nir (1 - t) > red (1 + t)`` (the same for non-negative values). A pixel with a
    band NaN is in neither."""
    lhs = np.multiply(nir, np.float32(1.0 - VEGETATED_NDVI), dtype=np.float32)
    rhs = np.multiply(red, np.float32(1.0 + VEGETATED_NDVI), dtype=np.float32)
    return np.greater(lhs, rhs), np.less_equal(lhs, rhs)


def green_on_either(
    before: np.ndarray, after: np.ndarray, bands: tuple[str, ...]
) -> np.ndarray | None:
    """Pixels green (NDVI above :data:`VEGETATED_NDVI`) on either date, where red and
    near-infrared bands tell it, else None; ``before``/``after``: (bands, ...) stacks."""
    if "red" not in bands or "nir" not in bands:
        return None
    red, nir = bands.index("red"), bands.index("nir")
    green = _green_and_bare(before[red], before[nir])[0]
    green |= _green_and_bare(after[red], after[nir])[0]
    return green


@dataclass(frozen=True)
class Strata:
    """Per-band fits for the ground vegetated on both dates and for the ground bare on both
    (NDVI above / at most :data:`VEGETATED_NDVI`); pixels green on one date only keep the
    scene-wide fit. The change stage reads ground vegetated on both dates with the bare fit
    where that explains it better (a roof paint green by its NDVI: see
    :func:`sohae_watch.change_steps.spectral_evidence`)."""

    red: int  # band indices
    nir: int
    vegetated: tuple[BandFit, ...]
    bare: tuple[BandFit, ...]

    def classes(self, before: np.ndarray, after: np.ndarray) -> np.ndarray:
        """Per pixel 0 (scene-wide fit), 1 (vegetated on both dates) or 2 (bare on both), uint8;
        ``before``/``after``: (bands, ...) stacks. A pixel with a band not observable is 0."""
        return ndvi_classes(before, after, self.red, self.nir)


def ndvi_classes(before: np.ndarray, after: np.ndarray, red: int, nir: int) -> np.ndarray:
    """Per pixel 1 (NDVI above :data:`VEGETATED_NDVI` on both dates: green on both), 2 (at most
    it on both: bare on both) or 0, uint8; ``before``/``after``: (bands, ...) stacks, ``red``,
    ``nir`` band indices. A pixel with a band NaN is 0."""
    vb, bb = _green_and_bare(before[red], before[nir])
    va, ba = _green_and_bare(after[red], after[nir])
    vb &= va
    bb &= ba
    out = vb.view(np.uint8)  # 1 where vegetated on both
    out[bb] = 2
    return out


def fit_strata(
    before: np.ndarray, after: np.ndarray, bands: tuple[str, ...], units: float | None = None
) -> Strata | None:
    """A :class:`Strata` from sampled pixels (as for :func:`fit_normalisation`, ``units`` the
    scene's units factor), or None without red and near-infrared bands or when either stratum
    is under :data:`MIN_STRATUM` of them."""
    if "red" not in bands or "nir" not in bands:
        return None
    red, nir = bands.index("red"), bands.index("nir")
    cls = ndvi_classes(before, after, red, nir)
    members = (cls == 1, cls == 2)
    need = max(MIN_STRATUM * before.shape[1], MIN_STRATUM_PIXELS)
    # with one population missing (winter, a city centre, a desert), the scene-wide fit is
    # that of the other: nothing to separate
    if min(int(m.sum()) for m in members) < need:
        return None
    veg, bare = (tuple(fit_normalisation(before[:, m], after[:, m], units=units)) for m in members)
    return Strata(red, nir, veg, bare)


FOREIGN_GAIN = 2.0  # a gain this many times off both strata's follows neither ground


def follows_neither(strata: Strata, scene: Sequence[BandFit]) -> bool:
    """Whether the scene-wide fit follows neither the green nor the bare ground: in some band its
    gain is more than :data:`FOREIGN_GAIN` times away from both strata's. A scene of green and
    bare ground has its scene-wide line near the larger one's; a line far from both was drawn
    through a third population, one that changed (snow over most of one date's ground: snow
    on soil is "bare" on both dates, as paving is, but its radiometry is not paving's). The
    strata, fitted on the ground that kept its radiometry, would read that population as change
    where the scene-wide fit reads it as unchanged: the dates' radiometry is not matched."""
    for b, f in enumerate(scene):
        near = min(
            abs(math.log(max(f.gain, 1e-6) / max(s.gain, 1e-6)))
            for s in (strata.vegetated[b], strata.bare[b])
        )
        if near > math.log(FOREIGN_GAIN):
            return True
    return False
