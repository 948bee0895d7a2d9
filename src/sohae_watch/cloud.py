"""Cloud and cloud-shadow masks found by comparing the two dates.

A cloud is a patch that, on one date only, is brighter than the other date's prediction in every
band, nearly colourless, and has lost the texture the other date shows there; or, over most of a
landscape neighbourhood, at least twice as bright, hiding the other date's edges and textured at
every pixel by billows of its own (a cumulus at 10 m). Its shadow is a patch
darker in every band, also without texture, near a cloud of the same date. Every operation is a
local filter of bounded size, so the masks come out the same in windows (with a halo) as in one
piece.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi

from sohae_watch.filters import smooth

__all__ = [
    "ALIGNED",
    "BRIGHTER",
    "CLOUD_Z",
    "alignment_parts",
    "at_ceiling",
    "cloud_and_shadow",
    "cloud_reach_px",
    "edge_alignment",
    "edge_survival",
    "ground_whitening",
    "haze_opacity",
    "lowest_ceiling",
    "scene_ceiling",
    "survival_parts",
    "survival_share",
    "veil_cloud",
    "whitening_candidates",
]

CLOUD_Z = 4.0  # standardised residual every band must exceed (about 4 no-change sigmas)
STRONG_EDGE = 3.0  # a gradient this many times the date's typical one is a "strong edge"
WHITENED_SHARE = 0.3  # share of a ~200 m neighbourhood whitened on one date: snow, not a lot
SURVIVAL = 0.4  # share of the other date's strong-edge strength still visible: ground, not cloud
# a date's gradient on the other date's strong edges, against its mean gradient around them:
# below this the edges do not show through (a cloud's own billows are as strong anywhere);
# ground keeps its edges at STRONG_EDGE times the typical gradient or more
ALIGNED = 1.5
# a date this many times brighter than the other date predicts (visible mean): a cloud over ground
# so much darker that billows of a few per cent of its brightness outdo the ground's texture in
# the scene's units. On generated scenes snow patches on dark soil reached 7.7 and the ground a
# removed building leaves 3.1 (90th percentiles), and were taken for cloud without this bound
BRIGHTER = 10.0
# a date at least this many times brighter than the other date predicts (visible mean): the cloud
# gives at least as much light as the ground under it. Such a patch over most of a landscape
# neighbourhood (~200 m), hiding the other date's edges and not following them (or with none to
# follow), and with a gradient of at least BILLOWED times the date's typical one at every pixel,
# is a billowed cloud: at 10 m a cumulus's billows are several times the texture of the town
# under it (oscd-paris: a median of 4.4 times the typical gradient, 1.25 at the 5th percentile),
# so the flat-patch test misses it. A new flat roof that large has a gradient only at its edges
# and stays change
LIFTED = 2.0
BILLOWED = 1.0


def _saturation(vis: np.ndarray) -> np.ndarray:
    mx = vis.max(axis=0)
    mn = vis.min(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = (mx - mn) / np.maximum(np.abs(mx), 1e-6)
    s[np.isnan(s)] = 1.0
    return s


def _colourless(vis: np.ndarray, where: np.ndarray) -> np.ndarray:
    """``where & (saturation < 0.25)``: nearly colourless pixels among ``where``, the saturation
    computed on those pixels only (bright candidates are a small share of a scene)."""
    out = np.zeros(where.shape, dtype=bool)
    if where.any():
        out[where] = _saturation(vis[:, where]) < 0.25
    return out


def _survival_sigma(px_m: float, step: int = 1) -> float:
    """Neighbourhood over which strong edges are counted (~15 m, bounded), in pixels of a grid
    ``step`` times coarser than the pixels of ``px_m``."""
    return float(max(1.0, min(24.0, 15.0 / px_m))) / step


def survival_parts(grad_this: np.ndarray, grad_other: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel, the OTHER date's strong-edge strength still seen on THIS date, and that
    strength (0 off strong edges): the two sums :func:`survival_share` averages. Linear in the
    pixels, so they may be block-averaged onto a coarser grid first."""
    strong = grad_other > STRONG_EDGE
    other = np.where(strong, grad_other, np.float32(0)).astype(np.float32, copy=False)
    kept = np.where(strong, np.minimum(grad_this, grad_other), np.float32(0))
    return kept.astype(np.float32, copy=False), other


