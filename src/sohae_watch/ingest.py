"""Ingest: find rasters, read their dates, band roles, nodata and scaling, and group them into
acquisitions (the tiles of one date). Reading their pixels onto a working grid is
:mod:`sohae_watch.reader`'s.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyproj
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import ColorInterp
from rasterio.errors import RasterioError
from rasterio.warp import transform_bounds

from sohae_watch.dates import DATE_TAGS, acquisition_date, stac_sidecar
from sohae_watch.errors import InputError
from sohae_watch.grid import Bounds, Grid
from sohae_watch.scene import SunPosition, ViewAngle

log = logging.getLogger(__name__)

RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".vrt", ".img")
ROLES = ("red", "green", "blue", "nir")
_COLOR_ROLES = {ColorInterp.red: "red", ColorInterp.green: "green", ColorInterp.blue: "blue"}
ResamplingName = Literal["nearest", "bilinear", "cubic"]


@dataclass(frozen=True)
class RasterSource:
    """One raster file's metadata: enough to plan reads without decoding pixels."""

    path: Path
    crs: CRS
    transform: Affine
    width: int
    height: int
    data_bands: tuple[int, ...]  # 1-based band indexes holding image data (alpha excluded)
    roles: tuple[str, ...]  # role of each data band
    nodata: float | None  # declared, or given with --nodata
    date: dt.date
    date_source: str
    sun: SunPosition | None
    dtype: str
    # GDAL's scale and offset of each data band (value = stored * scale + offset); () when
    # every band is stored as is
    scaling: tuple[tuple[float, float], ...] = ()
    view: ViewAngle | None = None  # the view it was taken from, where its metadata says

    @property
    def resolution(self) -> float:
        return float(
            math.sqrt(
                abs(self.transform.a * self.transform.e - self.transform.b * self.transform.d)
            )
        )

    @property
    def grid(self) -> Grid:
        return Grid(self.crs, self.transform, self.width, self.height)

    @property
    def ground_m(self) -> float:
        """Pixel size in metres: the resolution on a projected raster, the geodesic size at the
        raster's centre on one in geographic degrees."""
        if self.crs.is_projected:
            return self.resolution
        t = self.transform
        east, north = self.grid.metres_per_unit()  # a degree's ground length at the centre
        return math.sqrt(abs(t.a) * east * abs(t.e) * north)

    def bounds_in(self, crs: CRS) -> Bounds:
        b = self.grid.bounds
        if crs == self.crs:
            return b
        return tuple(transform_bounds(self.crs, crs, *b, densify_pts=21))


@dataclass(frozen=True)
class Acquisition:
    """All rasters of one date: the tiles of one acquisition."""

    date: dt.date
    sources: tuple[RasterSource, ...]
    roles: tuple[str, ...] = field(default=())

    @property
    def paths(self) -> tuple[str, ...]:
        return tuple(str(s.path) for s in self.sources)

    @property
    def sun(self) -> SunPosition | None:
        return next((s.sun for s in self.sources if s.sun is not None), None)

    @property
    def view(self) -> ViewAngle | None:
        return next((s.view for s in self.sources if s.view is not None), None)

    @property
    def resolution(self) -> float:
        return min(s.resolution for s in self.sources)

    def bounds_in(self, crs: CRS) -> Bounds:
        bs = [s.bounds_in(crs) for s in self.sources]
        return (
            min(b[0] for b in bs),
            min(b[1] for b in bs),
            max(b[2] for b in bs),
            max(b[3] for b in bs),
        )


def _band_roles(ds: rasterio.io.DatasetReader) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """Data bands (1-based) and their roles: a band's description (``red``, ``green``, ``blue``,
    ``nir``) first, then its colour interpretation, then the default of its place (bands 1-3
    red, green, blue, band 4 near infrared) where that role is still free. A band described
    as a role is data even where GDAL reads it as alpha: a 4-band 8-bit GeoTIFF written with
    GDAL's defaults is RGB + alpha, whatever its fourth band holds."""
    interps = ds.colorinterp
    described = [(d or "").strip().lower() for d in ds.descriptions]
    data = [
        i + 1 for i in range(ds.count) if interps[i] != ColorInterp.alpha or described[i] in ROLES
    ]
    roles: list[str] = []
    for i in data:
        said = described[i - 1] if described[i - 1] in ROLES else _COLOR_ROLES.get(interps[i - 1])
        roles.append(said if said and said not in roles else "")
    for n, r in enumerate(roles):
        if not r and n < len(ROLES) and ROLES[n] not in roles:
            roles[n] = ROLES[n]
    roles = [r or f"b{data[n]}" for n, r in enumerate(roles)]
    return tuple(data), tuple(roles)


