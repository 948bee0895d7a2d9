"""The radiometric laws of ground that a cast shadow came over or left between the dates.

Between two acquisitions the sun moves: the shadows of buildings, towers and trees fall elsewhere.
Ground a shadow came over keeps only the diffuse skylight: each band of it is a share of its lit
value (more of the blue than of the red or the near infrared), the same share for every surface
of the scene, up to the noise. Read with the scene's normalisation, which maps lit ground onto lit
ground, such a pixel is far darker than predicted in every band and is flagged as change: on the
generated scenes, shadows that moved with the sun, of structures or of the trees of a wood, held
a fifth to a half of the false alarms of the masks the report trusts (`benchmarks/README.md`).

A pixel whose shadow came or went is no change of the ground, and it follows a law of its own:
above the shaded date's dark level (its haze and the sensor's offset), each band keeps a share
of what the scene's normalisation predicts for it lit. :func:`fit_shadow_laws` estimates the
shares from the sampled pixels that are dark on one date and far darker (or brighter) than
predicted in every band, which in a scene with moved shadows are mostly those shadows. The
change stage reads each pixel dark on the shaded date with the law where that explains it
better (:func:`sohae_watch.change_steps.spectral_evidence`). A law is kept only when it is a
shadow's: in every band a share no larger than :data:`~sohae_watch.footprint.SHADOW_RATIO` and
no smaller than :data:`LEAST_SKYLIGHT`, more of the blue than of the red. A new roof that is
bright on either date, or darker in a colour of its own, stays change.

What this cannot tell apart: a darkening in no colour of its own, about as deep as a shadow's
(a dark grey roof built on pale paving), is read as a shadow that came when such pixels, not
moved shadows, are most of the candidates (no shadow moved between the dates).

Pale ground, bare on both dates (paving, gravel, roofs), changes only with the light and the
sensor, while the grass and crops that hold most of a rural scene brown or green with the season:
across seasons the scene's normalisation (and the bare stratum's, where brown grass is bare too)
follows the grass and misreads the paving. :func:`fit_pale_law` fits the ground pale on both
dates on its own and keeps that law only where it is one (:data:`MAX_SCATTER`) and the scene's
fits misread that ground by far (:data:`MISREAD`); the change stage reads all ground bare on
both dates with it where it explains a pixel better.

Ground green on both dates is not one population either. The vegetated stratum's fit follows
what holds most of it (grass, as a rule), while evergreen woods, crops and orchards green, brown
or ripen on seasons of their own, and a wood's crowns and the shadows between them change with
the sun: across seasons whole woods and fields were flagged (on the generated scenes a quarter
of the woods' pixels, in whole patches). :func:`fit_green_laws` fits what the strata's fits
(else the scene's) misread among that ground on its own, then what that law still misreads,
up to :data:`GREEN_LAWS` laws, each kept only where it is one (:data:`MAX_SCATTER`); the change
stage reads ground green on both dates with the law that explains a pixel best. A new roof is
not green on both dates unless painted so, and a green roof on grass stays change: its colour
follows none of the ground's laws.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sohae_watch.cloud import CLOUD_Z
from sohae_watch.footprint import SHADOW_RATIO
from sohae_watch.radiometry import (
    MIN_STRATUM_PIXELS,
    BandFit,
    chi_squares,
    fit_normalisation,
    ndvi_classes,
    standardised_residuals,
)
from sohae_watch.shadow import SHADOW_DARK

__all__ = [
    "LEAST_SKYLIGHT",
    "MAX_SCATTER",
    "MISREAD",
    "PaleLaw",
    "ShadowLaws",
    "brightness",
    "fit_green_laws",
    "fit_pale_law",
    "fit_shadow_laws",
]

# the least share of a band's lit response a cast shadow keeps: the diffuse skylight is about a
# tenth of the irradiance in the red and near infrared under the clearest sky, more in the blue
LEAST_SKYLIGHT = 0.05


@dataclass(frozen=True)
class ShadowLaws:
    """Per-band fits (BEFORE -> AFTER) of ground a shadow came over on AFTER (``came``) and of
    ground a shadow left (``left``: in shadow on BEFORE, lit on AFTER), either None when not
    found; and the :func:`brightness` at or below which a pixel may be in shadow on BEFORE
    (``dark_before``) and on AFTER (``dark_after``)."""

    came: tuple[BandFit, ...] | None
    left: tuple[BandFit, ...] | None
    dark_before: float
    dark_after: float


DARK_PERCENTILE = 0.1  # a date's dark level per band: its darkest pixels (dark-object subtraction)


def brightness(x: np.ndarray) -> np.ndarray:
    """The mean over the bands (the first axis): with a near-infrared band, green vegetation,
    dark in the visible, is bright, and a shadow on anything is dark."""
    return np.asarray(x.mean(axis=0))


def _dark(x: np.ndarray) -> tuple[np.ndarray, float]:
    """A date's dark level per band, and the :func:`brightness` at or below which its pixels may
    be in shadow: :data:`~sohae_watch.shadow.SHADOW_DARK` of the way from its dark level to its
    median."""
    level = np.percentile(x, DARK_PERCENTILE, axis=1)
    floor = float(level.mean())
    return level, floor + SHADOW_DARK * (float(np.median(brightness(x))) - floor)


def _resistant_line(x: np.ndarray, y: np.ndarray) -> tuple[float, float] | None:
    """Tukey's resistant line ``y = o + g x``: the slope between the medians of the lower and
    the upper third of ``x``; None where they do not differ."""
    third = x.size // 3
    if third == 0:
        return None
    order = np.argsort(x)
    lo, hi = order[:third], order[-third:]
    run = float(np.median(x[hi]) - np.median(x[lo]))
    if run <= 0:
        return None
    g = float(np.median(y[hi]) - np.median(y[lo])) / run
    return g, float(np.median(y - g * x))


def _share(
    lit: np.ndarray, shaded: np.ndarray, dark: np.ndarray, members: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | None:
    """Per band, the share of its lit value a shadow keeps and the dark level it keeps it above
    (``shaded = d + s (lit - d)``), from ``members``; None with too few members.

    The members' resistant line gives both when its slope is a shadow's share and its dark
    level lies below their shaded values: when they span several grounds (shadows on grass and
    on paving). Else (shadows on one kind of ground, whose line is no more than their scatter)
    the share is the median over the members above the date's own dark level ``dark``
    (dark-object subtraction: the darkest pixels of the scene)."""
    if int(members.sum()) < MIN_STRATUM_PIXELS:
        return None
    x, y = lit[:, members], shaded[:, members]
    share = np.empty(x.shape[0])
    level = np.asarray(dark, dtype=np.float64).copy()
    for k in range(x.shape[0]):
        line = _resistant_line(x[k], y[k])
        if line is not None and LEAST_SKYLIGHT <= line[0] <= SHADOW_RATIO:
            d = line[1] / (1.0 - line[0])
            if d <= float(np.median(y[k])):
                share[k], level[k] = line[0], d
                continue
        with np.errstate(divide="ignore", invalid="ignore"):
            share[k] = np.nanmedian((y[k] - dark[k]) / (x[k] - dark[k]))
    return share, level


def _shadow_like(found: tuple[np.ndarray, np.ndarray] | None, bands: tuple[str, ...]) -> bool:
    """Whether :func:`_share`'s shares are a shadow's: between :data:`LEAST_SKYLIGHT` and
    :data:`~sohae_watch.footprint.SHADOW_RATIO` in every band, bluer than red."""
    if found is None:
        return False
    share = found[0]
    if not np.all((share >= LEAST_SKYLIGHT) & (share <= SHADOW_RATIO)):
        return False
    # the diffuse share of the light falls with the wavelength (the sky is blue): a shadow keeps
    # more of the blue than of the red, where snow, or bare ground a paler cover left, does not
    if "blue" in bands and "red" in bands:
        return bool(share[bands.index("blue")] >= share[bands.index("red")])
    return True


def fit_shadow_laws(
    before: np.ndarray,
    after: np.ndarray,
    scene: tuple[BandFit, ...],
    bands: tuple[str, ...],
) -> ShadowLaws | None:
    """The :class:`ShadowLaws` of sampled pixels (``before``/``after``: (bands, n), observable on
    both dates), or None when neither law is found. ``scene``: the scene-wide normalisation.

    The candidates are the pixels dark on the shaded date (:func:`_dark`) and
    :data:`~sohae_watch.cloud.CLOUD_Z` of the scene's sigmas darker (brighter) than it predicts
    in every band, as the cloud stage takes a shadow; at least
    :data:`~sohae_watch.radiometry.MIN_STRATUM_PIXELS` of them are needed. Above a dark level
    ``D``, a shadow keeps a share ``s`` of each band's lit value (:func:`_share`); the law is
    the scene's line with that share applied (AFTER's value ``D + s (predicted - D)`` for a
    shadow that came, the reverse for one that left) and the scene's scatter."""
    z = standardised_residuals(before, after, list(scene))
    gain = np.array([f.gain for f in scene])[:, None]
    offset = np.array([f.offset for f in scene])[:, None]
    d_b, dark_b = _dark(before)
    d_a, dark_a = _dark(after)
    came = left = None
    members = np.all(z < -CLOUD_Z, axis=0) & (brightness(after) <= dark_a)
    found = _share(gain * before + offset, after, d_a, members)
    if found is not None and _shadow_like(found, bands):
        came = tuple(
            BandFit(float(k * f.gain), float(k * f.offset + (1 - k) * d), f.sigma)
            for k, d, f in zip(*found, scene, strict=True)
        )
    members = np.all(z > CLOUD_Z, axis=0) & (brightness(before) <= dark_b)
    found = _share((after - offset) / gain, before, d_b, members)
    if found is not None and _shadow_like(found, bands):
        # BEFORE's lit value is d + (b - d) / s: AFTER predicted from it; BEFORE's noise,
        # divided by the share, dominates the scatter
        left = tuple(
            BandFit(float(f.gain / k), float(f.offset + f.gain * d * (1 - 1 / k)), f.sigma / k)
            for k, d, f in zip(*found, scene, strict=True)
        )
    if came is None and left is None:
        return None
    return ShadowLaws(came, left, dark_b, dark_a)


