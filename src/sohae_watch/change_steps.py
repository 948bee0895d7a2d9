"""The steps of the change stage (:mod:`sohae_watch.change`), each a function of the values it
needs: the one-piece stage (``change._score``) and the two-pass scene path
(:mod:`sohae_watch.change_passes`) run the same functions on the same values, so they agree bit
for bit. Per-pixel steps work on any shape; the others say what they reach.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage as ndi

from sohae_watch.blocks import block_mean
from sohae_watch.cloud import (
    CEILING_BLOCK_TOLERANCE,
    CEILING_TOLERANCE,
    alignment_parts,
    at_ceiling,
    cloud_and_shadow,
    edge_alignment,
    ground_whitening,
    haze_opacity,
    lowest_ceiling,
    survival_parts,
    survival_share,
    veil_cloud,
)
from sohae_watch.filters import open_parts, set_box, smooth
from sohae_watch.illumination import brightness
from sohae_watch.parallel import concurrently
from sohae_watch.radiometry import (
    chi_squares,
    ndvi,
    ndvi_classes,
    residual_into,
    standardised_residuals,
)
from sohae_watch.scene import VISIBLE

if TYPE_CHECKING:
    from sohae_watch.change import ChangeModel

NOT_OBSERVABLE = 255


def visible_indices(bands: tuple[str, ...]) -> list[int]:
    return [i for i, b in enumerate(bands) if b in VISIBLE] or list(range(len(bands)))


def visible_mean(stack: np.ndarray, bands: tuple[str, ...]) -> np.ndarray:
    """Mean of the visible bands (all bands when none is visible), accumulated in float32 band
    by band (one band of temporary memory, unlike :func:`sohae_watch.scene.intensity_of`)."""
    idx = visible_indices(bands)
    out = np.array(stack[idx[0]], dtype=np.float32)
    for i in idx[1:]:
        out += stack[i]
    out *= np.float32(1.0 / len(idx))
    return out


@functools.lru_cache(maxsize=32)
def _gaussian_weights(sigma: float, order: int) -> np.ndarray:
    """The taps ``scipy.ndimage.gaussian_filter1d`` correlates with (default truncation), made
    once per sigma rather than on each of the thousands of calls a scene makes: its response to
    a unit impulse, reversed (exact: each output is one tap times 1.0)."""
    r = int(4.0 * sigma + 0.5)
    impulse = np.zeros(2 * r + 1)
    impulse[r] = 1.0
    w = np.ascontiguousarray(
        ndi.gaussian_filter1d(impulse, sigma, order=order, mode="constant")[::-1]
    )
    w.setflags(write=False)
    return w


def _gaussian1d(
    x: np.ndarray, sigma: float, axis: int, order: int, output: np.ndarray | None = None
) -> np.ndarray:
    """``ndi.gaussian_filter1d(x, sigma, axis, order, mode="nearest")``, the same values."""
    w = _gaussian_weights(float(sigma), order)
    return np.asarray(ndi.correlate1d(x, w, axis, output, mode="nearest", origin=0))


def gradient_magnitude(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian gradient magnitude (separable, float32) of an image without NaN."""
    x = np.asarray(img, dtype=np.float32)
    gx = _gaussian1d(x, sigma, 1, 1)
    _gaussian1d(gx, sigma, 0, 0, output=gx)
    gy = _gaussian1d(x, sigma, 0, 1)
    _gaussian1d(gy, sigma, 1, 0, output=gy)
    # sqrt(gx^2 + gy^2) in place: a fifth of this function's time with np.hypot, whose care
    # against overflow these values (image gradients) never need
    np.square(gx, out=gx)
    np.square(gy, out=gy)
    gx += gy
    return np.sqrt(gx, out=gx)


