"""Whether two dates show the same ground: the local correlation of their structure.

The change stage takes change to be the exception: its no-change law is the bulk of the pixels.
Where most of the ground differs between the dates (an area built over, snow over one date's
ground, two images that are not aligned), that bulk is change, and the mask goes blind: it can
report no change over an area that changed everywhere. The colour-to-colour relation cannot tell,
as some line always fits the bulk. Structure can: ground that did not change keeps its pattern of
light and dark whatever the sun, gain or haze did to its brightness, so its two dates correlate
(normalised cross-correlation is free of gain and offset).

:func:`structure_agreement` is the share of the textured neighbourhoods (structure above the
sensor's noise on either date) whose two dates correlate at least :data:`AGREE_NCC`. Vegetation
may be left out (``exclude``): grass and crops change their pattern with the season, which is no
change here.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi

from sohae_watch.filters import smooth

__all__ = [
    "AGREE_NCC",
    "MOSTLY_DIFFERENT",
    "TEXTURE_SNR",
    "mostly_different",
    "noise_sigma",
    "structure_agreement",
]

AGREE_NCC = 0.5  # a neighbourhood whose dates correlate at least this much shows the same ground
TEXTURE_SNR = 3.0  # a neighbourhood is textured when it spreads this many noise sigmas
# Fewer agreeing textured neighbourhoods than this and change is no longer the exception. Half
# is where it stops being one; the cut waits for a third, as ground that did not change can
# lose its pattern to the season where NDVI does not call it vegetation (dormant grass
# greening): the 58 generated pairs without snow of seeds 60-64 and 100-119 lie at 0.53 or
# more (the cut was chosen after seeing them), all 182 of the nine seed groups at 0.43 or
# more; the real cases at 0.84 or more (Sentinel-2) and at most 0.24 (LEVIR's crops, built
# over or not aligned).
MOSTLY_DIFFERENT = 1.0 / 3.0
NEIGHBOURHOOD_PX = 2.0  # least Gaussian sigma of a neighbourhood, pixels (enough for a correlation)
MIN_TEXTURED = 100  # fewer textured pixels than this: no verdict

# the difference of two Laplacians: zero on any locally linear image, so its response is noise
_NOISE_KERNEL = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float32)


def noise_sigma(img: np.ndarray, valid: np.ndarray) -> float:
    """Standard deviation of an image's white noise (Immerkaer 1996): the mean absolute response
    to :data:`_NOISE_KERNEL` over the pixels whose 3 x 3 neighbourhood is ``valid``, times
    sqrt(pi / 2) / 6 (the kernel's gain on Gaussian noise)."""
    resp = np.abs(ndi.correlate(np.asarray(img, dtype=np.float32), _NOISE_KERNEL, mode="nearest"))
    if valid.all():
        inner = resp[1:-1, 1:-1]
    else:
        inner = resp[ndi.binary_erosion(valid, np.ones((3, 3), bool), border_value=0)]
    if not inner.size:
        return 0.0
    return float(math.sqrt(math.pi / 2.0) * inner.mean(dtype=np.float64) / 6.0)


def structure_agreement(
    before: np.ndarray,
    after: np.ndarray,
    valid: np.ndarray,
    sigma_px: float,
    exclude: np.ndarray | None = None,
) -> float:
    """Share of the textured neighbourhoods whose two dates correlate at least
    :data:`AGREE_NCC`; NaN when fewer than :data:`MIN_TEXTURED` pixels are textured (no verdict).

    ``before``/``after``: each date's intensity on one grid (finite everywhere); ``valid``: the
    pixels observed on both, the only ones the neighbourhoods' moments are taken over;
    ``sigma_px``: the neighbourhood's Gaussian sigma in pixels (at least
    :data:`NEIGHBOURHOOD_PX`); ``exclude``: pixels not to judge (vegetation)."""
    if not valid.any():
        return math.nan
    s = max(float(sigma_px), NEIGHBOURHOOD_PX)
    # centred on their medians, so the float32 moments below keep their digits
    b = np.asarray(before, dtype=np.float32) - np.float32(np.median(before[valid]))
    a = np.asarray(after, dtype=np.float32) - np.float32(np.median(after[valid]))
    if valid.all():
        n = np.float32(1.0)
    else:  # moments over the valid pixels only (normalised convolution)
        w = valid.astype(np.float32)
        b *= w
        a *= w
        n = np.maximum(smooth(w, s), np.float32(1e-6))
    mb, ma = smooth(b, s) / n, smooth(a, s) / n
    vb = np.maximum(smooth(b * b, s) / n - mb * mb, 0)
    va = np.maximum(smooth(a * a, s) / n - ma * ma, 0)
    cov = smooth(b * a, s) / n - mb * ma
    floor_b = (TEXTURE_SNR * noise_sigma(b, valid)) ** 2
    floor_a = (TEXTURE_SNR * noise_sigma(a, valid)) ** 2
    textured = valid & ((vb > floor_b) | (va > floor_a))
    if exclude is not None:
        textured &= ~exclude
    if int(textured.sum()) < MIN_TEXTURED:
        return math.nan
    den = np.sqrt(vb[textured] * va[textured])
    # a neighbourhood flat on one date (no correlation defined) does not agree with its textured
    # other date
    ncc = np.divide(cov[textured], den, out=np.zeros_like(den), where=den > 0)
    return float(np.mean(ncc >= AGREE_NCC))


def mostly_different(agreement: float) -> bool:
    """Whether so little of the textured ground agrees that change is no exception (no verdict,
    NaN, is not)."""
    return math.isfinite(agreement) and agreement < MOSTLY_DIFFERENT