def _scaling(
    ds: rasterio.io.DatasetReader, bands: tuple[int, ...]
) -> tuple[tuple[float, float], ...]:
    """Each data band's declared scale and offset (GDAL's, e.g. reflectance stored as
    DN + 1000 with offset -1000), or () when none is declared: NDVI and the brightness tests
    need the values, not the stored numbers."""
    pairs = tuple((float(ds.scales[i - 1] or 1.0), float(ds.offsets[i - 1] or 0.0)) for i in bands)
    return () if all(p == (1.0, 0.0) for p in pairs) else pairs


def _no_georeference(p: Path, ds: rasterio.io.DatasetReader) -> str:
    """The one-line error for a raster without a map grid, with the fix that suits what it has."""
    if ds.rpcs is not None:
        return (
            f"{p}: raster is not orthorectified (it has RPCs, no map grid); orthorectify it "
            "first, e.g. gdalwarp -rpc -to RPC_DEM=dem.tif -t_srs EPSG:326<zone> in.tif out.tif"
        )
    if ds.gcps[0]:
        return (
            f"{p}: raster is georeferenced by ground control points only; warp it onto a map "
            "grid first, e.g. gdalwarp -t_srs EPSG:326<zone> in.tif out.tif"
        )
    return (
        f"{p}: raster has no georeference (CRS and transform); "
        "georeference it first, e.g. with gdal_translate -a_srs -a_ullr"
    )


Sidecar = Callable[[], Mapping[str, Any]]  # a raster's STAC sidecar properties, read once


def _sun(tags: dict[str, str], path: Path, sidecar: Sidecar) -> SunPosition | None:
    """The sun from the tags ``SUN_AZIMUTH`` and ``SUN_ELEVATION``, or the STAC properties
    ``view:sun_azimuth`` and ``view:sun_elevation``; None when not given."""
    keys = ("SUN_AZIMUTH", "SUN_ELEVATION"), ("view:sun_azimuth", "view:sun_elevation")
    pair = _angles(tags, path, sidecar, *keys, "sun position")
    return SunPosition(*pair) if pair is not None else None


def _view(tags: dict[str, str], path: Path, sidecar: Sidecar) -> ViewAngle | None:
    """The view from the tags ``OFF_NADIR`` and ``VIEW_AZIMUTH`` (degrees), or the STAC
    properties ``view:off_nadir`` and ``view:azimuth``; None when not given."""
    keys = ("OFF_NADIR", "VIEW_AZIMUTH"), ("view:off_nadir", "view:azimuth")
    pair = _angles(tags, path, sidecar, *keys, "view angle")
    return ViewAngle(*pair) if pair is not None else None


def _angles(
    tags: dict[str, str],
    path: Path,
    sidecar: Sidecar,
    keys: tuple[str, str],
    stac: tuple[str, str],
    words: str,
) -> tuple[float, float] | None:
    """Two angles (degrees) from the raster's tags ``keys``, else from its STAC sidecar's
    properties ``stac``; None when either is missing, with a warning naming the file (and the
    ``words`` for what they are) when one is not a number."""
    try:
        if all(k in tags for k in keys):
            return float(tags[keys[0]]), float(tags[keys[1]])
        props = sidecar()
        if all(k in props for k in stac):
            return float(props[stac[0]]), float(props[stac[1]])
    except (TypeError, ValueError):
        log.warning("%s: %s tags are not numbers; ignoring them", path, words)
    return None


UNDATED = dt.date.min  # the date of a raster read with ``dated=False`` that gives none