PALE_QUANTILE = 0.8  # pale on a date: among the brightest fifth of the ground bare on both dates
MIN_PALE_SHARE = 0.02  # share of the sample the ground pale on both dates needs (and 1000 pixels)
# the pale law is used only where the scene's fits misread the pale ground: the median over it
# of the sum of squared standardised residuals under them at least this many times the law's.
# Measured: 0.001-0.1 of it on the generated cross-season pairs the law mends, 0.7-2 where it
# mends nothing; 0.36-1.02 on the five OSCD cities (benchmarks/README.md, "Pale ground")
MISREAD = 4.0
# ... and only where it is a law: in every band its scatter at most this many times that of the
# fits it replaces. Measured: 0.55-4.6 times on the generated pairs the law mends; 48-73 times
# where the bright ground on both dates is a mixture (a new roof on a white pad among them), and
# such a law read new buildings on pale ground as unchanged (benchmarks/README.md)
MAX_SCATTER = 10.0


@dataclass(frozen=True)
class PaleLaw:
    """Per-band fits (BEFORE -> AFTER) of the ground pale on both dates, the :func:`brightness`
    at or above which a pixel is pale on BEFORE (``pale_before``) and on AFTER (``pale_after``),
    and the red and near-infrared band indices that tell bare ground (None without them)."""

    fits: tuple[BandFit, ...]
    pale_before: float
    pale_after: float
    red: int | None
    nir: int | None

    def pale(self, before: np.ndarray, after: np.ndarray) -> np.ndarray:
        """Pixels pale on both dates (and bare on both where red and near infrared tell it): the
        law's population; ``before``/``after``: (bands, ...) stacks."""
        out = (brightness(before) >= self.pale_before) & (brightness(after) >= self.pale_after)
        if self.red is not None and self.nir is not None:
            out &= ndvi_classes(before, after, self.red, self.nir) == 2
        return np.asarray(out)


