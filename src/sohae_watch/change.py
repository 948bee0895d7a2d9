"""The change-detection stage: which pixels changed between two co-registered scenes, and how.

Method (all statistics fitted once, then applied window by window):

1. Relative radiometric normalisation (:mod:`sohae_watch.radiometry`): per band, orthogonal
   regression of AFTER on BEFORE over pixels that did not change, iterated MAD-style; the standardised
   residuals ``z`` are in units of the no-change scatter, so sun, gain/offset and haze cancel.
2. Structure evidence: the gradient magnitude of each date's intensity, divided by that date's
   typical gradient (so it is gain free), and its change, standardised the same way.
3. A per-pixel score ``sqrt((rms(z)^2 + dz_struct^2) / 2)`` averaged over a Gaussian neighbourhood
   of a fixed size in metres (the stage adapts to pixel size), so a decision concerns an object,
   not a speckle.
4. A threshold fitted on that score's distribution: the no-change mode is estimated robustly
   (median and MAD of the log score) and a pixel changes when its score is beyond the
   ``1 - false_alarm`` quantile of that mode (a no-change probability cut, respecting rarity).
5. Masks: nodata in either date, and cloud / cloud shadow (:mod:`sohae_watch.cloud`) become 255.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage as ndi
from scipy.stats import chi2, norm

from sohae_watch.areas import ChangeArea, change_areas
from sohae_watch.cloud import (
    STRONG_EDGE,
    at_ceiling,
    cloud_and_shadow,
    cloud_reach_px,
    ground_whitening,
    haze_opacity,
    scene_ceiling,
    veil_cloud,
)
from sohae_watch.filters import smooth
from sohae_watch.grid import Grid
from sohae_watch.radiometry import (
    BandFit,
    fit_normalisation,
    sample_pixels,
    standardised_residuals,
)
from sohae_watch.scene import VISIBLE, Scene

__all__ = [
    "CHANGE_TYPES",
    "ChangeArea",
    "ChangeConfig",
    "ChangeModel",
    "ChangeResult",
    "apply_change_model",
    "change_areas",
    "detect_changes",
    "detect_changes_tiled",
    "fit_change_model",
    "pixel_size_m",
]

CHANGE_TYPES = ("new_structure", "removed_structure", "brighter", "darker", "vegetation", "other")

NOT_OBSERVABLE = 255


@dataclass(frozen=True)
class ChangeConfig:
    """The stage's few settings; the defaults are the one setting used for every scene."""

    smooth_m: float = 10.0  # Gaussian sigma of the decision neighbourhood, metres
    gradient_m: float = 1.0  # Gaussian sigma of the gradient operator, metres (at least 1 px)
    false_alarm: float = 0.001  # no-change tail probability at the threshold
    min_area_m2: float = 100.0  # minimum mapping unit
    max_samples: int = 400_000  # pixels used to fit the statistics
    structure_weight: float = 1.0  # weight of the structure evidence against the spectral one


@dataclass
class ChangeResult:
    """Output of the stage on one scene or window (arrays of shape (rows, cols))."""

    magnitude: (
        np.ndarray
    )  # float32, the score each pixel was thresholded on; NaN where not observable
    mask: np.ndarray  # uint8: 0 no change, 1 change, 255 not observable
    threshold: float
    observable: np.ndarray  # bool
    stats: dict[str, Any] = field(default_factory=dict)
    layers: dict[str, np.ndarray] = field(default_factory=dict)  # per-pixel evidence, for typing


