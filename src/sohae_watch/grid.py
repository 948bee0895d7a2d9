"""The working grid: a CRS, an affine transform and a shape; the currency between stages.

Rows and columns follow rasterio: ``transform @ (col, row)`` gives the map coordinates of a pixel's
upper-left corner; arrays are indexed ``[row, col]`` (``[band, row, col]`` for stacks).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from affine import Affine
from pyproj import Transformer
from rasterio.crs import CRS
from rasterio.features import rasterize
from rasterio.warp import transform_geom
from shapely.geometry import box, mapping, shape
from shapely.geometry.base import BaseGeometry

Bounds = tuple[float, float, float, float]  # left, bottom, right, top


def utm_crs_for(lon: float, lat: float) -> CRS:
    """The WGS 84 / UTM zone CRS containing ``(lon, lat)``."""
    zone = min(60, max(1, math.floor((lon + 180.0) / 6.0) + 1))
    return CRS.from_epsg((32600 if lat >= 0 else 32700) + zone)


def origin_on_lattice(t: Affine, lattice: Affine) -> tuple[int, int] | None:
    """(row, col) of the origin of ``t`` in pixels of ``lattice`` when the pixels of ``t`` are
    pixels of ``lattice`` (the same size and axes, the origin a whole number of them away),
    else None."""
    if not all(
        math.isclose(u, v, rel_tol=1e-9)
        for u, v in zip(
            (t.a, t.b, t.d, t.e), (lattice.a, lattice.b, lattice.d, lattice.e), strict=True
        )
    ):
        return None
    col, row = ~lattice * (t.c, t.f)
    if abs(col - round(col)) > 1e-6 or abs(row - round(row)) > 1e-6:
        return None
    return round(row), round(col)


@dataclass(frozen=True)
class Grid:
    """A north-up raster grid: ``crs``, ``transform`` (pixel corner to map), ``width``, ``height``."""

    crs: CRS
    transform: Affine
    width: int
    height: int

    @classmethod
    def from_bounds(cls, crs: CRS, bounds: Bounds, resolution: float) -> Grid:
        """The grid of square ``resolution`` pixels covering ``bounds``, snapped to multiples of it."""
        if not resolution > 0:
            raise ValueError(f"resolution must be positive, got {resolution}")
        left, bottom, right, top = bounds
        left = math.floor(left / resolution) * resolution
        top = math.ceil(top / resolution) * resolution
        width = max(1, math.ceil((right - left) / resolution - 1e-9))
        height = max(1, math.ceil((top - bottom) / resolution - 1e-9))
        return cls(crs, Affine(resolution, 0.0, left, 0.0, -resolution, top), width, height)

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)``, the shape of a single-band array on this grid."""
        return (self.height, self.width)

    @property
    def resolution(self) -> float:
        """Pixel size along x in CRS units (metres on a projected grid)."""
        return float(abs(self.transform.a))

    @property
    def bounds(self) -> Bounds:
        t = self.transform
        left, top = t.c, t.f
        right = left + t.a * self.width
        bottom = top + t.e * self.height
        return (left, min(bottom, top), right, max(bottom, top))

    @property
    def is_projected(self) -> bool:
        return bool(self.crs.is_projected)

    def metres_per_unit(self) -> tuple[float, float]:
        """Metres per CRS unit east and north at the grid's centre: (1, 1) on a metre CRS, the
        foot's length on a feet CRS, a degree's ground length on a geographic one."""
        if self.crs.is_geographic:
            from pyproj import Geod

            geod = Geod(ellps="WGS84")
            cx, cy = self.transform * (self.width / 2.0, self.height / 2.0)
            d = 1e-3
            east = geod.inv(cx - d / 2, cy, cx + d / 2, cy)[2] / d
            north = geod.inv(cx, cy - d / 2, cx, cy + d / 2)[2] / d
            return float(east), float(north)
        factor = float(self.crs.linear_units_factor[1])
        return factor, factor

    def offset_m(self, dx_px: float, dy_px: float) -> tuple[float, float]:
        """A move of ``(dx_px, dy_px)`` pixels (columns, rows) in metres east and north."""
        t = self.transform
        me, mn = self.metres_per_unit()
        return me * (t.a * dx_px + t.b * dy_px), mn * (t.d * dx_px + t.e * dy_px)

    def crop(self, row: int, col: int, height: int, width: int) -> Grid:
        """The sub-grid starting at pixel ``(row, col)``."""
        return Grid(self.crs, self.transform @ Affine.translation(col, row), width, height)

    def shifted(self, dx_px: float, dy_px: float) -> Grid:
        """This grid moved by ``(dx_px, dy_px)`` pixels (x east / columns, y south / rows)."""
        return Grid(
            self.crs, self.transform @ Affine.translation(dx_px, dy_px), self.width, self.height
        )

    def pixel_center(self, row: float, col: float) -> tuple[float, float]:
        """Map coordinates ``(x, y)`` of the centre of pixel ``(row, col)``."""
        x, y = self.transform @ (col + 0.5, row + 0.5)
        return float(x), float(y)

    def to_lonlat(self, x: float, y: float) -> tuple[float, float]:
        tr = Transformer.from_crs(self.crs, "EPSG:4326", always_xy=True)
        lon, lat = tr.transform(x, y)
        return float(lon), float(lat)

    def footprint(self) -> BaseGeometry:
        """The grid's extent as a polygon in its own CRS."""
        return box(*self.bounds)

    def geometry_from_lonlat(self, geom: Mapping[str, Any]) -> BaseGeometry:
        """A GeoJSON geometry in lon/lat, as a shapely geometry in this grid's CRS."""
        return shape(transform_geom("EPSG:4326", self.crs, dict(geom)))

    def geometry_to_lonlat(self, geom: BaseGeometry) -> dict[str, Any]:
        """A shapely geometry in this grid's CRS, as a GeoJSON mapping in lon/lat."""
        return dict(transform_geom(self.crs, "EPSG:4326", mapping(geom)))

    def rasterize(self, geom: BaseGeometry, all_touched: bool = False) -> np.ndarray:
        """Boolean mask of the pixels whose centre lies in ``geom`` (in this grid's CRS)."""
        if geom.is_empty:
            return np.zeros(self.shape, dtype=bool)
        out = rasterize(
            [(mapping(geom), 1)],
            out_shape=self.shape,
            transform=self.transform,
            fill=0,
            all_touched=all_touched,
            dtype="uint8",
        )
        return out.astype(bool)

    def to_dict(self) -> dict[str, Any]:
        """The contract's ``grid`` record."""
        epsg = self.crs.to_epsg()
        return {
            "crs": f"EPSG:{epsg}" if epsg else self.crs.to_wkt(),
            "resolution": self.resolution,
            "width": self.width,
            "height": self.height,
            "transform": list(self.transform)[:6],
        }