def fit_pale_law(
    before: np.ndarray,
    after: np.ndarray,
    fits: tuple[BandFit, ...],
    bands: tuple[str, ...],
    units: float | None = None,
) -> PaleLaw | None:
    """The :class:`PaleLaw` of sampled pixels (``before``/``after``: (bands, n), observable on
    both dates), or None. ``fits``: the fits the pale ground is read with otherwise (the bare
    stratum's, or the scene's); ``units``: the scene's units factor (as for
    :func:`~sohae_watch.radiometry.fit_normalisation`).

    Pale on a date: at or above the :data:`PALE_QUANTILE` of the brightness of the ground bare
    on both dates (all the ground without red and near-infrared bands). The pale ground needs
    :data:`MIN_PALE_SHARE` of the sample; its law is fitted as the scene's is, and kept only when
    it scatters at most :data:`MAX_SCATTER` times as much as ``fits`` in every band and ``fits``
    misread that ground :data:`MISREAD` times as badly as the law does."""
    red = bands.index("red") if "red" in bands and "nir" in bands else None
    nir = bands.index("nir") if red is not None else None
    bare = (
        ndvi_classes(before, after, red, nir) == 2
        if red is not None and nir is not None
        else np.ones(before.shape[1], dtype=bool)
    )
    if int(bare.sum()) < MIN_STRATUM_PIXELS:
        return None
    lb, la = brightness(before), brightness(after)
    cuts = PaleLaw(
        (),
        float(np.quantile(lb[bare], PALE_QUANTILE)),
        float(np.quantile(la[bare], PALE_QUANTILE)),
        red,
        nir,
    )
    members = cuts.pale(before, after)
    if int(members.sum()) < max(MIN_PALE_SHARE * before.shape[1], MIN_STRATUM_PIXELS):
        return None
    x, y = before[:, members], after[:, members]
    own = tuple(fit_normalisation(x, y, units=units))
    if any(o.sigma > MAX_SCATTER * f.sigma for o, f in zip(own, fits, strict=True)):
        return None
    misread, law = (float(np.median(c)) for c in chi_squares(x, y, (fits, own)))
    if misread < MISREAD * law:
        return None
    return PaleLaw(own, cuts.pale_before, cuts.pale_after, red, nir)