@dataclass(frozen=True)
class ChangeModel:
    """Statistics fitted on a sample; applying it to any window gives the one-piece result."""

    bands: tuple[str, ...]
    fits: tuple[BandFit, ...]
    grad_scale_before: float
    grad_scale_after: float
    struct_sigma: float
    fill: tuple[float, float]  # intensity used in place of nodata, before / after
    threshold: float
    px_m: float
    config: ChangeConfig
    # per band brightness of a thick cloud on BEFORE and on AFTER (see scene_ceiling)
    ceiling: tuple[tuple[float, ...], tuple[float, ...]] = ((), ())
    stats: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def pixel_cut(self) -> float:
        """The score a single pixel exceeds with probability ``false_alarm`` under no change."""
        dof = len(self.bands) + 1
        return float(math.sqrt(chi2.isf(self.config.false_alarm, dof) / dof))

    @property
    def smooth_px(self) -> float:
        return max(0.7, self.config.smooth_m / self.px_m)

    @property
    def gradient_px(self) -> float:
        return max(1.0, self.config.gradient_m / self.px_m)

    @property
    def halo_px(self) -> int:
        """Overlap a window needs on each side for its core to match the one-piece result."""
        local = 4 * self.smooth_px + 4 * self.gradient_px + self.open_radius_px + 4
        texture = 4 * min(8.0, max(2.0, 30.0 / self.px_m)) + 4 * self.gradient_px
        # the cloud mask feeds the neighbourhood average, so the reaches add up
        return int(math.ceil(local + texture + cloud_reach_px(self.px_m)))

    @property
    def open_radius_px(self) -> int:
        r = math.sqrt(self.config.min_area_m2 / math.pi) / self.px_m
        return int(r) if r >= 1.5 else 0


def pixel_size_m(grid: Grid) -> float:
    """Pixel size in metres (geometric mean of x and y), also on a geographic grid."""
    t = grid.transform
    if grid.crs is not None and grid.crs.is_geographic:
        lat = math.radians(t.f + t.e * grid.height / 2)
        return math.sqrt(abs(t.a) * 111_320.0 * math.cos(lat) * abs(t.e) * 110_574.0)
    return math.sqrt(abs(t.a * t.e))


def _common_bands(before: Scene, after: Scene) -> tuple[str, ...]:
    bands = tuple(b for b in before.bands if b in after.bands)
    if not bands:
        raise ValueError(
            f"the two scenes share no band role ({before.bands} vs {after.bands}); "
            "name the bands red/green/blue/nir"
        )
    return bands


def _stack(scene: Scene, bands: tuple[str, ...]) -> np.ndarray:
    idx = [scene.bands.index(b) for b in bands]
    if idx == list(range(scene.data.shape[0])):
        return scene.data
    return scene.data[idx]


def _intensity(stack: np.ndarray, bands: tuple[str, ...]) -> np.ndarray:
    idx = [i for i, b in enumerate(bands) if b in VISIBLE] or list(range(len(bands)))
    return np.asarray(np.mean(stack[idx], axis=0, dtype=np.float32))


def _gradient(img: np.ndarray, sigma: float, fill: float) -> np.ndarray:
    """Gaussian gradient magnitude; NaN (nodata) filled with a fixed value so windows agree."""
    x = np.nan_to_num(img, nan=fill)
    gx = ndi.gaussian_filter(x, sigma, order=(0, 1), mode="nearest")
    gy = ndi.gaussian_filter(x, sigma, order=(1, 0), mode="nearest")
    return np.hypot(gx, gy).astype(np.float32)


def _observable(
    before: Scene, after: Scene, b_stack: np.ndarray, a_stack: np.ndarray
) -> np.ndarray:
    obs = before.valid & after.valid
    obs &= np.isfinite(b_stack).all(axis=0) & np.isfinite(a_stack).all(axis=0)
    return obs


def _mad(x: np.ndarray) -> tuple[float, float]:
    med = float(np.median(x))
    return med, float(1.4826 * np.median(np.abs(x - med)))


