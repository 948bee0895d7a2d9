"""Site files: YAML data (never code) loaded once at the edge into a validated, immutable Site."""

from __future__ import annotations

import difflib
import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rasterio
import yaml
from rasterio.crs import CRS
from rasterio.errors import CRSError
from shapely.errors import GEOSException
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry
from shapely.validation import explain_validity

from sohae_watch.errors import InputError
from sohae_watch.grid import Grid, utm_crs_for

log = logging.getLogger(__name__)

PACKAGE_SITES = Path(__file__).parent / "sites"
DEFAULT_THRESHOLDS = {"min_observed_fraction": 0.5, "min_usable_fraction": 0.3}
SITE_FIELDS = ("id", "name", "grid", "aoi", "imagery", "state", "thresholds", "structures")
GRID_FIELDS = ("crs", "resolution")
STRUCTURE_FIELDS = ("id", "name", "geometry", "baseline")


@dataclass(frozen=True)
class Structure:
    """A named structure: its footprint (lon/lat) and optional state before the first image."""

    id: str
    name: str
    geometry: BaseGeometry  # lon/lat
    baseline: str | None = None  # "present" | "absent" | None


@dataclass(frozen=True)
class Site:
    id: str
    name: str
    aoi: BaseGeometry  # lon/lat
    crs: CRS
    resolution: float
    structures: tuple[Structure, ...] = ()
    imagery: Path | None = None
    state: Path | None = None
    thresholds: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_THRESHOLDS))
    path: Path | None = None

    def grid(self) -> Grid:
        """The working grid covering the AOI."""
        from rasterio.warp import transform_geom

        aoi = shape(transform_geom("EPSG:4326", self.crs, self.aoi.__geo_interface__))
        return Grid.from_bounds(self.crs, aoi.bounds, self.resolution)


def site_imagery(site: Site) -> Path:
    """The site file's ``imagery:`` folder or catalog; InputError naming the field when it is
    missing or does not exist (the command line's --imagery is not the fix to suggest then)."""
    where = site.path if site.path is not None else site.id
    if site.imagery is None:
        raise InputError(f"{where}: no imagery: in the site file; add one or give --imagery DIR")
    if not site.imagery.exists():
        raise InputError(
            f"{where}: its imagery: {site.imagery} does not exist; fix the field or give "
            "--imagery DIR"
        )
    return site.imagery


def resolve_site_path(spec: str | Path) -> Path:
    """A site given as a path, or a name: ``configs/<name>.yaml`` here, else a packaged site."""
    p = Path(spec)
    if p.suffix.lower() in (".yaml", ".yml") or p.exists():
        if p.is_dir():
            raise InputError(
                f"{p}: is a folder; give a site YAML file (watch --sites takes a folder of them)"
            )
        if not p.is_file():
            raise InputError(f"{p}: site file not found; give a path to a site YAML or a site name")
        return p
    for candidate in (Path("configs") / f"{spec}.yaml", PACKAGE_SITES / f"{spec}.yaml"):
        if candidate.is_file():
            return candidate
    known = sorted(
        {q.stem for d in (Path("configs"), PACKAGE_SITES) if d.is_dir() for q in d.glob("*.yaml")}
    )
    raise InputError(
        f"unknown site {spec!r}: no configs/{spec}.yaml here and no packaged site of that name "
        f"(known: {', '.join(known) or 'none'}); give a path to a site YAML"
    )


def _geometry(path: Path, where: str, value: Any) -> BaseGeometry:
    if not isinstance(value, Mapping) or "type" not in value or "coordinates" not in value:
        raise InputError(
            f"{path}: field '{where}' must be a GeoJSON geometry with type and coordinates"
        )
    try:
        geom = shape(value)
    except (GEOSException, ValueError, TypeError, IndexError, AttributeError) as exc:
        raise InputError(
            f"{path}: field '{where}' is not a valid GeoJSON geometry ({exc})"
        ) from exc
    if geom.is_empty or geom.geom_type not in ("Polygon", "MultiPolygon"):
        raise InputError(f"{path}: field '{where}' must be a non-empty Polygon or MultiPolygon")
    minx, miny, maxx, maxy = geom.bounds
    if not (-180 <= minx <= maxx <= 180 and -90 <= miny <= maxy <= 90):
        raise InputError(f"{path}: field '{where}' must be in lon/lat degrees (EPSG:4326)")
    if not geom.is_valid:
        raise InputError(
            f"{path}: field '{where}' is not a valid polygon ({explain_validity(geom)}); fix its "
            "coordinates so that its outline does not cross itself"
        )
    return geom


def _unknown_fields(path: Path, where: str, doc: Mapping[Any, Any], known: Iterable[str]) -> None:
    """Warn about fields the site file format does not have (a typo drops a setting silently)."""
    known = tuple(known)
    for key in doc:
        if key not in known:
            near = difflib.get_close_matches(str(key), known, n=1)
            hint = f"did you mean '{where}{near[0]}'?" if near else f"known: {', '.join(known)}"
            log.warning(
                "%s: field '%s%s' is not a site-file field and is ignored (%s)",
                path,
                where,
                key,
                hint,
            )


def _relpath(base: Path, value: Any, where: str, path: Path) -> Path:
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{path}: field '{where}' must be a path string")
    q = Path(value).expanduser()
    # a path relative to the site file, resolved: reports name the files without "configs/.."
    return q if q.is_absolute() else (base / q).resolve()


