"""Cloud and cloud-shadow masks found by comparing the two dates.

A cloud is a patch that, on one date only, is brighter than the other date's prediction in every
band, nearly colourless, and has lost the texture the other date shows there. Its shadow is a patch
darker in every band, also without texture, near a cloud of the same date. Every operation is a
local filter of bounded size, so the masks come out the same in windows (with a halo) as in one
piece.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

__all__ = ["CLOUD_Z", "cloud_and_shadow", "cloud_reach_px"]

CLOUD_Z = 4.0  # standardised residual every band must exceed (about 4 no-change sigmas)


def _saturation(vis: np.ndarray) -> np.ndarray:
    mx = vis.max(axis=0)
    mn = vis.min(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = (mx - mn) / np.maximum(np.abs(mx), 1e-6)
    return np.nan_to_num(s, nan=1.0).astype(np.float32)


def _extents(px_m: float) -> tuple[int, int, int]:
    """Pixel sizes of: the neighbourhood a cloud must dominate (~200 m), how far its haze rim and
    shadow may reach (~300 m), and the safety margin (~20 m); bounded so windows stay cheap."""
    size = max(5, min(64, round(200.0 / px_m)))
    near = max(3, min(64, round(300.0 / px_m)))
    grow = max(1, min(16, round(20.0 / px_m)))
    return size, near, grow


def cloud_reach_px(px_m: float) -> int:
    """How far (pixels) the masks of a pixel depend on its neighbours: the window halo needed."""
    size, near, grow = _extents(px_m)
    return size + 2 * near + 2 * grow + 2


def cloud_and_shadow(
    z: np.ndarray,
    vis_before: np.ndarray,
    vis_after: np.ndarray,
    tex_before: np.ndarray,
    tex_after: np.ndarray,
    px_m: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks (rows, cols) of cloud or cloud shadow in BEFORE and in AFTER.

    ``z``: standardised residuals AFTER minus predicted AFTER, shape (bands, rows, cols), NaN where
    not observable; ``vis_*``: visible bands of each date (3, rows, cols); ``tex_*``: local texture
    (smoothed gradient magnitude, scale-free units) of each date; ``px_m``: pixel size in metres.
    """
    zf = np.nan_to_num(z, nan=0.0)
    zmin = zf.min(axis=0)
    zmax = zf.max(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        tex_ratio = np.nan_to_num(tex_after / np.maximum(tex_before, 1e-6), nan=1.0)
    flat_after = tex_ratio < 0.6
    flat_before = tex_ratio > 1.0 / 0.6
    hazier_a = zmin > CLOUD_Z  # brighter in every band: cloud or its haze in AFTER
    hazier_b = zmax < -CLOUD_Z
    cloud_a = hazier_a & (_saturation(vis_after) < 0.25) & flat_after
    cloud_b = hazier_b & (_saturation(vis_before) < 0.25) & flat_before
    shadow_a = (zmax < -CLOUD_Z) & flat_after
    shadow_b = (zmin > CLOUD_Z) & flat_before
    size, near, grow = _extents(px_m)
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