def fit_change_model(
    before: Scene, after: Scene, config: ChangeConfig | None = None
) -> ChangeModel:
    """Fit normalisation, structure scale and threshold from (a sample of) the two scenes.

    For a huge scene pass a decimated or sampled pair of Scenes on the same CRS; the statistics are
    distributions of per-pixel values and do not depend on where the sample came from.
    """
    cfg = config or ChangeConfig()
    if before.grid.shape != after.grid.shape:
        raise ValueError(f"scenes differ in shape: {before.grid.shape} vs {after.grid.shape}")
    bands = _common_bands(before, after)
    px_m = pixel_size_m(before.grid)
    b = _stack(before, bands)
    a = _stack(after, bands)
    obs = _observable(before, after, b, a)
    idx = sample_pixels(obs, cfg.max_samples)
    if idx.size < 10:
        raise ValueError("fewer than 10 pixels are observable in both scenes; nothing to compare")
    bs = b.reshape(len(bands), -1)[:, idx]
    as_ = a.reshape(len(bands), -1)[:, idx]
    fits = fit_normalisation(bs, as_)
    # a provisional model gives the per-pixel evidence whose distribution sets the rest
    gsig = max(1.0, cfg.gradient_m / px_m)
    ib, ia = _intensity(b, bands), _intensity(a, bands)
    fill = (float(np.median(ib.ravel()[idx])), float(np.median(ia.ravel()[idx])))
    gb = _gradient(ib, gsig, fill[0])
    ga = _gradient(ia, gsig, fill[1])
    gsb = float(np.median(gb.ravel()[idx])) or 1.0
    gsa = float(np.median(ga.ravel()[idx])) or 1.0
    ceiling = (
        tuple(float(v) for v in scene_ceiling(b)),
        tuple(float(v) for v in scene_ceiling(a)),
    )
    model = ChangeModel(bands, tuple(fits), gsb, gsa, 1.0, fill, math.inf, px_m, cfg, ceiling)
    ds = _struct_raw(model, gb, ga).ravel()[idx]
    # the structure scatter has the same kind of floor as the spectral one (a share of the
    # typical gradient), so an exactly scaled pair does not turn rounding into change
    s_sigma = max(_mad(ds)[1], 0.05)
    model = ChangeModel(bands, tuple(fits), gsb, gsa, s_sigma, fill, math.inf, px_m, cfg, ceiling)
    provisional = apply_change_model(model, before, after)
    mag = provisional.magnitude[provisional.observable]
    mag = mag[np.isfinite(mag)]
    logm = np.log(np.maximum(mag[sample_pixels(np.ones(mag.size, bool), cfg.max_samples)], 1e-6))
    # the no-change mode from the lower half of the distribution only (median and its left
    # one-sigma half-width), so however much of the scene changed it does not widen the mode
    med, lower = (float(v) for v in np.quantile(logm, [0.5, norm.cdf(-1.0)]))
    spread = med - lower
    zcut = float(norm.isf(cfg.false_alarm))
    empirical = float(math.exp(med + zcut * max(spread, 1e-3)))
    # the same tail probability under the model's own no-change law: the score squared is a mean
    # of (bands + 1) squared standard normal deviates
    model_cut = model.pixel_cut
    threshold = max(empirical, model_cut)
    stats = {
        "bands": list(bands),
        "normalisation": [
            {"band": n, "gain": f.gain, "offset": f.offset, "sigma": f.sigma}
            for n, f in zip(bands, fits, strict=True)
        ],
        "gradient_scale": [gsb, gsa],
        "structure_sigma": s_sigma,
        "log_magnitude_median": med,
        "log_magnitude_mad": spread,
        "threshold_empirical": empirical,
        "threshold_model": model_cut,
        "pixel_size_m": px_m,
        "observable_fraction_fit": float(obs.mean()),
    }
    return ChangeModel(
        bands, tuple(fits), gsb, gsa, s_sigma or 1.0, fill, threshold, px_m, cfg, ceiling, stats
    )


def _struct_raw(model: ChangeModel, gb: np.ndarray, ga: np.ndarray) -> np.ndarray:
    """Signed texture change: AFTER's minus BEFORE's gradient, each in units of its typical one.

    (A shift-tolerant variant, each date against the other's 3x3 maximum, was tried: it keeps a
    one-pixel misregistration quieter but ranks real change worse on the OSCD cases.)
    """
    return (
        ga * np.float32(1.0 / model.grad_scale_after)
        - gb * np.float32(1.0 / model.grad_scale_before)
    ).astype(np.float32)