def load_site(spec: str | Path) -> Site:
    """Load and validate a site file; InputError naming the field on any problem."""
    path = resolve_site_path(spec)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise InputError(
            f"{path}: not valid YAML ({str(exc).splitlines()[0]}); fix the site file"
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the site file ({exc})") from exc
    if not isinstance(doc, Mapping):
        raise InputError(
            f"{path}: a site file must be a YAML mapping with at least id and aoi (see "
            "configs/sohae.yaml)"
        )
    _unknown_fields(path, "", doc, SITE_FIELDS)
    what = {
        "id": "a short name for the site, e.g. 'id: sohae'",
        "aoi": "the area of interest as a GeoJSON polygon in lon/lat (see configs/sohae.yaml)",
    }
    for key, fix in what.items():
        if key not in doc:
            raise InputError(f"{path}: missing field '{key}'; add {fix}")
    sid = doc["id"]
    if not isinstance(sid, str) or not sid.strip():
        raise InputError(f"{path}: field 'id' must be a non-empty string")
    name = doc.get("name", sid)
    if not isinstance(name, str):
        raise InputError(f"{path}: field 'name' must be a string")
    aoi = _geometry(path, "aoi", doc["aoi"])
    grid = doc.get("grid") or {}
    if not isinstance(grid, Mapping):
        raise InputError(f"{path}: field 'grid' must be a mapping with crs and resolution")
    _unknown_fields(path, "grid.", grid, GRID_FIELDS)
    res = grid.get("resolution", 0.5)
    if (
        isinstance(res, bool)
        or not isinstance(res, (int, float))
        or not math.isfinite(res)
        or res <= 0
    ):
        raise InputError(f"{path}: field 'grid.resolution' must be a positive number of metres")
    if "crs" in grid:
        try:
            with rasterio.Env():  # GDAL's own complaint goes to logging, not the terminal
                crs = CRS.from_user_input(grid["crs"])
        except (CRSError, TypeError, ValueError) as exc:
            raise InputError(
                f"{path}: field 'grid.crs' is not a known CRS ({grid['crs']!r})"
            ) from exc
        if not crs.is_projected:
            raise InputError(
                f"{path}: field 'grid.crs' must be a projected CRS in metres (e.g. EPSG:32651)"
            )
    else:
        c = aoi.centroid
        crs = utm_crs_for(c.x, c.y)
    thresholds = dict(DEFAULT_THRESHOLDS)
    raw_t = doc.get("thresholds") or {}
    if not isinstance(raw_t, Mapping):
        raise InputError(f"{path}: field 'thresholds' must be a mapping")
    for k, v in raw_t.items():
        if k not in DEFAULT_THRESHOLDS:
            raise InputError(
                f"{path}: field 'thresholds.{k}' is unknown (known: {', '.join(DEFAULT_THRESHOLDS)})"
            )
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
            raise InputError(f"{path}: field 'thresholds.{k}' must be a number between 0 and 1")
        thresholds[k] = float(v)
    raw_s = doc.get("structures") or []
    if not isinstance(raw_s, list):
        raise InputError(f"{path}: field 'structures' must be a list")
    structures, seen = [], set()
    for i, s in enumerate(raw_s):
        where = f"structures[{i}]"
        if not isinstance(s, Mapping):
            raise InputError(f"{path}: field '{where}' must be a mapping with id, name, geometry")
        if not isinstance(s.get("id"), str) or not s["id"].strip():
            raise InputError(f"{path}: field '{where}.id' must be a non-empty string")
        if s["id"] in seen:
            raise InputError(f"{path}: field '{where}.id' repeats {s['id']!r}; ids must be unique")
        seen.add(s["id"])
        _unknown_fields(path, f"{where}.", s, STRUCTURE_FIELDS)
        if "geometry" not in s:
            raise InputError(
                f"{path}: missing field '{where}.geometry'; add the structure's footprint as a "
                "GeoJSON polygon in lon/lat"
            )
        baseline = s.get("baseline")
        if baseline not in (None, "present", "absent"):
            raise InputError(f"{path}: field '{where}.baseline' must be present or absent")
        sname = s.get("name", s["id"])
        if not isinstance(sname, str):
            raise InputError(f"{path}: field '{where}.name' must be a string")
        geom = _geometry(path, f"{where}.geometry", s["geometry"])
        if not geom.intersects(aoi):
            raise InputError(
                f"{path}: field '{where}.geometry' ({s['id']}) lies outside the aoi; move the "
                "footprint or widen the aoi"
            )
        if not geom.within(aoi):
            log.warning(
                "%s: structure %r lies partly outside the aoi; only the part inside is looked at",
                path,
                s["id"],
            )
        structures.append(Structure(s["id"], sname, geom, baseline))
    base = path.resolve().parent  # a symlinked (packaged) site resolves paths where it lives
    imagery = _relpath(base, doc["imagery"], "imagery", path) if doc.get("imagery") else None
    state = _relpath(base, doc["state"], "state", path) if doc.get("state") else None
    return Site(
        id=sid,
        name=name,
        aoi=aoi,
        crs=crs,
        resolution=float(res),
        structures=tuple(structures),
        imagery=imagery,
        state=state,
        thresholds=thresholds,
        path=path,
    )
