"""The area compared and its working grid, from a site, an --aoi, or the acquisitions' overlap."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from rasterio.crs import CRS
from rasterio.warp import transform_geom
from shapely.geometry import box, mapping, shape
from shapely.geometry.base import BaseGeometry
from shapely.ops import unary_union

from sohae_watch.errors import InputError
from sohae_watch.grid import Grid, utm_crs_for
from sohae_watch.ingest import Acquisition, RasterSource
from sohae_watch.site import Site


def parse_aoi(spec: str) -> BaseGeometry:
    """``--aoi``: a GeoJSON file (geometry, Feature or FeatureCollection) or ``minlon,minlat,maxlon,maxlat``."""
    p = Path(spec)
    if p.is_file():
        try:
            doc: Any = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(
                f"{p}: --aoi file is not valid GeoJSON ({exc}); give a GeoJSON polygon"
            ) from exc
        geoms = []
        if isinstance(doc, dict) and doc.get("type") == "FeatureCollection":
            geoms = [f.get("geometry") for f in doc.get("features", []) if isinstance(f, dict)]
        elif isinstance(doc, dict) and doc.get("type") == "Feature":
            geoms = [doc.get("geometry")]
        else:
            geoms = [doc]
        try:
            geom = unary_union([shape(g) for g in geoms if g])
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise InputError(f"{p}: --aoi holds no valid GeoJSON geometry ({exc})") from exc
    else:
        parts = spec.split(",")
        try:
            if len(parts) != 4:
                raise ValueError
            minx, miny, maxx, maxy = (float(v) for v in parts)
        except ValueError as exc:
            if p.suffix.lower() in (".json", ".geojson") or "/" in spec:
                raise InputError(f"{spec}: --aoi file not found; check the path") from exc
            raise InputError(
                f"--aoi {spec!r}: not a GeoJSON file nor minlon,minlat,maxlon,maxlat; give one of those"
            ) from exc
        if not (minx < maxx and miny < maxy):
            raise InputError(f"--aoi {spec!r}: min must be below max (minlon,minlat,maxlon,maxlat)")
        geom = box(minx, miny, maxx, maxy)
    if geom.is_empty or geom.geom_type not in ("Polygon", "MultiPolygon") or geom.area == 0:
        raise InputError(f"--aoi {spec!r}: must be a polygon with an area")
    minx, miny, maxx, maxy = geom.bounds
    if not (minx >= -180 and maxx <= 180 and miny >= -90 and maxy <= 90):
        raise InputError(f"--aoi {spec!r}: coordinates must be lon/lat degrees (EPSG:4326)")
    return geom


def _footprint(src: RasterSource, crs: CRS) -> BaseGeometry:
    return box(*src.bounds_in(crs))


def coverage(acq: Acquisition, crs: CRS) -> BaseGeometry:
    """The union of an acquisition's tile extents in ``crs``."""
    return unary_union([_footprint(s, crs) for s in acq.sources])


def ground_resolution(src: RasterSource) -> float:
    """Pixel size in metres (geodesic, at the raster's centre) of a raster in geographic degrees,
    to 3 significant digits (a working grid's pixel size)."""
    if src.crs.is_projected:
        return src.resolution
    return float(f"{src.ground_m:.3g}")


def delivered_m(acq: Acquisition) -> float:
    """The finest pixel size (metres) among an acquisition's files."""
    return min(ground_resolution(s) for s in acq.sources)