def apply_change_model(model: ChangeModel, before: Scene, after: Scene) -> ChangeResult:
    """Score, threshold and mask one window (or the whole scene) with fitted statistics."""
    bands = model.bands
    b = _stack(before, bands)
    a = _stack(after, bands)
    obs = _observable(before, after, b, a)
    z = standardised_residuals(b, a, list(model.fits))
    z[:, ~obs] = np.nan
    spec2 = np.mean(np.nan_to_num(z) ** 2, axis=0)
    ib = _intensity(b, bands)
    ia = _intensity(a, bands)
    gb = _gradient(ib, model.gradient_px, model.fill[0])
    ga = _gradient(ia, model.gradient_px, model.fill[1])
    ds = _struct_raw(model, gb, ga) * np.float32(1.0 / model.struct_sigma)
    # gradients within their support of nodata see the fill value, not the ground
    reach = 2 * int(math.ceil(2 * model.gradient_px)) + 1
    ds[~ndi.minimum_filter(obs, size=reach, mode="nearest")] = 0
    vis = [i for i, n in enumerate(bands) if n in VISIBLE] or list(range(len(bands)))
    gbn = gb * np.float32(1.0 / model.grad_scale_before)
    gan = ga * np.float32(1.0 / model.grad_scale_after)
    # snow or frost that came or went: its colour is not evidence, only the strong edges it
    # leaves visible (roads, roofs, shadows) are compared
    nir = bands.index("nir") if "nir" in bands and len(vis) + 1 == len(bands) else None
    white = ground_whitening(z, b[vis], a[vis], gbn, gan, model.px_m, nir)
    spec2[white] = 0
    ds[white & (np.maximum(gbn, gan) < STRONG_EDGE)] = 0
    w = np.float32(model.config.structure_weight)
    score = np.sqrt((spec2 + w * ds * ds) / (1.0 + w)).astype(np.float32)

    # clouds and their shadows, from the dates' disagreement
    tex_sigma = max(2.0, 30.0 / model.px_m) if model.px_m < 30 else 1.0
    tex_sigma = min(tex_sigma, 8.0)
    tb = smooth(gb / np.float32(model.grad_scale_before), tex_sigma)
    ta = smooth(ga / np.float32(model.grad_scale_after), tex_sigma)
    # a sensor's ceiling in every band tells cloud only where a near-infrared band says it too
    # (a white roof in RGB saturates as well)
    sat_b = at_ceiling(b) if nir is not None else None
    sat_a = at_ceiling(a) if nir is not None else None
    cloud_b, cloud_a = cloud_and_shadow(
        z, b[vis], a[vis], tb, ta, model.px_m, gbn, gan, sat_b, sat_a
    )
    veil_b, veil_a = _veils(model, b, a, sat_b, sat_a)
    cloud_b |= veil_b
    cloud_a |= veil_a
    cloudy = cloud_b | cloud_a
    obs_final = obs & ~cloudy

    # neighbourhood average over observable pixels only (normalised convolution); a pixel that on
    # its own is within the no-change law keeps its own score (it cannot inherit a neighbour's
    # change: a strong change would otherwise spill beyond its edge)
    s = model.smooth_px
    wgt = obs_final.astype(np.float32)
    num = smooth(np.where(obs_final, score, 0).astype(np.float32), s)
    den = smooth(wgt, s)
    with np.errstate(divide="ignore", invalid="ignore"):
        magnitude = (num / den).astype(np.float32)
    quiet = score < np.float32(model.pixel_cut)
    magnitude[quiet] = np.minimum(magnitude[quiet], score[quiet])
    magnitude[~obs_final] = np.nan

    changed = np.zeros(obs.shape, dtype=bool)
    if math.isfinite(model.threshold):
        changed = np.nan_to_num(magnitude, nan=0.0) > model.threshold
        r = model.open_radius_px
        if r:
            changed = ndi.binary_opening(changed, structure=_disk(r))
        changed &= obs_final
    mask = np.where(changed, 1, 0).astype(np.uint8)
    mask[~obs_final] = NOT_OBSERVABLE

    n_obs = int(obs_final.sum())
    stats = dict(model.stats)
    stats.update(
        {
            "threshold": model.threshold,
            "changed_fraction": float(changed.sum() / max(1, n_obs)),
            "observable_fraction": float(n_obs / max(1, obs.size)),
            "cloud_fraction_before": float(cloud_b.mean()),
            "cloud_fraction_after": float(cloud_a.mean()),
        }
    )
    layers = {
        "brightness": np.mean(np.nan_to_num(z[vis]), axis=0).astype(np.float32),
        "structure": ds,
    }
    if "red" in bands and "nir" in bands:
        layers["ndvi_before"] = _ndvi(b, bands)
        layers["ndvi_after"] = _ndvi(a, bands)
    return ChangeResult(magnitude, mask, model.threshold, obs_final, stats, layers)