def _residuals(
    model: ChangeModel, b: np.ndarray, a: np.ndarray, bands: list[int]
) -> Iterator[np.ndarray]:
    """Each band's standardised residual ``(a - offset - gain * b) / sigma`` in turn (one
    float32 array, overwritten at each step), with the fit of the pixel's stratum
    (:class:`sohae_watch.radiometry.Strata`) where the model has strata."""
    zk = np.empty(b.shape[1:], dtype=np.float32)
    if model.strata is None:
        for k in bands:
            residual_into(zk, b[k], a[k], model.fits[k])
            yield zk
        return
    # the residual under each stratum's fit, blended by the pixel's stratum (0/1 weights):
    # cheaper than gathering per-pixel coefficients
    cls = _stratum_by_law(model, b, a, model.strata.classes(b, a))
    w1 = (cls == 1).astype(np.float32)  # vegetated on both dates
    w2 = (cls == 2).astype(np.float32)  # bare on both
    del cls
    fits = (model.fits, model.strata.vegetated, model.strata.bare)
    zs = np.empty((2, *zk.shape), dtype=np.float32)
    for k in bands:
        for out, f in zip((zk, zs[0], zs[1]), (s[k] for s in fits), strict=True):
            residual_into(out, b[k], a[k], f)
        zs -= zk
        zs[0] *= w1
        zs[1] *= w2
        zk += zs[0]
        zk += zs[1]
        yield zk


def _stratum_by_law(
    model: ChangeModel, b: np.ndarray, a: np.ndarray, cls: np.ndarray
) -> np.ndarray:
    """``cls`` (:meth:`Strata.classes`) with the pixels vegetated on both dates that the bare
    ground's fit explains better (the smaller sum of squared standardised residuals over the
    bands) moved to the bare stratum. NDVI guesses a pixel's law, and the cut errs one way: a
    blue or green roof paint reflects near infrared (NDVI 0.3-0.4) and does not follow the
    season as grass does; read with the vegetated fit, a roof that did not change was flagged
    whole. The other way it holds: ground bare on both dates is not vegetation, and the
    vegetated fit explained some bare ground that was built on (oscd-bordeaux lost a sixth of
    the change it found when either stratum could take either fit)."""
    assert model.strata is not None
    green = cls == 1
    if not green.any():
        return cls
    chi = chi_squares(b[:, green], a[:, green], (model.strata.vegetated, model.strata.bare))
    out = cls.copy()
    # a band not observable (NaN) compares false: the class is kept
    out[green] = np.where(chi[1] < chi[0], np.uint8(2), np.uint8(1))
    return out


