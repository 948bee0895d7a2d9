"""Change areas: simplified polygons from a change mask, each with a size, a score and a type."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np
from affine import Affine
from rasterio.features import shapes
from scipy import ndimage as ndi
from shapely import STRtree, make_valid
from shapely.geometry import MultiPolygon, Polygon, shape
from shapely.geometry.base import BaseGeometry
from shapely.ops import unary_union

from sohae_watch.filters import set_box
from sohae_watch.radiometry import VEGETATED_NDVI

if TYPE_CHECKING:
    from sohae_watch.change import ChangeResult
    from sohae_watch.grid import Grid
    from sohae_watch.scene import Scene

__all__ = ["ChangeArea", "change_areas", "change_areas_on", "classify_change", "join_pieces"]

# an area is green all over on a date when at least this share of its pixels is green on it. A
# roof that came on a lawn takes about a third of its change area: on AFTER the grass keeps the
# area's mean NDVI above VEGETATED_NDVI, but not this share of its pixels green
ALL_GREEN = 0.9
# simplification of an outline: tolerances tried, in pixels, largest first; the first that keeps
# the outline's area within AREA_KEPT of its pixels' wins (at 10 m a 1 px tolerance made a
# 6-pixel area a triangle of a third of its area; half a pixel only drops collinear corners)
SIMPLIFY_PX = (1.0, 0.75, 0.5)
AREA_KEPT = 0.05
STRUCTURE_Z = 1.0  # mean standardised texture change that counts as structure appearing/going
BRIGHTNESS_Z = 1.0  # mean standardised brightness change that counts as brighter/darker


EVIDENCE = ("brightness", "structure", "ndvi_before", "ndvi_after")  # typing layers, in order
# what an area sums: the typing layers, then per date the pixels green (NDVI above VEGETATED_NDVI)
SUMS = len(EVIDENCE) + 2


@dataclass(frozen=True)
class Piece:
    """What a part of a change area cut by a window's border adds to the whole area: its pixel
    count and the sums of its scores and typing evidence (None: layer absent), and the rules
    that finish the area (see :func:`join_pieces`)."""

    pixels: int
    magnitude: float
    evidence: tuple[float | None, ...]  # sums of the EVIDENCE layers, then the green pixels
    pixel_area: float  # m²
    floor: float  # smallest area kept, m²
    tolerance: float  # simplification, CRS units
    threshold: float


@dataclass(frozen=True)
class ChangeArea:
    """One connected change area on the working grid (geometry in the grid's CRS).

    ``piece``: set while the area is only the part of one inside a window (its geometry then
    unsimplified, and no floor applied); :func:`join_pieces` makes whole areas of them."""

    geometry: Polygon | MultiPolygon
    area_m2: float
    mean_magnitude: float
    change_type: str
    confidence: float
    piece: Piece | None = field(default=None, compare=False, repr=False)


def classify_change(
    brightness: float,
    structure: float,
    ndvi_before: float | None,
    ndvi_after: float | None,
    green: tuple[float, float] | None = None,
) -> str:
    """A change type from an area's mean evidence.

    ``brightness``/``structure``: mean standardised brightness and texture change (after minus
    before); NDVI means where a near-infrared band exists, and ``green`` the shares of the
    area's pixels green on each date. An area green on both dates in the mean is vegetation
    unless its texture changed as a structure's does, and it was green all over (``ALL_GREEN``)
    on the date without the structure but not on the date with it: a roof that came or went
    on grass.
    """
    if ndvi_before is not None and ndvi_after is not None:
        veg_b, veg_a = ndvi_before > VEGETATED_NDVI, ndvi_after > VEGETATED_NDVI
        built = green is not None and (
            (structure >= STRUCTURE_Z and green[1] < ALL_GREEN <= green[0])
            or (structure <= -STRUCTURE_Z and green[0] < ALL_GREEN <= green[1])
        )
        if veg_b and veg_a and not built:
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
    window: bool = False,
) -> list[ChangeArea]:
    """Polygons of the connected changed pixels, simplified by up to one pixel where that keeps
    their area within ``AREA_KEPT``, largest first.

    Areas smaller than ``min_area_m2`` (default: the larger of 4 pixels and 100 m²) are dropped.
    ``window``: the result is a window of a larger one, whose areas may go on beyond it: those
    touching its border are returned as pieces, for :func:`join_pieces`.
    """
    return change_areas_on(result, before.grid, min_area_m2=min_area_m2, window=window)


def change_areas_on(
    result: ChangeResult,
    grid: Grid,
    *,
    min_area_m2: float | None = None,
    window: bool = False,
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
    h, w = changed.shape
    # geometric pixel area (grids in degrees as well)
    pix_area = px_m * px_m
    tol = abs(grid.transform.a)
    out: list[ChangeArea] = []
    thr = result.threshold if math.isfinite(result.threshold) and result.threshold > 0 else 1.0
    layers = [result.layers.get(name) for name in EVIDENCE]
    # each date's green pixels, from its NDVI (areas green on both dates in the mean hold roofs)
    layers += [None if v is None else v > np.float32(VEGETATED_NDVI) for v in layers[2:4]]
    # each area on its own bounding box: the cost follows the change, not the window
    for lab, at in enumerate(ndi.find_objects(labels), start=1):
        if at is None:
            continue
        part = labels[at] == lab
        sl = (slice(at[0].start + r0, at[0].stop + r0), slice(at[1].start + c0, at[1].stop + c0))
        count = int(part.sum())
        edge = window and (
            sl[0].start == 0 or sl[1].start == 0 or sl[0].stop == h or sl[1].stop == w
        )
        if count * pix_area < floor and not edge:
            continue

        def total(arr: np.ndarray, sl: tuple[slice, ...] = sl, p: np.ndarray = part) -> float:
            return float(np.nan_to_num(arr[sl][p], nan=0.0).sum(dtype=np.float64))

        piece = Piece(
            count,
            total(result.magnitude),
            tuple(None if x is None else total(x) for x in layers),
            pix_area,
            floor,
            tol,
            thr,
        )
        transform = grid.transform * Affine.translation(sl[1].start, sl[0].start)
        polys = [
            shape(g)
            for g, _ in shapes(
                part.astype(np.uint8), mask=part, transform=transform, connectivity=8
            )
        ]
        if edge:  # finished once joined with the rest of its area
            out.append(ChangeArea(unary_union(polys), count * pix_area, 0.0, "", 0.0, piece))
            continue
        area = _finished(unary_union(polys), piece)
        if area is not None:
            out.append(area)
    out.sort(key=_largest_first)
    return out


def _largest_first(area: ChangeArea) -> tuple[float, float, float]:
    """Order of areas: largest first; areas of one size from the top, then from the left, by
    their simplified outlines (a fixed order, not the order windows found them in; outlines
    simplified from pieces can differ by a pixel, which may swap two such areas a pixel apart)."""
    left, _, _, top = area.geometry.bounds
    return -area.area_m2, -top, left


def _finished(geometry: Polygon | MultiPolygon, piece: Piece) -> ChangeArea | None:
    """The area of all the pixels ``piece`` counts (``geometry``, unsimplified): None when
    under the floor."""
    area = piece.pixels * piece.pixel_area
    if area < piece.floor:
        return None
    geom = simplified(geometry, piece.tolerance)
    if geom is None:
        return None
    m = piece.magnitude / piece.pixels
    bright, struct, ndvi_b, ndvi_a, green_b, green_a = (
        None if x is None else x / piece.pixels for x in piece.evidence
    )
    ctype = classify_change(
        bright if bright is not None else 0.0,
        struct if struct is not None else 0.0,
        ndvi_b,
        ndvi_a,
        None if green_b is None or green_a is None else (green_b, green_a),
    )
    # confidence grows with how far the area's score is beyond the threshold and its size
    excess = max(0.0, m / piece.threshold - 1.0)
    size = min(1.0, area / (4 * piece.floor))
    conf = float(np.clip(1.0 - math.exp(-3.0 * excess) * (1.0 - 0.5 * size), 0.0, 1.0))
    return ChangeArea(geom, area, m, ctype, conf)


def polygonal(geom: BaseGeometry) -> Polygon | MultiPolygon | None:
    """``geom`` as valid polygons (None: nothing with an area): an outline traced around pixels
    that touch only at a corner pinches its ring at that vertex, which OGC readers (QGIS,
    GEOS operations) refuse; it becomes two polygons meeting at the point."""
    if not geom.is_valid:
        geom = make_valid(geom)
    if isinstance(geom, (Polygon, MultiPolygon)):
        return None if geom.is_empty else geom
    parts = [g for g in getattr(geom, "geoms", ()) if isinstance(g, (Polygon, MultiPolygon))]
    whole = unary_union(parts) if parts else None
    return whole if isinstance(whole, (Polygon, MultiPolygon)) and not whole.is_empty else None


def simplified(geometry: BaseGeometry, pixel: float) -> Polygon | MultiPolygon | None:
    """A valid outline of ``geometry`` (traced around pixels of side ``pixel``) with fewer
    vertices: simplified by the largest of ``SIMPLIFY_PX`` that keeps its area within
    ``AREA_KEPT``, else as traced."""
    whole = polygonal(geometry)
    if whole is None:
        return None
    for k in SIMPLIFY_PX:
        geom = polygonal(whole.simplify(k * pixel, preserve_topology=True))
        if geom is not None and abs(geom.area / whole.area - 1.0) <= AREA_KEPT:
            return geom
    return whole


def join_pieces(areas: Sequence[ChangeArea]) -> list[ChangeArea]:
    """Whole areas from the windows' areas, largest first: pieces that touch (their pixels
    8-connected across a window border) are joined, and finished as the area of all their
    pixels would be in one piece (floor, simplification, means, type and confidence)."""
    done = [a for a in areas if a.piece is None]
    pieces = [a for a in areas if a.piece is not None]
    # pixels 8-connected across a border share at least a corner; the margin absorbs the
    # rounding of corners computed from two windows' transforms
    geoms = [a.geometry for a in pieces]
    margin = 1e-6 * min((a.piece.tolerance for a in pieces if a.piece), default=0.0)
    parent = list(range(len(pieces)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    tree = STRtree(geoms)
    for i, g in enumerate(geoms):
        for j in tree.query(g, predicate="dwithin", distance=margin):
            ri, rj = find(i), find(int(j))
            if ri != rj:
                parent[ri] = rj
    groups: dict[int, list[ChangeArea]] = {}
    for i, piece in enumerate(pieces):
        groups.setdefault(find(i), []).append(piece)
    for members in groups.values():
        first = members[0].piece
        assert first is not None
        parts = [m.piece for m in members if m.piece is not None]
        whole = replace(
            first,
            pixels=sum(p.pixels for p in parts),
            magnitude=sum(p.magnitude for p in parts),
            evidence=tuple(
                None if first.evidence[k] is None else sum(p.evidence[k] or 0.0 for p in parts)
                for k in range(SUMS)
            ),
        )
        area = _finished(unary_union([m.geometry for m in members]), whole)
        if area is not None:
            done.append(area)
    return sorted(done, key=_largest_first)