def open_raster(
    path: str | Path,
    *,
    nodata: float | None = None,
    stac_date: dt.date | None = None,
    dated: bool = True,
) -> RasterSource:
    """Read one raster's metadata; InputError (naming the file and the fix) when it is unusable.

    ``stac_date``: the date of the STAC item listing this file (``watch --imagery catalog.json``);
    it ranks where a sidecar item would, after a date tag and before the file name.
    ``dated=False``: a raster without a (valid) date is read as :data:`UNDATED` (co-registration
    needs none).
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file or directory; check the path")
    if p.is_file() and p.stat().st_size == 0:
        raise InputError(f"{p}: file is empty; replace it with a complete raster")
    try:
        with rasterio.open(p) as ds:
            if ds.crs is None or ds.transform == Affine.identity():
                raise InputError(_no_georeference(p, ds))
            if not (ds.crs.is_projected or ds.crs.is_geographic):
                raise InputError(
                    f"{p}: its CRS ({pyproj.CRS.from_wkt(ds.crs.to_wkt()).name!r}) is a local or "
                    "engineering one that cannot be placed on the map; assign the real one, e.g. "
                    "with gdal_edit.py -a_srs EPSG:326<zone>"
                )
            if ds.transform.b != 0 or ds.transform.d != 0:
                log.debug("%s: rotated transform", p)
            if np.dtype(ds.dtypes[0]).kind == "c":
                raise InputError(
                    f"{p}: its pixels are complex ({ds.dtypes[0]}, e.g. radar); give an "
                    "amplitude or intensity image"
                )
            data_bands, roles = _band_roles(ds)
            if not data_bands:
                raise InputError(f"{p}: raster has no data band (only alpha); use the image file")
            tags = ds.tags()
            # the sidecar, read at most once for the sun and the view
            sidecar = functools.cache(lambda: stac_sidecar(p) or {})
            if stac_date is not None and not any(tags.get(k) for k in DATE_TAGS):
                date, source = stac_date, "stac"
            elif dated:
                date, source = acquisition_date(p, tags)
            else:
                try:
                    date, source = acquisition_date(p, tags)
                except InputError:
                    date, source = UNDATED, "none"
            declared = ds.nodata
            if declared is None and nodata is not None and not _representable(nodata, ds.dtypes[0]):
                log.warning(
                    "%s: --nodata %g cannot occur in its %s pixels; nothing there is read as "
                    "nodata",
                    p,
                    nodata,
                    ds.dtypes[0],
                )
            return RasterSource(
                path=p,
                crs=ds.crs,
                transform=ds.transform,
                width=ds.width,
                height=ds.height,
                data_bands=data_bands,
                roles=roles,
                nodata=declared if declared is not None else nodata,
                date=date,
                date_source=source,
                sun=_sun(tags, p, sidecar),
                dtype=ds.dtypes[0],
                scaling=_scaling(ds, data_bands),
                view=_view(tags, p, sidecar),
            )
    except RasterioError as exc:
        raise InputError(
            f"{p}: not a readable raster ({exc}); give a GeoTIFF or another GDAL raster"
        ) from exc


def find_rasters(folder: Path) -> list[Path]:
    """Raster files under ``folder`` (recursively), sorted; sidecars and hidden files skipped."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith(".") or not name.lower().endswith(RASTER_SUFFIXES):
                continue
            found.append(Path(root) / name)
    return found


def group_acquisitions(sources: Iterable[RasterSource]) -> list[Acquisition]:
    """Group rasters by date into acquisitions, oldest first."""
    by_date: dict[dt.date, list[RasterSource]] = {}
    for s in sources:
        by_date.setdefault(s.date, []).append(s)
    out = []
    for date in sorted(by_date):
        group = sorted(by_date[date], key=lambda s: (s.resolution, str(s.path)))
        roles = group[0].roles
        for s in group[1:]:
            if s.roles != roles:
                common = tuple(r for r in roles if r in s.roles)
                if not common:
                    raise InputError(
                        f"{s.path}: its bands {s.roles} share no role with {group[0].path} "
                        f"{roles} of the same date; name the bands (red, green, blue, nir)"
                    )
                roles = common
        out.append(Acquisition(date, tuple(group), roles))
    return out