def _veils(
    model: ChangeModel,
    b: np.ndarray,
    a: np.ndarray,
    sat_b: np.ndarray | None,
    sat_a: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Cloud veils on each date: the opacity of a white veil over the other date's prediction."""
    if not model.ceiling[0] or (sat_a is None and sat_b is None):
        z = np.zeros(b.shape[1:], dtype=bool)
        return z, z
    ceil_b, ceil_a = (np.asarray(c, dtype=np.float32) for c in model.ceiling)
    pred_a = np.empty_like(a)
    pred_b = np.empty_like(b)
    for i, f in enumerate(model.fits):
        pred_a[i] = b[i] * np.float32(f.gain) + np.float32(f.offset)
        pred_b[i] = (a[i] - np.float32(f.offset)) * np.float32(1.0 / f.gain)
    veil_a = veil_cloud(haze_opacity(a, pred_a, ceil_a), model.px_m, sat_a)
    veil_b = veil_cloud(haze_opacity(b, pred_b, ceil_b), model.px_m, sat_b)
    return veil_b, veil_a


def _ndvi(stack: np.ndarray, bands: tuple[str, ...]) -> np.ndarray:
    red = stack[bands.index("red")]
    nir = stack[bands.index("nir")]
    with np.errstate(divide="ignore", invalid="ignore"):
        return ((nir - red) / (nir + red)).astype(np.float32)


def _disk(r: int) -> np.ndarray:
    y, x = np.ogrid[-r : r + 1, -r : r + 1]
    return np.asarray(x * x + y * y <= r * r)


def detect_changes(before: Scene, after: Scene, config: ChangeConfig | None = None) -> ChangeResult:
    """Fit the change model on the pair and apply it to the whole pair (same grid, co-registered)."""
    model = fit_change_model(before, after, config)
    return apply_change_model(model, before, after)


def _crop(scene: Scene, r0: int, c0: int, h: int, w: int) -> Scene:
    return Scene(
        data=scene.data[:, r0 : r0 + h, c0 : c0 + w],
        valid=scene.valid[r0 : r0 + h, c0 : c0 + w],
        bands=scene.bands,
        grid=scene.grid.crop(r0, c0, h, w),
        date=scene.date,
        sources=scene.sources,
        sun=scene.sun,
        meta=scene.meta,
    )


def detect_changes_tiled(
    model: ChangeModel, before: Scene, after: Scene, tile: int = 1024
) -> ChangeResult:
    """Apply a fitted model window by window with :attr:`ChangeModel.halo_px` overlap.

    The reference for windowed processing of scenes larger than memory: the same loop works with
    windows read from disk instead of sliced from arrays.
    """
    rows, cols = before.grid.shape
    halo = model.halo_px
    magnitude = np.full((rows, cols), np.nan, dtype=np.float32)
    mask = np.full((rows, cols), NOT_OBSERVABLE, dtype=np.uint8)
    observable = np.zeros((rows, cols), dtype=bool)
    for r0 in range(0, rows, tile):
        for c0 in range(0, cols, tile):
            rr0, cc0 = max(0, r0 - halo), max(0, c0 - halo)
            rr1, cc1 = min(rows, r0 + tile + halo), min(cols, c0 + tile + halo)
            res = apply_change_model(
                model,
                _crop(before, rr0, cc0, rr1 - rr0, cc1 - cc0),
                _crop(after, rr0, cc0, rr1 - rr0, cc1 - cc0),
            )
            h, w = min(tile, rows - r0), min(tile, cols - c0)
            core = (slice(r0 - rr0, r0 - rr0 + h), slice(c0 - cc0, c0 - cc0 + w))
            magnitude[r0 : r0 + h, c0 : c0 + w] = res.magnitude[core]
            mask[r0 : r0 + h, c0 : c0 + w] = res.mask[core]
            observable[r0 : r0 + h, c0 : c0 + w] = res.observable[core]
    changed = int((mask == 1).sum())
    stats = dict(model.stats)
    stats.update(
        {
            "changed_fraction": changed / max(1, int(observable.sum())),
            "observable_fraction": float(observable.mean()),
            "tile": tile,
            "halo_px": halo,
        }
    )
    return ChangeResult(magnitude, mask, model.threshold, observable, stats)