def survival_share(kept: np.ndarray, other: np.ndarray, px_m: float, step: int = 1) -> np.ndarray:
    """Neighbourhood share (~15 m) of ``other`` that ``kept`` holds, in [0, 1]; 0 where there is
    no strong edge nearby. ``step``: the arrays are block means of ``step`` x ``step`` pixels of
    ``px_m``."""
    sigma = _survival_sigma(px_m, step)
    num = smooth(kept, sigma)
    den = smooth(other, sigma)
    out = np.zeros(num.shape, dtype=np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        np.divide(num, den, out=out, where=den > 0.05 * STRONG_EDGE)
    out[np.isnan(out)] = 0.0
    return out


def alignment_parts(grad_this: np.ndarray, grad_other: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel, THIS date's gradient where the OTHER date has a strong edge (0 elsewhere), and
    1 there (0 elsewhere): the two sums :func:`edge_alignment` takes. Linear in the pixels, so
    they may be block-averaged onto a coarser grid first."""
    strong = grad_other > STRONG_EDGE
    on = np.where(strong, grad_this, np.float32(0)).astype(np.float32, copy=False)
    return on, strong.astype(np.float32)


def edge_alignment(
    on_edges: np.ndarray, edges: np.ndarray, grad_this: np.ndarray, px_m: float, step: int = 1
) -> np.ndarray:
    """How many times its own mean gradient nearby (~15 m) THIS date's gradient is on the
    OTHER date's strong edges (:func:`alignment_parts`): several times where those edges show
    through (ground, snow and haze on it; the edges raise the mean themselves), about 1 where
    this date's gradients are its own and unrelated to them, however strong (the billows of a
    cloud over a dark scene are many times that scene's typical gradient). NaN where under 1 %
    of the pixels nearby are the other date's strong edges: no evidence either way."""
    sigma = _survival_sigma(px_m, step)
    n = smooth(edges, sigma)
    on = smooth(on_edges, sigma)
    mean = smooth(grad_this, sigma)
    out = np.full(n.shape, np.nan, dtype=np.float32)
    ok = (n > 0.01) & (mean > 0)
    out[ok] = on[ok] / (n[ok] * mean[ok])
    return out


def edge_survival(grad_this: np.ndarray, grad_other: np.ndarray, px_m: float) -> np.ndarray:
    """Share of the OTHER date's strong-edge strength that THIS date still shows nearby, in [0, 1].

    Gradients are in units of each date's typical gradient. Snow, haze and new paint lie on the
    ground: roads, roofs and shadows keep strong edges through them. A thick cloud hides
    everything, the other date's strongest edges included. Where the other date has no strong edge
    nearby the answer is 0: no evidence either way, so the other tests decide alone.
    """
    kept, other = survival_parts(grad_this, grad_other)
    return survival_share(kept, other, px_m)


def _extents(px_m: float, step: int = 1) -> tuple[int, int, int]:
    """Pixel sizes of: the neighbourhood a cloud must dominate (~200 m), how far its haze rim and
    shadow may reach (~300 m), and the safety margin (~20 m); bounded (in pixels of ``px_m``) so
    windows stay cheap. With ``step`` > 1: the same extents in pixels of a grid ``step`` times
    coarser (block means), where the masks are computed at a cost divided by ``step**2``."""
    size = max(5, min(64, round(200.0 / px_m)))
    near = max(3, min(64, round(300.0 / px_m)))
    grow = max(1, min(16, round(20.0 / px_m)))
    if step > 1:
        size, near = (max(1, round(v / step)) for v in (size, near))
        # the margin, less the half block a mask on coarse blocks already reaches beyond its edge
        grow = max(1, (grow - step // 2) // step)
    return size, near, grow


def _landscape_px(px_m: float, step: int = 1) -> int:
    """The neighbourhood snow or frost must cover a share of (~200 m), in pixels of a grid
    ``step`` times coarser than ``px_m``; bounded there (the evidence grid is coarse), not in
    input pixels as :func:`_extents` is: at 0.5 m that bound made it 32 m, and a new pale roof
    of 600 m² on grass was taken for snow and taken out of the change."""
    return max(5, min(64, round(200.0 / (px_m * step))))


def cloud_reach_px(px_m: float, step: int = 1) -> int:
    """How far (pixels of a grid ``step`` times coarser than ``px_m``) the masks of a pixel
    depend on its neighbours: the window halo needed."""
    size, near, grow = _extents(px_m, step)
    survival = int(math.ceil(4 * _survival_sigma(px_m, step))) + 1
    landscape = _landscape_px(px_m, step) // 2 + 1
    # a cloud's core: a landscape share (_billowed) or the flat-patch tests, then its
    # neighbourhood share, rim, shadow and margin
    clouds = landscape + size + 2 * near + 2 * grow + 2 + survival
    return max(clouds, landscape + survival)


def _billowed(
    hazier: np.ndarray,
    grad: np.ndarray,
    survival: np.ndarray,
    alignment: np.ndarray,
    lift: np.ndarray,
    px_m: float,
    step: int,
) -> np.ndarray:
    """Pixels of a date brighter in every band (``hazier``), at least :data:`LIFTED` times what
    the other date predicts (``lift``), textured at every pixel (``grad``, the date's gradient in
    units of its typical one, at least :data:`BILLOWED`), where the other date's edges are hidden
    (``survival``) and this date's gradients do not follow them (``alignment``; NaN, none
    nearby, counts as not following), over most of a landscape neighbourhood
    (:func:`_landscape_px`): a billowed cloud."""
    with np.errstate(invalid="ignore"):
        lifted = hazier & (grad >= BILLOWED) & (lift >= LIFTED)
        lifted &= (survival < SURVIVAL) & ~(alignment >= ALIGNED)
    if not lifted.any():
        return lifted
    share = ndi.uniform_filter(
        lifted.astype(np.float32), size=_landscape_px(px_m, step), mode="nearest"
    )
    return np.asarray(lifted & (share > 0.5))


def cloud_and_shadow(
    z: np.ndarray,
    vis_before: np.ndarray,
    vis_after: np.ndarray,
    tex_before: np.ndarray,
    tex_after: np.ndarray,
    px_m: float,
    grad_before: np.ndarray | None = None,
    grad_after: np.ndarray | None = None,
    saturated_before: np.ndarray | None = None,
    saturated_after: np.ndarray | None = None,
    *,
    step: int = 1,
    survival: tuple[np.ndarray, np.ndarray] | None = None,
    alignment: tuple[np.ndarray, np.ndarray] | None = None,
    lift: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks (rows, cols) of cloud or cloud shadow in BEFORE and in AFTER.

    ``z``: standardised residuals AFTER minus predicted AFTER, shape (bands, rows, cols), NaN where
    not observable; ``vis_*``: visible bands of each date (3, rows, cols); ``tex_*``: local texture
    (smoothed gradient magnitude, scale-free units) of each date; ``px_m``: pixel size in metres;
    ``grad_*``: gradient magnitude of each date in units of its typical gradient. With them, a
    bright patch through which the other date's strong edges still show (snow, frost, haze on the
    ground) is not a cloud; with ``lift`` and ``alignment`` too, a patch twice as bright and
    textured at every pixel over a landscape is (:func:`_billowed`). ``saturated_*``: pixels at
    the sensor's ceiling in every band (visible and near infrared); brighter there in every
    band, they are cloud whatever their texture (a saturated cloud has only the sensor's noise
    for texture). ``survival`` (AFTER, BEFORE): :func:`survival_share` of the other date's strong
    edges on each date; ``alignment`` (AFTER, BEFORE): :func:`edge_alignment`. ``lift`` (AFTER,
    BEFORE): each date's brightness over what the other date predicts there (1 on unchanged
    ground).

    A cloud's own billows are texture in a scene's units however featureless the cloud is for
    its brightness: over ground ten times darker, billows of a few per cent of the cloud's
    brightness are stronger than the ground's texture and than its edges. With ``lift`` and
    ``alignment``, where the other date's edges are there and this date's gradients do not
    follow them however strong, a date's texture is compared with the other's in proportion to
    its brightness.
    """
    # a pixel not observable in a band (NaN) is in none of the tests' tails, as a NaN compares
    # false: no copy of z without NaN is needed
    zmin = z.min(axis=0)
    zmax = z.max(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        tex_ratio = tex_after / np.maximum(tex_before, 1e-6)
    tex_ratio[np.isnan(tex_ratio)] = 1.0
    flat_after = tex_ratio < 0.6
    flat_before = tex_ratio > 1.0 / 0.6
    hazier_a = zmin > CLOUD_Z  # brighter in every band: cloud or its haze in AFTER
    hazier_b = zmax < -CLOUD_Z
    pale_a, pale_b = flat_after, flat_before
    shadow_a = (zmax < -CLOUD_Z) & flat_after
    shadow_b = (zmin > CLOUD_Z) & flat_before
    if survival is None and grad_before is not None and grad_after is not None:
        survival = (
            edge_survival(grad_after, grad_before, px_m),
            edge_survival(grad_before, grad_after, px_m),
        )
    if survival is not None:
        hidden_a = survival[0] < SURVIVAL
        hidden_b = survival[1] < SURVIVAL
        pale_a = pale_a & hidden_a
        pale_b = pale_b & hidden_b
        shadow_a &= hidden_a
        shadow_b &= hidden_b
    if alignment is not None and lift is not None:
        # far brighter than predicted, where the other date's edges are there and this date's
        # gradients do not follow them (NaN, no edge nearby, is not below): a texture in
        # proportion to the brightness, a cloud's billows
        with np.errstate(divide="ignore", invalid="ignore"):
            far_a = (lift[0] >= BRIGHTER) & (alignment[0] < ALIGNED)
            far_b = (lift[1] >= BRIGHTER) & (alignment[1] < ALIGNED)
            pale_a = pale_a | (far_a & (tex_ratio < 0.6 * lift[0]))
            pale_b = pale_b | (far_b & (tex_ratio * lift[1] > 1.0 / 0.6))
        if survival is not None and grad_before is not None and grad_after is not None:
            # twice as bright or more over a landscape, textured everywhere by its own billows
            pale_a = pale_a | _billowed(
                hazier_a, grad_after, survival[0], alignment[0], lift[0], px_m, step
            )
            pale_b = pale_b | _billowed(
                hazier_b, grad_before, survival[1], alignment[1], lift[1], px_m, step
            )
    cloud_a = _colourless(vis_after, hazier_a & pale_a)
    cloud_b = _colourless(vis_before, hazier_b & pale_b)
    if saturated_after is not None:
        cloud_a |= hazier_a & saturated_after
    if saturated_before is not None:
        cloud_b |= hazier_b & saturated_before
    size, near, grow = _extents(px_m, step)
    out = []
    for cloud, shadow, haze in ((cloud_b, shadow_b, hazier_b), (cloud_a, shadow_a, hazier_a)):
        if not cloud.any():
            out.append(np.zeros(cloud.shape, dtype=bool))
            continue
        c = ndi.uniform_filter(cloud.astype(np.float32), size=size, mode="nearest") > 0.5
        c = ndi.binary_dilation(c, iterations=size // 2) & cloud | c
        if not c.any():
            out.append(c)
            continue
        # the thin rim: pixels brighter in every band, connected to the core within ``near``
        c = ndi.binary_dilation(c, iterations=near, mask=haze | c)
        close_to_cloud = ndi.maximum_filter(c, size=2 * near + 1, mode="nearest")
        s = shadow & close_to_cloud
        s = ndi.uniform_filter(s.astype(np.float32), size=size, mode="nearest") > 0.5
        m = ndi.maximum_filter(c | s, size=2 * grow + 1, mode="nearest")
        out.append(m)
    return out[0], out[1]


def ground_whitening(
    z: np.ndarray,
    vis_before: np.ndarray,
    vis_after: np.ndarray,
    grad_before: np.ndarray | None,
    grad_after: np.ndarray | None,
    px_m: float,
    nir_index: int | None = None,
    *,
    step: int = 1,
    survival: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Pixels that on one date only are brighter in every band and nearly colourless while the
    other date's strong edges still show through: snow or frost that came or went. Not change
    (the ground under it is what is compared, by its structure), and not cloud. ``nir_index``:
    the near-infrared band's index in ``z`` (all other bands visible), or None without one.
    ``step`` and ``survival``: as for :func:`cloud_and_shadow`."""
    white_a, white_b = whitening_candidates(z, vis_before, vis_after)
    either = white_a | white_b
    if nir_index is not None and either.any():
        # snow reflects less in the near infrared than in the visible: its NIR rises (or falls)
        # clearly less than its visible bands, unlike paving, bare soil or a cloud (tested on
        # the candidates only)
        zc = np.nan_to_num(z[:, either], nan=0.0)
        vis_idx = [i for i in range(zc.shape[0]) if i != nir_index]
        zv = zc[vis_idx].mean(axis=0)
        zn = zc[nir_index]
        white_a[either] &= zn < 0.7 * zv
        white_b[either] &= zn > 0.7 * zv
    if survival is None:
        if grad_before is None or grad_after is None:
            raise ValueError("ground_whitening needs the gradients or the survival shares")
        survival = (
            edge_survival(grad_after, grad_before, px_m),
            edge_survival(grad_before, grad_after, px_m),
        )
    seen_a = survival[0] >= SURVIVAL
    seen_b = survival[1] >= SURVIVAL
    # snow and frost cover the landscape, not one lot: a whitened pixel counts only where
    # whitening covers a good share of its ~200 m neighbourhood (a new pale car park, roof or
    # road replacing vegetation is whiter and greyer too, but on its own)
    size = _landscape_px(px_m, step)
    out = []
    for white in (white_a, white_b):
        if white.any():
            share = ndi.uniform_filter(white.astype(np.float32), size=size, mode="nearest")
            white = white & (share > WHITENED_SHARE)
        out.append(white)
    return np.asarray((out[0] & seen_a) | (out[1] & seen_b))


def whitening_candidates(
    z: np.ndarray, vis_before: np.ndarray, vis_after: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Pixels brighter in every band and nearly colourless on AFTER, and on BEFORE: what
    :func:`ground_whitening` narrows down (a superset of its result). A band not observable
    (NaN in ``z``) leaves a pixel out."""
    white_a = _colourless(vis_after, z.min(axis=0) > CLOUD_Z)
    white_b = _colourless(vis_before, z.max(axis=0) < -CLOUD_Z)
    return white_a, white_b


# full scale of the sensors' products: 8, 10, 11 (WorldView, GeoEye, QuickBird), 12 (Pleiades,
# SPOT 6/7), 14 and 16 bits
CEILINGS = (255.0, 1023.0, 2047.0, 4095.0, 16383.0, 65535.0)
# how far below a ceiling a pixel still counts as at it: resampling (co-registration) blurs the
# exact value
CEILING_TOLERANCE = 0.03
# ... and a block mean (the evidence grid): a block of a thick core's rim, or of a core the area
# compared cuts, averages its saturated pixels with bright ones just under the ceiling (a cloud
# of the generated scene of seed 102 cut by the grid's edge: 317 pixels at the ceiling, its best
# blocks 0.92-0.955 of it in every band)
CEILING_BLOCK_TOLERANCE = 0.1


def at_ceiling(
    stack: np.ndarray, tolerance: float = CEILING_TOLERANCE, lowest: float = 0.0
) -> np.ndarray:
    """Pixels at a sensor's full-scale value (a 2^k - 1 ceiling, ``lowest`` or above: see
    :func:`lowest_ceiling`) in every band of ``stack``, within ``tolerance`` of it."""
    lo = stack.min(axis=0)  # NaN where a band is: then below every ceiling
    hi = stack.max(axis=0)
    out = np.zeros(lo.shape, dtype=bool)
    for c in CEILINGS:
        if c >= lowest:
            out |= (lo >= (1.0 - tolerance) * c) & (hi <= c + 0.5)
    return out


def lowest_ceiling(ceiling: Sequence[float]) -> float:
    """The lowest sensor ceiling a product can have, from its :func:`scene_ceiling`: one at or
    above every band's brightest value. A 2^k - 1 below a value the product holds is not its
    full scale (a 14-bit product whose white roofs reach 4000 has no 12-bit ceiling there);
    ceilings above the brightest value seen stay possible (a sample may miss the clouds). 0
    when nothing is known; infinite when a band is brighter than every ceiling."""
    if not len(ceiling):
        return 0.0
    top = max(ceiling)
    return next((c for c in CEILINGS if top <= c + 0.5), math.inf)


HAZE_ALPHA = 0.15  # cloud opacity above which the ground is not observable (a consistent veil)
CORE_ALPHA = 0.6  # opacity of a cloud's thick core
ALPHA_SPREAD = 0.2  # how much the opacity may differ between bands: a white veil is grey


def haze_opacity(this: np.ndarray, predicted: np.ndarray, ceiling: np.ndarray) -> np.ndarray:
    """Per band opacity ``a`` of a white veil: ``this = (1 - a) * predicted + a * ceiling``.

    ``predicted``: THIS date as the other date predicts it (radiometric normalisation);
    ``ceiling``: per band brightness of a thick cloud (the sensor's full scale where the scene
    reaches it, else the scene's brightest value). Returns float32 (bands, rows, cols).
    """
    c = ceiling.astype(np.float32).reshape(-1, 1, 1)
    a = np.subtract(this, predicted, dtype=np.float32)
    room = np.subtract(c, predicted, dtype=np.float32)
    np.maximum(room, np.float32(1e-6), out=room)
    with np.errstate(divide="ignore", invalid="ignore"):
        np.divide(a, room, out=a)
    a[np.isnan(a)] = 0.0
    return np.clip(a, -1.0, 1.0, out=a)


def veil_cloud(
    alpha: np.ndarray, px_m: float, saturated: np.ndarray | None, step: int = 1
) -> np.ndarray:
    """Cloud (with its semi-transparent rim) on one date from the opacity of a white veil.

    A cloud pixel has the same opacity, above :data:`HAZE_ALPHA`, in every band (a grey veil:
    snow instead brightens the visible bands more than the near infrared), and belongs to a
    connected blob whose opacity rises to a thick core that reaches the sensor's ceiling in every
    band (``saturated``; pass it only where a near-infrared band exists, as a white roof saturates
    in RGB only, and None otherwise: then no veil is called and the texture tests decide). Snow
    is the brightest thing of a cloudless scene, but it is not tied to a saturated core. The rim
    is followed from the core through pixels of consistent opacity, a bounded distance.
    """
    if saturated is None or not saturated.any():
        return np.zeros(alpha.shape[1:], dtype=bool)
    amin = alpha.min(axis=0)
    amax = alpha.max(axis=0)
    veil = (amin > HAZE_ALPHA) & (amax - amin < ALPHA_SPREAD)
    thick = veil & ((amin > CORE_ALPHA) | saturated)
    size, near, grow = _extents(px_m, step)
    core = ndi.uniform_filter(thick.astype(np.float32), size=size, mode="nearest") > 0.5
    core &= ndi.maximum_filter(veil & saturated, size=size, mode="nearest")
    if not core.any():
        return core
    core = ndi.binary_dilation(core, iterations=size // 2) & thick | core
    cloud = ndi.binary_dilation(core, iterations=near, mask=veil | core)
    return np.asarray(ndi.maximum_filter(cloud, size=2 * grow + 1, mode="nearest"))


def scene_ceiling(stack: np.ndarray) -> np.ndarray:
    """Per band brightness of a thick cloud: the sensor's full scale (a 2^k - 1 ceiling) where the
    scene comes within 3 % of it, else the brightest value the scene holds."""
    flat = stack.reshape(stack.shape[0], -1)
    hi = np.nanmax(flat, axis=1) if np.isfinite(flat).any() else np.ones(stack.shape[0])
    out = hi.astype(np.float64)
    for b, v in enumerate(hi):
        for c in CEILINGS:
            if (1.0 - CEILING_TOLERANCE) * c <= v <= c + 0.5:
                out[b] = c
                break
    return out
