"""The change-detection stage: which pixels changed between two co-registered scenes, and how.

Method (all statistics fitted once, then applied window by window):

1. Relative radiometric normalisation (:mod:`sohae_watch.radiometry`): per band, orthogonal
   regression of AFTER on BEFORE over pixels that did not change, iterated MAD-style; the standardised
   residuals ``z`` are in units of the no-change scatter, so sun, gain/offset and haze cancel.
   With red and near-infrared bands, ground green on both dates and ground bare on both get a
   fit each when both are common (grass browns with the season, roofs do not); the
   wide-neighbourhood tests below keep the scene-wide fit.
2. Structure evidence: the gradient magnitude of each date's intensity, divided by that date's
   typical gradient (so it is gain free), and its change, relative where both dates are
   textured (:func:`~sohae_watch.change_steps.texture_change`), standardised the same way.
   The spectral evidence (``rms(z)^2``) is divided by its fitted growth with the texture both
   dates share, what a fraction of a pixel's misregistration makes of textured ground
   (:mod:`sohae_watch.registration_noise`).
3. A per-pixel score ``sqrt((rms(z)^2 + dz_struct^2) / 2)`` averaged over a Gaussian neighbourhood
   of a fixed size in metres (the stage adapts to pixel size), so a decision concerns an object,
   not a speckle.
4. A threshold fitted on that score's distribution: the no-change mode is estimated robustly
   (median and MAD of the log score) and a pixel changes when its score is beyond the
   ``1 - false_alarm`` quantile of that mode (a no-change probability cut, respecting rarity).
5. Masks: nodata in either date, and cloud / cloud shadow (:mod:`sohae_watch.cloud`) become 255.

Cost structure (so a 10980 x 10980 scene at 0.5 m costs tens of nanoseconds a pixel): pixels finer
than ``work_m`` (the gradient's 1 m scale) are block-averaged to a working grid first, where every
per-pixel score is computed (at 0.5 m: a quarter of the pixels); the wide-neighbourhood evidence
(cloud, shadow, veil, snow, texture, edge survival, the decision neighbourhood) is computed on an
evidence grid of ``evidence_m`` (4 m: block means of the working pixels, 1/64 of the input pixels)
and only the decision comes back to the working grid (bilinear) and to the input pixels (nearest).
Every neighbourhood keeps the size in metres it has on the input pixels. Blocks sit on a lattice
anchored to the CRS, so a window gives the same result as the whole scene. At 10 m (Sentinel-2)
both grids are the input grid and nothing changes.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.special import chdtri, ndtr, ndtri

from sohae_watch.agreement import mostly_different, structure_agreement
from sohae_watch.areas import ChangeArea, change_areas
from sohae_watch.blocks import (
    bilinear_up,
    block_all,
    block_mean,
    blocks_of_window,
    lattice_offset,
    padded,
    repeat_blocks,
)
from sohae_watch.change_steps import (
    NOT_OBSERVABLE,
    combine_score,
    decide_pixels,
    evidence_grid,
    evidence_means,
    gradient_magnitude,
    spectral_evidence,
    structure_evidence,
    texture_change,
    typing_layers,
    visible_mean,
)
from sohae_watch.cloud import (
    STRONG_EDGE,
    cloud_reach_px,
    scene_ceiling,
)
from sohae_watch.filters import smooth
from sohae_watch.grid import Grid
from sohae_watch.illumination import (
    PaleLaw,
    ShadowLaws,
    fit_green_laws,
    fit_pale_law,
    fit_shadow_laws,
)
from sohae_watch.radiometry import (
    BandFit,
    Strata,
    agreeing_share,
    fit_normalisation,
    fit_strata,
    follows_neither,
    green_on_either,
    matched,
    sample_pixels,
    scatter_shares,
    units_factor,
)
from sohae_watch.registration_noise import (
    damp_registration_noise,
    fit_registration_noise,
    shared_texture,
)
from sohae_watch.scene import Scene

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


@dataclass(frozen=True)
class ChangeConfig:
    """The stage's few settings; the defaults are the one setting used for every scene."""

    smooth_m: float = 10.0  # Gaussian sigma of the decision neighbourhood, metres
    gradient_m: float = 1.0  # Gaussian sigma of the gradient operator, metres (at least 1 px)
    false_alarm: float = 0.001  # no-change tail probability at the threshold
    min_area_m2: float = 100.0  # minimum mapping unit
    max_samples: int = 200_000  # pixels used to fit the statistics
    structure_weight: float = 1.0  # weight of the structure evidence against the spectral one
    # the finest scale the stage resolves: pixels finer than this are block-averaged to it first
    # (the gradient operator's scale; below it the score only sees sensor noise)
    work_m: float = 1.0
    # pixel size of the grid on which the wide-neighbourhood evidence (cloud, snow, texture,
    # decision neighbourhood) is computed, from block means of the working pixels
    evidence_m: float = 4.0


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
    """Statistics fitted on a sample; applying it to any window gives the one-piece result.

    Three grids: the input pixels (``px_m``); the working grid, ``work_step`` input pixels a
    side (block means), on which every per-pixel score is computed; the evidence grid,
    ``evidence_step`` working pixels a side, on which the wide-neighbourhood evidence is. All
    blocks sit on one lattice anchored to the CRS (the grid's origin in pixels), so every window
    cuts the same blocks as the whole scene. Every length keeps its value in input pixels (as the
    stage had it on the input grid) and is divided by the step of the grid it is applied on.
    """

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
    # fits of the ground green on both dates and bare on both, for the per-pixel score and the
    # typing; the wide-neighbourhood tests (cloud, snow, veils) keep the scene-wide fits
    strata: Strata | None = None
    # False when the normalisation found no ground the two dates share (see radiometry.matched
    # and radiometry.follows_neither): the mask is then no evidence of a structure come or gone
    matched: bool = True
    # share of the textured ground whose two dates look alike (agreement.structure_agreement;
    # NaN: no verdict)
    agreement: float = math.nan
    # laws of ground a cast shadow came over or left (illumination.ShadowLaws), for the
    # per-pixel score; the wide-neighbourhood tests keep the scene-wide fits
    shadows: ShadowLaws | None = None
    # the law of ground pale on both dates where the fits misread it (illumination.PaleLaw), for
    # the per-pixel score
    pale: PaleLaw | None = None
    # laws of ground green on both dates the strata's fits (else the scene's) misread (woods,
    # crops: illumination.fit_green_laws), for the per-pixel score
    green: tuple[tuple[BandFit, ...], ...] | None = None
    # growth of the spectral evidence with the texture both dates share (registration noise:
    # sohae_watch.registration_noise), for the per-pixel score
    registration_noise: float = 0.0

    @property
    def trusted(self) -> bool:
        """Whether the mask is evidence of a structure come or gone: the normalisation matched
        the dates, and most of the textured ground looks alike on both (the mask takes change
        to be the exception; snow, change almost everywhere or images not aligned break that)."""
        return self.matched and not mostly_different(self.agreement)

    @property
    def pixel_cut(self) -> float:
        """The score a single pixel exceeds with probability ``false_alarm`` under no change."""
        dof = len(self.bands) + 1
        return float(math.sqrt(chdtri(dof, self.config.false_alarm) / dof))

    @property
    def work_step(self) -> int:
        """Input pixels per working pixel (a side)."""
        return max(1, int(self.config.work_m / self.px_m + 1e-6))

    @property
    def evidence_step(self) -> int:
        """Working pixels per evidence pixel (a side)."""
        return max(1, int(self.config.evidence_m / (self.px_m * self.work_step) + 1e-6))

    @property
    def step(self) -> int:
        """Input pixels per evidence pixel (a side): the lattice every window is aligned to."""
        return self.work_step * self.evidence_step

    @property
    def smooth_px(self) -> float:
        """Decision neighbourhood (Gaussian sigma), input pixels."""
        return max(0.7, self.config.smooth_m / self.px_m)

    @property
    def gradient_px(self) -> float:
        """Gradient operator (Gaussian sigma), working pixels."""
        return max(1.0, self.config.gradient_m / self.px_m) / self.work_step

    @property
    def texture_px(self) -> float:
        """Texture neighbourhood (Gaussian sigma), input pixels."""
        tex = max(2.0, 30.0 / self.px_m) if self.px_m < 30 else 1.0
        return min(tex, 8.0)

    @property
    def halo_px(self) -> int:
        """Overlap a window needs on each side for its core to match the one-piece result
        (input pixels, a multiple of :attr:`step`)."""
        e = self.step
        es = self.evidence_step
        # before the evidence grid: the gradient operator and the nodata margin of the structure
        # evidence (working pixels)
        pre_w = 4 * self.gradient_px + math.ceil(2 * self.gradient_px) + 1
        # on the evidence grid: the cloud masks feed the neighbourhood average, so reaches add
        # up; the texture feeds the cloud test beside the edge survival (already in the cloud
        # reach), so only its excess counts; plus the bilinear return and partial blocks
        texture_excess = max(0.0, 4 * self.texture_px - 4 * _survival_px(self.px_m)) / e
        reach_e = (
            cloud_reach_px(self.px_m, e)
            + 4 * self.smooth_px / e
            + texture_excess
            + math.ceil(pre_w / es)
            + 2
        )
        # after it: the minimum-mapping-unit opening (working pixels)
        post_w = 2 * self.open_radius_px + 1
        halo = reach_e * e + post_w * self.work_step
        return int(math.ceil(halo / e)) * e

    @property
    def open_radius_px(self) -> int:
        """Radius of the minimum-mapping-unit opening, working pixels."""
        r = math.sqrt(self.config.min_area_m2 / math.pi) / (self.px_m * self.work_step)
        return int(r) if r >= 1.5 else 0


