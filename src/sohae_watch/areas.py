"""Change areas: simplified polygons from a change mask, each with a size, a score and a type."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from affine import Affine
from rasterio.features import shapes
from scipy import ndimage as ndi
from shapely.geometry import MultiPolygon, Polygon, shape
from shapely.ops import unary_union

from sohae_watch.filters import set_box

if TYPE_CHECKING:
    from sohae_watch.change import ChangeResult
    from sohae_watch.grid import Grid
    from sohae_watch.scene import Scene

__all__ = ["ChangeArea", "change_areas", "change_areas_on", "classify_change"]

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
    return change_areas_on(result, before.grid, min_area_m2=min_area_m2)


def change_areas_on(
    result: ChangeResult, grid: Grid, *, min_area_m2: float | None = None
) -> list[ChangeArea]:
    """:func:`change_areas` of a result on ``grid`` (the grid of its arrays)."""
    from sohae_watch.change import pixel_size_m

    px_m = pixel_size_m(grid)
    floor = max(4 * px_m * px_m, 100.0) if min_area_m2 is None else min_area_m2
    changed = result.mask == 1
    box = set_box(changed)
    if box is None:
        return []
    labels = ndi.label(changed[box], structure=np.ones((3, 3), dtype=bool))[0]
    r0, c0 = box[0].start, box[1].start
    # geometric pixel area (grids in degrees as well)
    pix_area = px_m * px_m
    tol = abs(grid.transform.a)
    out: list[ChangeArea] = []
    thr = result.threshold if math.isfinite(result.threshold) and result.threshold > 0 else 1.0
    # each area on its own bounding box: the cost follows the change, not the window
    for lab, at in enumerate(ndi.find_objects(labels), start=1):
        if at is None:
            continue
        part = labels[at] == lab
        sl = (slice(at[0].start + r0, at[0].stop + r0), slice(at[1].start + c0, at[1].stop + c0))
        count = int(part.sum())
        area = float(count * pix_area)
        if area < floor:
            continue

        def mean_of(
            arr: np.ndarray | None, sl: tuple[slice, ...] = sl, part: np.ndarray = part
        ) -> float | None:
            if arr is None:
                return None
            return float(np.nan_to_num(arr[sl][part], nan=0.0).mean())

        transform = grid.transform * Affine.translation(sl[1].start, sl[0].start)
        polys = [
            shape(g)
            for g, _ in shapes(
                part.astype(np.uint8), mask=part, transform=transform, connectivity=8
            )
        ]
        geom = unary_union(polys).simplify(tol, preserve_topology=True)
        if geom.is_empty or not isinstance(geom, (Polygon, MultiPolygon)):
            continue
        m = mean_of(result.magnitude) or 0.0
        bright = mean_of(result.layers.get("brightness"))
        struct = mean_of(result.layers.get("structure"))
        ctype = classify_change(
            bright if bright is not None else 0.0,
            struct if struct is not None else 0.0,
            mean_of(result.layers.get("ndvi_before")),
            mean_of(result.layers.get("ndvi_after")),
        )
        # confidence grows with how far the area's score is beyond the threshold and its size
        excess = max(0.0, m / thr - 1.0)
        size = min(1.0, area / (4 * floor))
        conf = float(np.clip(1.0 - math.exp(-3.0 * excess) * (1.0 - 0.5 * size), 0.0, 1.0))
        out.append(ChangeArea(geom, area, m, ctype, conf))
    out.sort(key=lambda a: -a.area_m2)
    return out