def spectral_evidence(
    model: ChangeModel, b: np.ndarray, a: np.ndarray, obs: np.ndarray, every: bool
) -> np.ndarray:
    """Spectral evidence, band by band: standardised residuals, squared and averaged. With
    strata, each pixel's under its stratum's fit (:func:`_stratum_by_law`: ground vegetated on
    both dates takes the better of the two strata's fits), from the three fits' sums over the
    bands, as the stratum needs every band first (1.2x the time of blending the residuals band
    by band, on a stratified chunk). Ground bare on both dates takes the pale ground's law's
    (:class:`~sohae_watch.illumination.PaleLaw`), ground green on both the best of the green
    ground's laws' (:func:`~sohae_watch.illumination.fit_green_laws`), and ground dark on the
    date a shadow came or left its law's (:class:`~sohae_watch.illumination.ShadowLaws`) where
    that is smaller."""
    n = len(model.bands)
    cls = None  # the NDVI classes (radiometry.ndvi_classes: 1 green, 2 bare on both dates)
    if model.strata is None:
        spec2 = np.zeros(obs.shape, dtype=np.float32)
        for zk in _residuals(model, b, a, list(range(n))):
            np.square(zk, out=zk)
            spec2 += zk
    else:
        cls = model.strata.classes(b, a)
        chi = chi_squares(b, a, (model.fits, model.strata.vegetated, model.strata.bare))
        np.minimum(chi[1], chi[2], out=chi[1])  # _stratum_by_law's choice, on every pixel
        spec2 = chi[0]
        np.copyto(spec2, chi[1], where=cls == 1)
        np.copyto(spec2, chi[2], where=cls == 2)
    pale = model.pale
    bands = model.bands
    laws_need_classes = pale is not None or model.green is not None
    if cls is None and laws_need_classes and "red" in bands and "nir" in bands:
        cls = ndvi_classes(b, a, bands.index("red"), bands.index("nir"))  # without strata
    if pale is not None:
        # inert ground (paving, roofs) the fits misread across seasons: ground bare on both
        # dates (pale on both, without red and near infrared) read with the law of the pale
        # ground where that explains it better
        members = cls == 2 if cls is not None else pale.pale(b, a)
        if members.any():
            chi_p = chi_squares(b[:, members], a[:, members], (pale.fits,))[0]
            spec2[members] = np.fmin(spec2[members], chi_p)
    if model.green is not None and cls is not None:
        # woods and crops on seasons of their own: ground green on both dates read with the
        # green ground's law that explains it best, where that is better
        green = cls == 1
        if green.any():
            chi_g = chi_squares(b[:, green], a[:, green], model.green).min(axis=0)
            spec2[green] = np.fmin(spec2[green], chi_g)
    laws = model.shadows
    if laws is not None:
        # a shadow that came or went: the ground under it, dark on the shaded date, read with
        # the law of such ground where that explains it better (a NaN band compares false)
        for law, date, level in ((laws.came, a, laws.dark_after), (laws.left, b, laws.dark_before)):
            if law is None:
                continue
            dark = brightness(date) <= level
            if dark.any():
                chi_s = chi_squares(b[:, dark], a[:, dark], (law,))[0]
                spec2[dark] = np.fmin(spec2[dark], chi_s)
    if not every:
        spec2[~obs] = 0
    spec2 *= np.float32(1.0 / n)
    return spec2