def _survival_px(px_m: float) -> float:
    from sohae_watch.cloud import _survival_sigma

    return _survival_sigma(px_m)


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


def _mad(x: np.ndarray) -> tuple[float, float]:
    med = float(np.median(x))
    return med, float(1.4826 * np.median(np.abs(x - med)))


# --- the three grids: input pixels, working pixels, evidence pixels -------------------------------


def _steps(px_m: float, cfg: ChangeConfig) -> tuple[int, int]:
    m = ChangeModel((), (), 1.0, 1.0, 1.0, (0.0, 0.0), math.inf, px_m, cfg)
    return m.work_step, m.evidence_step


@dataclass
class WorkPair:
    """A window on the working grid (padded to whole evidence blocks)."""

    before: np.ndarray  # (bands, rows, cols) block means
    after: np.ndarray
    obs: np.ndarray  # every input pixel of the block valid in both dates
    top: int  # input pixels of whole padding blocks (working pixels) before the window
    left: int
    rows: int  # the window's size in input pixels
    cols: int
    part_top: int  # input pixels of the first (partial) working pixel before the window
    part_left: int


def to_work(before: Scene, after: Scene, bands: tuple[str, ...], g: int, e: int) -> WorkPair:
    """The pair as block means on the working grid, padded to whole evidence blocks. A working
    pixel is observable where all its input pixels are (partial blocks at a window's edge are
    not)."""
    rows, cols = before.valid.shape
    top, left = lattice_offset(before.grid, e)
    gt, gl = top % g, left % g  # the working lattice
    bw = blocks_of_window(_stack(before, bands), g, gt, gl, np.nan, block_mean)
    aw = blocks_of_window(_stack(after, bands), g, gt, gl, np.nan, block_mean)
    obs = blocks_of_window(before.valid & after.valid, g, gt, gl, False, block_all)
    for stack in (bw, aw):
        for band in stack:
            obs &= np.isfinite(band)
    # whole evidence blocks: pad the working grid (cheap at its size)
    wt, wl = top // g, left // g
    h, w = obs.shape
    pr, pc = -(-(wt + h) // (e // g)) * (e // g), -(-(wl + w) // (e // g)) * (e // g)
    bw = padded(bw, wt, wl, pr, pc, np.nan)
    aw = padded(aw, wt, wl, pr, pc, np.nan)
    obs = padded(obs, wt, wl, pr, pc, False)
    return WorkPair(bw, aw, obs, top - gt, left - gl, rows, cols, gt, gl)


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
    g, es = _steps(px_m, cfg)
    work = to_work(before, after, bands, g, g * es)
    b, a, obs = work.before, work.after, work.obs
    idx = sample_pixels(obs, cfg.max_samples)
    if idx.size < 10:
        raise ValueError("fewer than 10 pixels are observable in both scenes; nothing to compare")
    bs = b.reshape(len(bands), -1)[:, idx]
    as_ = a.reshape(len(bands), -1)[:, idx]
    units = units_factor(bs, as_)  # decided once: a stratum alone may fall either side of a bound
    fits = fit_normalisation(bs, as_, units=units)
    of_spread, of_level = scatter_shares(as_, fits)
    agreeing = agreeing_share(bs, as_, fits)
    strata = fit_strata(bs, as_, bands, units=units)
    foreign = strata is not None and follows_neither(strata, fits)
    if foreign:
        strata = None  # one line per band, as before the strata: see follows_neither
    shadows = fit_shadow_laws(bs, as_, tuple(fits), bands)
    pale = fit_pale_law(bs, as_, strata.bare if strata is not None else tuple(fits), bands, units)
    green = None
    if "red" in bands and "nir" in bands:
        green = fit_green_laws(
            bs,
            as_,
            (strata.vegetated, strata.bare) if strata is not None else (tuple(fits),),
            bands.index("red"),
            bands.index("nir"),
            units,
        )
    # a provisional model gives the per-pixel evidence whose distribution sets the rest
    gsig = max(1.0, cfg.gradient_m / px_m) / g
    ib, ia = visible_mean(b, bands), visible_mean(a, bands)
    fill = (float(np.median(ib.ravel()[idx])), float(np.median(ia.ravel()[idx])))
    if not obs.all():
        ib[~obs] = fill[0]
        ia[~obs] = fill[1]
    gb = gradient_magnitude(ib, gsig)
    ga = gradient_magnitude(ia, gsig)
    gb_s, ga_s = gb.ravel()[idx], ga.ravel()[idx]  # the sample's gradients
    gsb = float(np.median(gb_s)) or 1.0
    gsa = float(np.median(ga_s)) or 1.0
    ceiling = (
        tuple(float(v) for v in scene_ceiling(_stack(before, bands))),
        tuple(float(v) for v in scene_ceiling(_stack(after, bands))),
    )
    model = ChangeModel(bands, tuple(fits), gsb, gsa, 1.0, fill, math.inf, px_m, cfg, ceiling)
    ds = _struct_raw(model, gb_s, ga_s)
    # the structure scatter has the same kind of floor as the spectral one (a share of the
    # typical gradient), so an exactly scaled pair does not turn rounding into change
    s_sigma = max(_mad(ds)[1], 0.05)
    model = ChangeModel(
        bands,
        tuple(fits),
        gsb,
        gsa,
        s_sigma,
        fill,
        math.inf,
        px_m,
        cfg,
        ceiling,
        strata=strata,
        shadows=shadows,
        pale=pale,
        green=green,
    )
    # the spectral evidence's growth with the texture both dates share, on the sample
    noise = fit_registration_noise(
        spectral_evidence(model, bs, as_, np.ones(idx.size, bool), True),
        shared_texture(gb_s / np.float32(gsb), ga_s / np.float32(gsa)),
    )
    model = dataclasses.replace(model, registration_noise=noise)
    provisional = _score(model, b, a, obs, (slice(0, 0), slice(0, 0)))
    # whether the two dates show the same ground, on the ground the provisional model observes
    # (clouds out), vegetation left out where a near-infrared band tells it
    agreement = structure_agreement(
        ib, ia, provisional.observable, cfg.smooth_m / (px_m * g), green_on_either(b, a, bands)
    )
    mag = provisional.magnitude[provisional.observable]
    mag = mag[np.isfinite(mag)]
    logm = np.log(np.maximum(mag[sample_pixels(np.ones(mag.size, bool), cfg.max_samples)], 1e-6))
    # the no-change mode from the lower half of the distribution only (median and its left
    # one-sigma half-width), so however much of the scene changed it does not widen the mode
    med, lower = (float(v) for v in np.quantile(logm, [0.5, ndtr(-1.0)]))
    spread = med - lower
    zcut = float(-ndtri(cfg.false_alarm))
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
        "units_factor": units,
        "work_step": g,
        "evidence_step": es,
        "observable_fraction_fit": float(obs.mean()),
        "scatter_of_spread": list(of_spread),
        "scatter_of_level": list(of_level),
        "agreeing_share": agreeing,
        "structure_agreement": agreement,
        "scene_fit_follows_neither_stratum": foreign,
        "shadow_laws": None
        if shadows is None
        else {"came": _fit_stats(shadows.came), "left": _fit_stats(shadows.left)},
        "pale_law": None
        if pale is None
        else {"fits": _fit_stats(pale.fits), "pale": [pale.pale_before, pale.pale_after]},
        "green_laws": None if green is None else [_fit_stats(law) for law in green],
        "registration_noise": noise,
        "strata": None
        if strata is None
        else {"vegetated": _fit_stats(strata.vegetated), "bare": _fit_stats(strata.bare)},
    }
    return ChangeModel(
        bands,
        tuple(fits),
        gsb,
        gsa,
        s_sigma or 1.0,
        fill,
        threshold,
        px_m,
        cfg,
        ceiling,
        stats,
        strata,
        matched(of_spread, of_level, agreeing) and not foreign,
        agreement,
        shadows,
        pale,
        green,
        noise,
    )