# misread: a pixel of ground green on both dates whose squared standardised residuals under the
# best of the fits it is read with average at least this over the bands (3 sigma; the ground
# those fits follow averages about 1)
GREEN_MISFIT = 9.0
GREEN_LAWS = 3  # at most this many laws of green ground, each fitted on what the others misread


def fit_green_laws(
    before: np.ndarray,
    after: np.ndarray,
    reads: tuple[tuple[BandFit, ...], ...],
    red: int,
    nir: int,
    units: float | None = None,
) -> tuple[tuple[BandFit, ...], ...] | None:
    """Per-band fits (BEFORE -> AFTER) of the ground green on both dates that the fits it is
    otherwise read with misread, or None. ``before``/``after``: (bands, n) sampled pixels
    observable on both dates; ``reads``: those fits (the strata's vegetated and bare ones, else
    the scene's), the first of them the one the laws' scatter is measured against; ``red``,
    ``nir``: band indices; ``units``: the scene's units factor (as for
    :func:`~sohae_watch.radiometry.fit_normalisation`).

    The pixels misread (:data:`GREEN_MISFIT`) get a law of their own when they are at least
    :data:`MIN_PALE_SHARE` of the sample; then those that law still misreads get the next, up to
    :data:`GREEN_LAWS`. A law is kept only when it scatters at most :data:`MAX_SCATTER` times as
    much as the first fit of ``reads`` in every band (a mixture of grounds gives none). Its
    pixels are chosen for being misread, so how badly is no test of it (the pale law's
    :data:`MISREAD`); nor is how many of them it reads, since the robust fit takes the largest
    ground among them and leaves the others to the next law."""
    n = before.shape[0]
    green = ndvi_classes(before, after, red, nir) == 1
    x, y = before[:, green], after[:, green]
    best = chi_squares(x, y, reads).min(axis=0)
    need = max(MIN_PALE_SHARE * before.shape[1], MIN_STRATUM_PIXELS)
    laws: list[tuple[BandFit, ...]] = []
    while len(laws) < GREEN_LAWS:
        misread = best > GREEN_MISFIT * n
        if int(misread.sum()) < need:
            break
        xm, ym = x[:, misread], y[:, misread]
        own = tuple(fit_normalisation(xm, ym, units=units))
        if any(o.sigma > MAX_SCATTER * f.sigma for o, f in zip(own, reads[0], strict=True)):
            break
        laws.append(own)
        best[misread] = np.minimum(best[misread], chi_squares(xm, ym, (own,))[0])
    return tuple(laws) or None
