"""Cast-shadow and spectral evidence that a structure stands on a footprint.

Each measure is turned into a log-likelihood ratio (natural log of the odds "a structure stands
here" against "bare ground"), capped so that no single secondary cue outweighs a clear outline:

- **Cast shadow**: a structure standing in sunlight darkens the ground on the side of its
  footprint away from the sun. Measured as the share of a band just outside the footprint on
  that side that is darker, by an outline edge's contrast, than the 5th percentile of the same
  band on the sun side. Ranks within one image make it immune to gain, offset and haze; taking
  the band in each date's own sun direction means a shadow that moved with the sun is still the
  same evidence. Bare ground gives about 0.2, a standing structure close to 1. The sun direction
  comes from the scene's metadata when given, else from the image: the direction in which dark
  bands sit next to the footprints that are clearly outlined on that date.
- **Vegetation** (where a near-infrared band exists): green vegetation covering the footprint
  (NDVI well above any roof's) is evidence that no roof is there. Only evidence against: bare
  soil, concrete and roofs share NDVI values, so a low NDVI proves nothing.

And for a change area outside the footprints, whether it is only a shadow that moved with the
sun (:func:`moved_shadow`), or the shadow of a listed structure (:func:`listed_shadow`): then it
is no new activity.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage
from shapely.geometry.base import BaseGeometry

from sohae_watch.footprint import SHADOW_RATIO, shift_mask
from sohae_watch.scene import Scene, SunPosition

SHADOW_NEAR_M = 1.0  # the band starts this far outside the footprint (outline, rim, misfit)
SHADOW_DEPTH_M = 3.0  # ... and is this deep: any structure above ~4 m at 50 deg sun fills it
SHADOW_REFERENCE_Q = 5.0  # "dark" = below this percentile of the sun-side band, by a margin
SHADOW_BARE = 0.1  # dark share up to which no shadow is seen (same ground both sides: ~0)
SHADOW_STANDING = 0.7  # dark share from which a shadow is seen (shadow over most of the band)
SHADOW_HIDDEN = 0.3  # P(no shadow seen | structure): in another shadow, on dark ground, low roof
SHADOW_FALSE = 0.1  # P(shadow seen | bare ground): a dark road, an unsnowed apron beside snow
MIN_SHADOW_ELEVATION_TAN = 0.25  # below ~14 deg (long shadows over neighbours) ...
MAX_SHADOW_ELEVATION = 75.0  # ... or above 75 deg (shadows under a metre) the cue is unused
VEGETATION_NDVI = 0.55  # above every roof material, below green crops, grass and trees
VEGETATION_LLR = -3.0  # a footprint fully under green vegetation: 20:1 against a roof
AZIMUTH_STEP = 10


def away_from_sun(azimuth: float) -> tuple[float, float]:
    """Unit vector (columns, rows) on a north-up grid pointing away from the sun."""
    a = math.radians(azimuth)
    return -math.sin(a), math.cos(a)  # east is +col, north is -row


def side_band(fp: np.ndarray, direction: tuple[float, float], resolution: float) -> np.ndarray:
    """Pixels just outside footprint ``fp`` on the side ``direction`` (cols, rows) points to."""
    near = max(1, int(round(SHADOW_NEAR_M / resolution)))
    far = near + max(2, int(round(SHADOW_DEPTH_M / resolution)))
    band = np.zeros_like(fp)
    for k in range(near, far + 1):
        band |= shift_mask(fp, int(round(k * direction[0])), int(round(k * direction[1])))
    return band & ~ndimage.binary_dilation(fp, iterations=near)


def dark_share(
    intensity: np.ndarray,
    valid: np.ndarray,
    fp: np.ndarray,
    azimuth: float,
    resolution: float,
    contrast: float = 0.0,
) -> float:
    """Share of the band away from the sun that is in shadow against the sun-side band: darker
    than the sun-side band's 20th percentile by at least ``contrast`` (an outline edge's step),
    so a gentle brightness trend across plain ground is not taken for a shadow."""
    dc, dr = away_from_sun(azimuth)
    shade = side_band(fp, (dc, dr), resolution) & valid
    lit = side_band(fp, (-dc, -dr), resolution) & valid
    if shade.sum() < 6 or lit.sum() < 6:
        return float("nan")
    level = float(np.percentile(intensity[lit], SHADOW_REFERENCE_Q)) - contrast
    return float((intensity[shade] < level).mean())


def shadow_usable(sun: SunPosition | None) -> bool:
    """Whether the cue means anything for this sun (unknown elevation: assume it does)."""
    if sun is None:
        return False
    if not math.isfinite(sun.elevation):
        return True
    return (
        math.tan(math.radians(max(sun.elevation, 0.1))) >= MIN_SHADOW_ELEVATION_TAN
        and sun.elevation <= MAX_SHADOW_ELEVATION
    )


def shadow_llr(share: float) -> float:
    """Log-likelihood ratio of a dark share: ln((1 - hidden) / false) = +1.95 for a shadow seen
    (share >= ``SHADOW_STANDING``), ln(hidden / (1 - false)) = -1.10 for none (share <=
    ``SHADOW_BARE``), linear between. Absence is the weaker cue: shadows are often hidden."""
    if not math.isfinite(share):
        return 0.0
    seen = math.log((1 - SHADOW_HIDDEN) / SHADOW_FALSE)
    unseen = math.log(SHADOW_HIDDEN / (1 - SHADOW_FALSE))
    t = min(1.0, max(0.0, (share - SHADOW_BARE) / (SHADOW_STANDING - SHADOW_BARE)))
    return unseen + t * (seen - unseen)


def vegetation_llr(scene: Scene, fp: np.ndarray) -> tuple[float, float]:
    """(share of the footprint under green vegetation, log-likelihood ratio), (nan, 0) without
    a near-infrared band."""
    ndvi = scene.ndvi()
    sel = fp & scene.valid
    if ndvi is None or sel.sum() < 9:
        return float("nan"), 0.0
    share = float((ndvi[sel] >= VEGETATION_NDVI).mean())
    return share, VEGETATION_LLR * share


def estimate_azimuth(views: Sequence[tuple[Scene, np.ndarray]]) -> float | None:
    """The sun azimuth of one acquisition from footprints that stand on it: the direction in
    which the ground next to them is darkest against the opposite side, summed over footprints
    (each ``(scene window, footprint mask at its best position)``). None without a clear peak."""
    if not views:
        return None
    azimuths = np.arange(0, 360, AZIMUTH_STEP, dtype=float)
    total = np.zeros(azimuths.size)
    used = 0
    for scene, fp in views:
        img = scene.intensity()
        profile = np.array(
            [dark_share(img, scene.valid, fp, a, scene.grid.resolution) for a in azimuths]
        )
        if not np.isfinite(profile).all():
            continue
        total += profile
        used += 1
    if used == 0:
        return None
    mean = total / used
    # smooth over neighbouring directions (a shadow band is wide), circularly
    smooth = ndimage.uniform_filter1d(mean, 3, mode="wrap")
    k = int(np.argmax(smooth))
    if smooth[k] < (SHADOW_BARE + SHADOW_STANDING) / 2:
        return None
    return float(azimuths[k])  # dark_share(a) looks away from a sun at azimuth a


SHADOW_BESIDE = 0.15  # share of an area's surroundings in shadow on both dates: the old shadow
SHADOW_MATCH = 0.25  # relative brightness difference to the ground beside it, lit or shaded
SHADOW_RING_PX = 4  # width of the surroundings looked at
SHADOW_DARK = 0.5  # in shadow: darker than this share of the window's median brightness


def moved_shadow(geom: BaseGeometry, before: Scene, after: Scene) -> str | None:
    """Whether a change area (``geom``, in the scenes' CRS) is only a shadow that moved or
    lengthened with the sun: ``in`` when the area went dark (below :data:`SHADOW_RATIO` of its
    brightness), looking then like the shadow that lay beside it on both dates (a
    :data:`SHADOW_BESIDE` share of its surroundings dark on both) and before like the lit ground
    beside it (each within :data:`SHADOW_MATCH`); ``out`` for the reverse; None otherwise.
    A new dark roof is not the continuation of a shadow on both dates, and an area mostly
    covered by a building that came as the shadow left does not look like the lit ground around
    it (medians: a building on less than half of the area goes with the shadow)."""
    inside = before.grid.rasterize(geom) & before.valid & after.valid
    if inside.sum() < 8:
        return None
    ib, ia = before.intensity(), after.intensity()
    both = before.valid & after.valid
    ring = ndimage.binary_dilation(inside, iterations=SHADOW_RING_PX) & ~inside & both
    dark = SHADOW_DARK * float(np.median(np.concatenate([ib[both], ia[both]])))
    old = ring & (ib < dark) & (ia < dark)  # shadow on both dates beside the area
    lit_b, lit_a = ring & ~old & (ib >= dark), ring & ~old & (ia >= dark)
    if not old.any() or old.sum() < SHADOW_BESIDE * ring.sum():
        return None
    mb, ma = float(np.median(ib[inside])), float(np.median(ia[inside]))

    def like(value: float, ground: np.ndarray) -> bool:
        ref = float(np.median(ground))
        return ref > 0 and abs(value - ref) <= SHADOW_MATCH * ref

    if ma < SHADOW_RATIO * mb and lit_b.any():
        return "in" if like(ma, ia[old]) and like(mb, ib[lit_b]) else None
    if mb < SHADOW_RATIO * ma and lit_a.any():
        return "out" if like(mb, ib[old]) and like(ma, ia[lit_a]) else None
    return None


SHADOW_MOST = 0.5  # share of an area that went dark for the area to be a shadow that came there
SHADOW_TOUCH_PX = 3  # pixels of a shadow's dark region in a footprint's band away from the sun


def listed_shadow(
    geom: BaseGeometry, before: Scene, after: Scene, footprints: Sequence[BaseGeometry]
) -> str | None:
    """Whether a change area (``geom``, in the scenes' CRS) is the shadow of a listed structure
    (``footprints``, same CRS): ``in`` when most of it (:data:`SHADOW_MOST`) went dark on AFTER
    (below :data:`SHADOW_RATIO` of its brightness on BEFORE, the dates' gains matched on the
    window's medians) and the dark region that holds it on AFTER reaches the band just outside a
    footprint on the side away from AFTER's sun; ``out`` for a shadow that left (dark on
    BEFORE); None otherwise, and when that date's sun azimuth is unknown. Such an area is what
    the structure's own call weighs (a structure that came, went or changed height moves its
    shadow), not activity of its own. A new dark roof next to a footprint is no shadow of it
    unless it lies on the side away from the sun and joins the footprint's band there."""
    both = before.valid & after.valid
    inside = before.grid.rasterize(geom) & both
    if inside.sum() < 8 or not footprints:
        return None
    ib, ia = before.intensity(), after.intensity()
    masks = [m for m in (before.grid.rasterize(fp) for fp in footprints) if m.any()]
    for dark_date, dim, lit in ((after, ia, ib), (before, ib, ia)):
        sun = dark_date.sun
        if sun is None or not math.isfinite(sun.azimuth):
            continue
        gain = float(np.median(lit[both])) / max(float(np.median(dim[both])), 1e-6)
        dim = dim * gain
        came = (dim < SHADOW_RATIO * lit) & both
        if came[inside].mean() < SHADOW_MOST:
            continue
        # the shadow on that date, old and new: as dark against the area's lit ground as the
        # part that came is, joined to it
        level = SHADOW_RATIO * float(np.median(lit[inside & came]))
        labels, _ = ndimage.label(((dim < level) | came) & both)
        ids = np.unique(labels[inside & came])
        region = np.isin(labels, ids[ids > 0])
        away = away_from_sun(sun.azimuth)
        res = before.grid.resolution
        for mask in masks:
            if (side_band(mask, away, res) & region).sum() >= SHADOW_TOUCH_PX:
                return "in" if dark_date is after else "out"
    return None