def structure_evidence(
    model: ChangeModel, b: np.ndarray, a: np.ndarray, obs: np.ndarray, every: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each date's gradient magnitude in units of its typical one, and their standardised
    difference (0 within the gradient's support of nodata). Rows and columns within
    :func:`structure_reach` of the window's edge see its edge, not the scene."""
    bands = model.bands
    ib = visible_mean(b, bands)
    ia = visible_mean(a, bands)
    if not every:
        ib[~obs] = model.fill[0]
        ia[~obs] = model.fill[1]
    gbn = gradient_magnitude(ib, model.gradient_px)
    gan = gradient_magnitude(ia, model.gradient_px)
    del ib, ia
    gbn *= np.float32(1.0 / model.grad_scale_before)
    gan *= np.float32(1.0 / model.grad_scale_after)
    ds = texture_change(gbn, gan)
    ds *= np.float32(1.0 / model.struct_sigma)
    if not every:
        # gradients within their support of nodata see the fill value, not the ground
        near_nodata(ds, obs, _nodata_reach(model))
    return gbn, gan, ds


def texture_change(gbn: np.ndarray, gan: np.ndarray) -> np.ndarray:
    """AFTER's minus BEFORE's gradient magnitude, each in units of its date's typical one, divided
    by ``sqrt(1 + gbn * gan)``: the plain difference where either date is flat (an outline come
    or gone on smooth ground), a relative change where both dates are textured, since there the
    gradients scatter in proportion to their size (woods through the seasons, gravel, a shadow's
    or a roof's edge a fraction of a pixel off). The two meet at the scene's typical gradient.

    Measured when it came (twenty-sixth session, seven seed groups, mean F1 of the pairs without
    snow): 0.568 -> 0.674 on seeds 450-469, 0.640 -> 0.754 on 400-409, against the plain
    difference, with the same structure calls. A new building's outline on ground about as
    textured as the scene's typical ground counts less: new activity found 98 buildings instead
    of 109, with 18 false areas instead of 34 (see ``benchmarks/README.md``)."""
    ds = gan - gbn
    den = gan * gbn
    den += np.float32(1.0)
    np.sqrt(den, out=den)
    ds /= den
    return ds


def near_nodata(x: np.ndarray, obs: np.ndarray, size: int) -> None:
    """Zero ``x`` where a ``size`` x ``size`` window (odd) holds a pixel not ``obs``: what
    ``x[~minimum_filter(obs, size, mode="nearest")] = 0`` does, filtering only the rows of the
    unobserved pixels' box and, in them, the runs of columns that hold one, each grown by the
    window and its reach. A pixel within a window of an unobserved one has it and its whole
    window in that pixel's run; the filter's edge only repeats values of a window it cuts, so
    a run never zeroes more than the whole filter. A date moved by its registration misses a
    few columns at each side of a window: two narrow runs instead of the width."""
    box = set_box(~obs)
    if box is None:
        return
    r = 2 * (size // 2)  # the grown box's pixels, plus the reach of their own windows
    h, w = obs.shape
    rows = slice(max(0, box[0].start - r), min(h, box[0].stop + r))
    bad = np.flatnonzero(~obs[box[0]].all(axis=0))
    # bad columns closer than 2 r + 1 share a run (fewer, overlapping filters otherwise)
    cuts = np.flatnonzero(np.diff(bad) > 2 * r + 1)
    for first, last in zip(bad[np.r_[0, cuts + 1]], bad[np.r_[cuts, bad.size - 1]], strict=True):
        cols = slice(max(0, int(first) - r), min(w, int(last) + 1 + r))
        part = x[rows, cols]
        part[~ndi.minimum_filter(obs[rows, cols], size=size, mode="nearest")] = 0


def _nodata_reach(model: ChangeModel) -> int:
    return 2 * int(math.ceil(2 * model.gradient_px)) + 1


def structure_reach(model: ChangeModel) -> int:
    """Working pixels on each side that :func:`structure_evidence` looks at (the gradient's truncated
    Gaussian, the nodata margin)."""
    return max(int(4.0 * model.gradient_px + 0.5), _nodata_reach(model) // 2)


def combine_score(model: ChangeModel, ds: np.ndarray, spec2: np.ndarray | None) -> np.ndarray:
    """The per-pixel score ``sqrt((w * ds^2 + spec2) / (1 + w))`` (``spec2`` None: 0)."""
    w = np.float32(model.config.structure_weight)
    score = np.square(ds)
    score *= w
    if spec2 is not None:
        score += spec2
    score *= np.float32(1.0 / (1.0 + w))
    np.sqrt(score, out=score)
    return score


EVIDENCE_MEANS = 10  # layers of evidence_means


def evidence_means(model: ChangeModel, gbn: np.ndarray, gan: np.ndarray) -> list[np.ndarray]:
    """Block means on the evidence grid of the gradient evidence the masks need: the edge
    survival sums of AFTER then of BEFORE (kept, strength), each date's gradient, then the
    edge alignment sums of AFTER then of BEFORE (gradient on the other's strong edges, those
    edges): :data:`EVIDENCE_MEANS` layers."""
    es = model.evidence_step
    out = []
    for this, other in ((gan, gbn), (gbn, gan)):  # BEFORE's strong edges still seen on AFTER
        kept, strength = survival_parts(this, other)
        out += [block_mean(kept, es), block_mean(strength, es)]
        del kept, strength
    out += [block_mean(gbn, es), block_mean(gan, es)]
    for this, other in ((gan, gbn), (gbn, gan)):
        on, edges = alignment_parts(this, other)
        out += [block_mean(on, es), block_mean(edges, es)]
        del on, edges
    return out


def evidence_grid(
    model: ChangeModel,
    b_e: np.ndarray,
    a_e: np.ndarray,
    means: list[np.ndarray],
    threads: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The wide-neighbourhood evidence on the evidence grid, from the block means of the pair
    and :func:`evidence_means`: whitened ground (snow), and cloud or shadow on each date. With
    ``threads`` > 1 independent parts run side by side (the same arrays come out)."""
    bands = model.bands
    e = model.step
    px_m = model.px_m
    vis = visible_indices(bands)
    # the residuals are linear in the pixels: those of the block means are the block means of
    # theirs (NaN where a block is not wholly observable)
    z_e = standardised_residuals(b_e, a_e, list(model.fits))
    kept_a, strength_a, kept_b, strength_b, grad_b, grad_a, on_a, edges_a, on_b, edges_b = means
    nir = _nir(bands)

    # a block mean is at the ceiling within a wider margin than a pixel (cloud.at_ceiling), and
    # only at a ceiling the date's product can have
    tolerance = CEILING_BLOCK_TOLERANCE if e > 1 else CEILING_TOLERANCE
    lowest_b, lowest_a = (lowest_ceiling(c) for c in model.ceiling)

    def date(
        kept: np.ndarray,
        strength: np.ndarray,
        on: np.ndarray,
        edges: np.ndarray,
        grad: np.ndarray,
        x_e: np.ndarray,
        lowest: float,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        # a sensor's ceiling in every band tells cloud only where a near-infrared band says it
        # too (a white roof in RGB saturates as well)
        sat = at_ceiling(x_e, tolerance, lowest) if nir is not None else None
        aligned = edge_alignment(on, edges, grad, px_m, e)
        return survival_share(kept, strength, px_m, e), aligned, sat

    (surv_a, align_a, sat_a), (surv_b, align_b, sat_b) = concurrently(
        lambda: date(kept_a, strength_a, on_a, edges_a, grad_a, a_e, lowest_a),
        lambda: date(kept_b, strength_b, on_b, edges_b, grad_b, b_e, lowest_b),
        threads,
    )
    survival = (surv_a, surv_b)
    pred = _predictions(model, b_e, a_e)  # each date as the other predicts it: veils and lift

    def snow_and_veils() -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
        # snow or frost that came or went: its colour is not evidence, only the strong edges it
        # leaves visible (roads, roofs, shadows) are compared
        white = ground_whitening(
            z_e, b_e[vis], a_e[vis], None, None, px_m, nir, step=e, survival=survival
        )
        return white, _veils(model, b_e, a_e, pred, sat_b, sat_a)

    def clouds() -> tuple[np.ndarray, np.ndarray]:
        # clouds and their shadows, from the dates' disagreement
        tex = model.texture_px / e
        return cloud_and_shadow(
            z_e,
            b_e[vis],
            a_e[vis],
            smooth(grad_b, tex),
            smooth(grad_a, tex),
            px_m,
            grad_b,
            grad_a,
            sat_b,
            sat_a,
            step=e,
            survival=survival,
            alignment=(align_a, align_b),
            lift=_lift(model, b_e, a_e, pred),
        )

    (white_e, (veil_b, veil_a)), (cloud_b, cloud_a) = concurrently(snow_and_veils, clouds, threads)
    return white_e, cloud_b | veil_b, cloud_a | veil_a


def _predictions(model: ChangeModel, b: np.ndarray, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each date's bands as the other date predicts them through the scene's fits (AFTER's
    prediction from BEFORE, BEFORE's from AFTER)."""
    pred_a = np.empty_like(a)
    pred_b = np.empty_like(b)
    for i, f in enumerate(model.fits):
        pred_a[i] = b[i] * np.float32(f.gain) + np.float32(f.offset)
        pred_b[i] = (a[i] - np.float32(f.offset)) * np.float32(1.0 / f.gain)
    return pred_a, pred_b


def _lift(
    model: ChangeModel, b: np.ndarray, a: np.ndarray, pred: tuple[np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Each date's visible brightness over what the other date predicts there (AFTER, BEFORE;
    ``pred``: :func:`_predictions`): 1 on unchanged ground, many times that on a cloud over
    dark ground; NaN where a prediction is not positive."""
    vis = visible_indices(model.bands)
    pred_a, pred_b = pred
    out = []
    for x, predicted in ((a, pred_a), (b, pred_b)):
        p = predicted[vis].mean(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            out.append(np.where(p > 0, x[vis].mean(axis=0) / p, np.float32(np.nan)))
    return out[0], out[1]


def _nir(bands: tuple[str, ...]) -> int | None:
    """Index of the near-infrared band when every other band is visible, else None."""
    ok = "nir" in bands and len(visible_indices(bands)) + 1 == len(bands)
    return bands.index("nir") if ok else None


def decide_pixels(
    model: ChangeModel, score: np.ndarray, obs_final: np.ndarray, num: np.ndarray, den: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Magnitude, change and mask from the score and the neighbourhood sums (``num`` and ``den``
    on the working grid; ``num`` is overwritten). A pixel that on its own is within the
    no-change law keeps its own score (it cannot inherit a neighbour's change: a strong change
    would otherwise spill beyond its edge)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        magnitude = np.divide(num, den, out=num)
    quiet = score < np.float32(model.pixel_cut)
    np.minimum(magnitude, score, out=magnitude, where=quiet)
    magnitude[~obs_final] = np.nan
    changed = np.zeros(obs_final.shape, dtype=bool)
    if math.isfinite(model.threshold):
        with np.errstate(invalid="ignore"):
            changed = magnitude > np.float32(model.threshold)
        changed = open_parts(changed, model.open_radius_px)
        changed &= obs_final
    mask = changed.astype(np.uint8)
    mask[~obs_final] = NOT_OBSERVABLE
    return magnitude, changed, mask


def typing_layers(
    model: ChangeModel, b: np.ndarray, a: np.ndarray, obs: np.ndarray, every: bool
) -> dict[str, np.ndarray]:
    """Per-pixel evidence for typing the change areas (but the structure change): the mean
    standardised change of the visible bands, each date's NDVI. Pixel by pixel, any shape."""
    bands = model.bands
    vis = visible_indices(bands)
    bright = np.zeros(b.shape[1:], dtype=np.float32)
    for zk in _residuals(model, b, a, vis):
        bright += zk
    bright *= np.float32(1.0 / len(vis))
    bright = np.nan_to_num(bright, nan=0.0, copy=False)
    if not every:
        bright[~obs] = 0
    layers = {"brightness": bright}
    if "red" in bands and "nir" in bands:
        layers["ndvi_before"] = _ndvi(b, bands)
        layers["ndvi_after"] = _ndvi(a, bands)
    return layers


def _veils(
    model: ChangeModel,
    b: np.ndarray,
    a: np.ndarray,
    pred: tuple[np.ndarray, np.ndarray],
    sat_b: np.ndarray | None,
    sat_a: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Cloud veils on each date: the opacity of a white veil over the other date's prediction
    (``pred``: :func:`_predictions`)."""
    if not model.ceiling[0] or (sat_a is None and sat_b is None):
        z = np.zeros(b.shape[1:], dtype=bool)
        return z, z
    ceil_b, ceil_a = (np.asarray(c, dtype=np.float32) for c in model.ceiling)
    pred_a, pred_b = pred
    e = model.step
    veil_a = veil_cloud(haze_opacity(a, pred_a, ceil_a), model.px_m, sat_a, e)
    veil_b = veil_cloud(haze_opacity(b, pred_b, ceil_b), model.px_m, sat_b, e)
    return veil_b, veil_a


def _ndvi(stack: np.ndarray, bands: tuple[str, ...]) -> np.ndarray:
    return ndvi(stack[bands.index("red")], stack[bands.index("nir")])