def working_area(
    before: Acquisition,
    after: Acquisition,
    *,
    site: Site | None = None,
    aoi: BaseGeometry | None = None,
) -> tuple[Grid, BaseGeometry]:
    """The working grid and the area compared (a polygon in the grid's CRS).

    With a site, its grid over its AOI. Otherwise the AOI (or the overlap of the two
    acquisitions) on BEFORE's pixel lattice when BEFORE is projected, else on the UTM zone of the
    area's centre at BEFORE's ground resolution.
    """
    first = before.sources[0]
    if site is not None:
        grid = site.grid()
        area = shape(transform_geom("EPSG:4326", grid.crs, mapping(site.aoi)))
        label = f"site {site.id} AOI"
    else:
        if first.crs.is_projected:
            crs = first.crs
        else:
            wgs84 = CRS.from_epsg(4326)
            region = (
                aoi
                if aoi is not None
                else coverage(before, wgs84).intersection(coverage(after, wgs84))
            )
            if region.is_empty:
                raise InputError(
                    f"{first.path}: BEFORE and AFTER do not overlap; give two images of one place"
                )
            centre = region.centroid
            crs = utm_crs_for(centre.x, centre.y)
        if aoi is not None:
            area = shape(transform_geom("EPSG:4326", crs, mapping(aoi)))
            label = "--aoi"
        else:
            area = coverage(before, crs).intersection(coverage(after, crs))
            label = "the overlap"
            if area.is_empty or area.area <= 0:
                raise InputError(
                    f"{after.sources[0].path}: AFTER does not overlap BEFORE {first.path}; "
                    "give two images of one place"
                )
        t = first.transform
        if first.crs == crs and t.b == 0 and t.d == 0 and t.a > 0 and t.e < 0:
            grid = _aligned_grid(first, area)  # a north-up BEFORE: its own lattice
        else:
            grid = Grid.from_bounds(crs, area.bounds, ground_resolution(first))
    for acq, role in ((before, "BEFORE"), (after, "AFTER")):
        cov = coverage(acq, grid.crs)
        if area.is_empty or not cov.intersects(area) or cov.intersection(area).area <= 0:
            raise InputError(
                f"{acq.sources[0].path}: {role} ({acq.date}) does not overlap {label}; "
                "give imagery of the area compared"
            )
    return grid, area


def _aligned_grid(src: RasterSource, area: BaseGeometry) -> Grid:
    """The smallest window of ``src``'s own pixel lattice covering ``area`` (no resampling)."""
    inv = ~src.transform
    xs, ys = [], []
    minx, miny, maxx, maxy = area.bounds
    for x, y in ((minx, miny), (minx, maxy), (maxx, miny), (maxx, maxy)):
        c, r = inv @ (x, y)
        xs.append(c)
        ys.append(r)
    c0, c1 = math.floor(min(xs) + 1e-6), math.ceil(max(xs) - 1e-6)
    r0, r1 = math.floor(min(ys) + 1e-6), math.ceil(max(ys) - 1e-6)
    return src.grid.crop(r0, c0, max(1, r1 - r0), max(1, c1 - c0))


#: a working grid narrower than this (px) is co-registered on a neighbourhood this wide around
#: it where the acquisitions have data: on the benchmark pair's smooth texture, a 400 px area
#: alone gave a shift 0.37 px off, reported `ok`; 600 px and more, within 0.02 px
CONTEXT_PX = 1024


def context_grid(
    grid: Grid, before: Acquisition, after: Acquisition, side: int | None = None
) -> tuple[Grid, int, int] | None:
    """A grid on ``grid``'s lattice widened to ``side`` px (the same margin on either side)
    within both acquisitions' coverage, and the row and column of ``grid``'s origin on it; None
    when ``grid`` is that wide already, or when the data of the tiles the area lies on would not
    at least double the pixels measured (a tile cut to the area: nothing more to see). ``side``:
    :data:`CONTEXT_PX` unless given."""
    side = CONTEXT_PX if side is None else side
    h, w = grid.height, grid.width
    if min(h, w) >= side:
        return None
    # only the tiles the area lies on: another tile of a date may be georeferenced apart, and
    # measured together with this one it would make the area's registration two-motion
    here = grid.footprint()
    tiles = [
        unary_union(
            [t for t in (_footprint(s, grid.crs) for s in acq.sources) if t.intersects(here)]
        )
        for acq in (before, after)
    ]
    both = tiles[0].intersection(tiles[1])
    if both.is_empty:
        return None
    minx, miny, maxx, maxy = both.bounds
    inv = ~grid.transform
    corners = [inv * xy for xy in ((minx, miny), (minx, maxy), (maxx, miny), (maxx, maxy))]
    cols, rows = [c for c, _ in corners], [r for _, r in corners]
    pad_r, pad_c = max(0, math.ceil((side - h) / 2)), max(0, math.ceil((side - w) / 2))
    r0 = min(0, max(-pad_r, math.ceil(min(rows) - 1e-6)))
    r1 = max(h, min(h + pad_r, math.floor(max(rows) + 1e-6)))
    c0 = min(0, max(-pad_c, math.ceil(min(cols) - 1e-6)))
    c1 = max(w, min(w + pad_c, math.floor(max(cols) + 1e-6)))
    if (r1 - r0) * (c1 - c0) < 2 * h * w:
        return None
    return grid.crop(r0, c0, r1 - r0, c1 - c0), -r0, -c0