def catalog(
    folder: str | Path, *, nodata: float | None = None, strict: bool = True, dated: bool = True
) -> tuple[list[Acquisition], list[tuple[Path, str]]]:
    """Catalog an imagery folder: acquisitions oldest first, and the files skipped with why.

    With ``strict`` the first unusable file raises InputError; otherwise it is skipped (``watch``).
    """
    root = Path(folder)
    if root.is_file():
        raise InputError(
            f"{root}: is a file; give --imagery the folder the imagery is in (or, for watch, a "
            "STAC catalog JSON)"
        )
    if not root.is_dir():
        raise InputError(f"{root}: imagery folder not found; give --imagery DIR")
    sources, skipped = [], []
    for path in find_rasters(root):
        try:
            sources.append(open_raster(path, nodata=nodata, dated=dated))
        except InputError as exc:
            if strict:
                raise
            skipped.append((path, str(exc)))
            log.warning("skipping %s", exc)
    return group_acquisitions(sources), skipped


def open_acquisition(
    spec: str | Path,
    *,
    nodata: float | None = None,
    imagery: str | Path | None = None,
    dated: bool = True,
) -> Acquisition:
    """An acquisition from a raster path, a folder of tiles, or a date looked up in ``imagery``.
    ``dated=False``: paths only, and their rasters may lack a date (:data:`UNDATED`)."""
    text = str(spec)
    p = Path(text)
    if dated and not p.exists() and len(text) == 10 and text[4] == "-" and text[7] == "-":
        try:
            date = dt.date.fromisoformat(text)
        except ValueError as exc:
            raise InputError(f"{text}: not a valid date; write it as YYYY-MM-DD") from exc
        if imagery is None:
            raise InputError(
                f"{text}: a date needs an imagery catalog; give --imagery DIR or a site with imagery:"
            )
        acqs, _ = catalog(imagery, nodata=nodata, strict=False)
        for a in acqs:
            if a.date == date:
                return a
        known = ", ".join(a.date.isoformat() for a in acqs) or "none"
        raise InputError(f"{imagery}: no acquisition dated {text} (dates found: {known})")
    if p.is_dir():
        acqs, _ = catalog(p, nodata=nodata, dated=dated)
        if not acqs:
            raise InputError(f"{p}: folder holds no raster; give a GeoTIFF or a folder of tiles")
        if len(acqs) > 1:
            dates = ", ".join(a.date.isoformat() for a in acqs)
            raise InputError(
                f"{p}: folder holds several dates ({dates}); give one date's tiles, "
                "or a date with --imagery"
            )
        return acqs[0]
    if not p.exists():
        what = "file, folder or YYYY-MM-DD date" if dated else "file or folder"
        raise InputError(f"{p}: no such {what}; check the path")
    src = open_raster(p, nodata=nodata, dated=dated)
    return Acquisition(src.date, (src,), src.roles)


MIXED_RESOLUTION = 1.5  # tiles of one date this many times apart in pixel size are two products


def mixed_tiles(acq: Acquisition) -> str | None:
    """A warning when the tiles of one acquisition are not one product: different pixel types
    (8-bit beside 16-bit) or pixel sizes :data:`MIXED_RESOLUTION` apart. They are compared as one
    image, fitted once: where the two kinds meet, change and its absence are less certain."""
    if len(acq.sources) < 2:
        return None
    kinds = {src.dtype for src in acq.sources}
    if len(kinds) > 1:
        named = "; ".join(
            f"{k}: {', '.join(s.path.name for s in acq.sources if s.dtype == k)}"
            for k in sorted(kinds)
        )
        return (
            f"{acq.date}: its tiles differ in pixel type ({named}); they are compared as one "
            "image, so their radiometry may not match; give one product's tiles"
        )
    sizes = [s.ground_m for s in acq.sources]
    if max(sizes) > MIXED_RESOLUTION * min(sizes):
        named = "; ".join(
            f"{s.path.name} {m:.3g} m" for s, m in zip(acq.sources, sizes, strict=True)
        )
        return (
            f"{acq.date}: its tiles differ in pixel size ({named}); they are compared as one "
            "image, and change near the coarser tiles is less certain"
        )
    return None


def _representable(value: float, dtype: str) -> bool:
    """Whether a pixel of ``dtype`` can hold ``value`` (NaN only in floating point)."""
    kind = np.dtype(dtype).kind
    if kind == "f":
        return True
    if kind in "iu":
        info = np.iinfo(np.dtype(dtype))
        return math.isfinite(value) and value == int(value) and info.min <= value <= info.max
    return False