def _fit_stats(fits: tuple[BandFit, ...] | None) -> list[dict[str, float]] | None:
    return (
        None
        if fits is None
        else [{"gain": f.gain, "offset": f.offset, "sigma": f.sigma} for f in fits]
    )


def _struct_raw(model: ChangeModel, gb: np.ndarray, ga: np.ndarray) -> np.ndarray:
    """Signed texture change (:func:`texture_change`) of the dates' raw gradient magnitudes.

    (A shift-tolerant variant, each date against the other's 3x3 maximum, was tried: it keeps a
    one-pixel misregistration quieter but ranks real change worse on the OSCD cases.)
    """
    return texture_change(
        gb * np.float32(1.0 / model.grad_scale_before),
        ga * np.float32(1.0 / model.grad_scale_after),
    )


def apply_change_model(
    model: ChangeModel,
    before: Scene,
    after: Scene,
    core: tuple[slice, slice] | None = None,
) -> ChangeResult:
    """Score, threshold and mask one window (or the whole scene) with fitted statistics.

    The scores are computed on the working grid and the wide-neighbourhood evidence on the
    evidence grid (see :class:`ChangeModel`); the results come back on the input pixels, for the
    whole window or only for its ``core`` (row and column slices of the window, e.g. a tile
    without its halo: then only the core is brought back to the input pixels)."""
    g, es = model.work_step, model.evidence_step
    work = to_work(before, after, model.bands, g, g * es)
    rows = core[0].indices(work.rows) if core is not None else (0, work.rows, 1)
    cols = core[1].indices(work.cols) if core is not None else (0, work.cols, 1)
    # the core starts this far into the padded working grid (input pixels)
    r0, c0 = work.top + work.part_top + rows[0], work.left + work.part_left + cols[0]
    h, w = rows[1] - rows[0], cols[1] - cols[0]
    wr = slice(r0 // g, -(-(r0 + h) // g))
    wc = slice(c0 // g, -(-(c0 + w) // g))
    res = _score(model, work.before, work.after, work.obs, (wr, wc))
    if g == 1 and (r0, c0) == (0, 0) and res.mask.shape == (h, w):
        return res
    crop = (slice(r0 % g, r0 % g + h), slice(c0 % g, c0 % g + w))
    return ChangeResult(
        repeat_blocks(res.magnitude[wr, wc], g)[crop],
        repeat_blocks(res.mask[wr, wc], g)[crop],
        res.threshold,
        repeat_blocks(res.observable[wr, wc], g)[crop],
        res.stats,
        {k: repeat_blocks(v, g)[crop] for k, v in res.layers.items()},
    )


def _score(
    model: ChangeModel,
    b: np.ndarray,
    a: np.ndarray,
    obs: np.ndarray,
    core: tuple[slice, slice] | None = None,
) -> ChangeResult:
    """The stage on a window of the working grid (whole evidence blocks). The typing layers are
    computed on ``core`` (working pixels) only, the rest on the whole window."""
    es = model.evidence_step
    every = bool(obs.all())
    spec2 = spectral_evidence(model, b, a, obs, every)
    gbn, gan, ds = structure_evidence(model, b, a, obs, every)
    damp_registration_noise(spec2, gbn, gan, model.registration_noise)
    # the wide-neighbourhood evidence, on the evidence grid (block means)
    b_e = block_mean(b, es)
    a_e = block_mean(a, es)
    white_e, cloud_b, cloud_a = evidence_grid(model, b_e, a_e, evidence_means(model, gbn, gan))
    if white_e.any():
        white = repeat_blocks(white_e, es)
        spec2[white] = 0
        ds[white & (np.maximum(gbn, gan) < STRONG_EDGE)] = 0
    score = combine_score(model, ds, spec2)
    del spec2
    cloudy = cloud_b | cloud_a
    obs_final = obs & ~repeat_blocks(cloudy, es) if cloudy.any() else obs

    # neighbourhood average over observable pixels only (normalised convolution), on the
    # evidence grid
    s = model.smooth_px / model.step
    num = smooth(block_mean(np.where(obs_final, score, np.float32(0)), es), s)
    den = smooth(block_mean(obs_final.astype(np.float32), es), s)
    magnitude, changed, mask = decide_pixels(
        model, score, obs_final, bilinear_up(num, es), bilinear_up(den, es)
    )

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
    # evidence for typing the change areas, on the core only
    rr, cc = core if core is not None else (slice(None), slice(None))
    layers = typing_layers(model, b[:, rr, cc], a[:, rr, cc], obs[rr, cc], every)
    layers["structure"] = ds[rr, cc]
    return ChangeResult(magnitude, mask, model.threshold, obs_final, stats, layers)


def detect_changes(before: Scene, after: Scene, config: ChangeConfig | None = None) -> ChangeResult:
    """Fit the change model on the pair and apply it to the whole pair (same grid, co-registered)."""
    model = fit_change_model(before, after, config)
    return apply_change_model(model, before, after)


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
            h, w = min(tile, rows - r0), min(tile, cols - c0)
            core = (slice(r0 - rr0, r0 - rr0 + h), slice(c0 - cc0, c0 - cc0 + w))
            res = apply_change_model(
                model,
                before.crop(rr0, cc0, rr1 - rr0, cc1 - cc0),
                after.crop(rr0, cc0, rr1 - rr0, cc1 - cc0),
                core=core,
            )
            magnitude[r0 : r0 + h, c0 : c0 + w] = res.magnitude
            mask[r0 : r0 + h, c0 : c0 + w] = res.mask
            observable[r0 : r0 + h, c0 : c0 + w] = res.observable
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
