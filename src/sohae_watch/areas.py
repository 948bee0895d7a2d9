"""Change areas: simplified polygons from a change mask, each with a size, a score and a type."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from rasterio.features import shapes
from scipy import ndimage as ndi
from shapely.geometry import MultiPolygon, Polygon, shape
from shapely.ops import unary_union

if TYPE_CHECKING:
    from sohae_watch.change import ChangeResult
    from sohae_watch.scene import Scene

__all__ = ["ChangeArea", "change_areas", "classify_change"]

VEG_NDVI = 0.3  # vegetated above this NDVI
STRUCTURE_Z = 1.0  # mean standardised texture change that counts as structure appearing/going
BRIGHTNESS_Z = 1.0  # mean standardised brightness change that counts as brighter/darker


@dataclass(frozen=True)
class ChangeArea:
    """One connected change area on the working grid (geometry in the grid's CRS)."""

    geometry: Polygon | MultiPolygon
    area_m2: float
    mean_magnitude: float
    change_type: str
    confidence: float


def classify_change(
    brightness: float, structure: float, ndvi_before: float | None, ndvi_after: float | None
) -> str:
    """A change type from an area's mean evidence.

    ``brightness``/``structure``: mean standardised brightness and texture change (after minus
    before); NDVI means where a near-infrared band exists.
    """
    if ndvi_before is not None and ndvi_after is not None:
        veg_b, veg_a = ndvi_before > VEG_NDVI, ndvi_after > VEG_NDVI
        if veg_b and veg_a:
            return "vegetation"
        if (veg_b != veg_a) and abs(structure) < STRUCTURE_Z:
            return "vegetation"
    if structure >= STRUCTURE_Z:
        return "new_structure"
    if structure <= -STRUCTURE_Z:
        return "removed_structure"
    if brightness >= BRIGHTNESS_Z:
        return "brighter"
    if brightness <= -BRIGHTNESS_Z:
        return "darker"
    return "other"


def change_areas(
    result: ChangeResult,
    before: Scene,
    after: Scene,
    *,
    min_area_m2: float | None = None,
) -> list[ChangeArea]:
    """Polygons of the connected changed pixels, simplified to about one pixel, largest first.

    Areas smaller than ``min_area_m2`` (default: the larger of 4 pixels and 100 m²) are dropped.
    """
    from sohae_watch.change import pixel_size_m

    grid = before.grid
    px_m = pixel_size_m(grid)
    floor = max(4 * px_m * px_m, 100.0) if min_area_m2 is None else min_area_m2
    changed = result.mask == 1
    labels, n = ndi.label(changed, structure=np.ones((3, 3), dtype=bool))
    if n == 0:
        return []
    idx = np.arange(1, n + 1)
    counts = ndi.sum(changed, labels, idx)
    mag = np.nan_to_num(result.magnitude, nan=0.0)
    mean_mag = ndi.mean(mag, labels, idx)

    def layer_mean(name: str) -> np.ndarray | None:
        arr = result.layers.get(name)
        if arr is None:
            return None
        return np.asarray(ndi.mean(np.nan_to_num(arr, nan=0.0), labels, idx))

    bright = layer_mean("brightness")
    struct = layer_mean("structure")
    nb = layer_mean("ndvi_before")
    na = layer_mean("ndvi_after")
    # geometric pixel area (grids in degrees as well)
    pix_area = px_m * px_m
    keep = np.flatnonzero(counts * pix_area >= floor) + 1
    if keep.size == 0:
        return []
    sub = np.where(np.isin(labels, keep), labels, 0).astype(np.int32)
    polys: dict[int, list[Polygon]] = {}
    for geom, value in shapes(sub, mask=sub > 0, transform=grid.transform, connectivity=8):
        polys.setdefault(int(value), []).append(shape(geom))
    tol = abs(grid.transform.a)
    out: list[ChangeArea] = []
    thr = result.threshold if math.isfinite(result.threshold) and result.threshold > 0 else 1.0
    for lab in keep:
        i = lab - 1
        geom = unary_union(polys.get(int(lab), [])).simplify(tol, preserve_topology=True)
        if geom.is_empty or not isinstance(geom, (Polygon, MultiPolygon)):
            continue
        area = float(counts[i] * pix_area)
        m = float(mean_mag[i])
        ctype = classify_change(
            float(bright[i]) if bright is not None else 0.0,
            float(struct[i]) if struct is not None else 0.0,
            float(nb[i]) if nb is not None else None,
            float(na[i]) if na is not None else None,
        )
        # confidence grows with how far the area's score is beyond the threshold and its size
        excess = max(0.0, m / thr - 1.0)
        size = min(1.0, area / (4 * floor))
        conf = float(np.clip(1.0 - math.exp(-3.0 * excess) * (1.0 - 0.5 * size), 0.0, 1.0))
        out.append(ChangeArea(geom, area, m, ctype, conf))
    out.sort(key=lambda a: -a.area_m2)
    return out
