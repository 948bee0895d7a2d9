"""What a catalog holds over a site: per acquisition its files, CRS, resolution, how much of the AOI
it covers and how much of that is usable (valid, not saturated cloud)."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.warp import transform_geom
from scipy import ndimage
from shapely.geometry import mapping, shape

from sohae_watch.area import coverage, delivered_m
from sohae_watch.errors import InputError
from sohae_watch.grid import Grid
from sohae_watch.ingest import Acquisition, catalog
from sohae_watch.reader import GridReader
from sohae_watch.site import Site

log = logging.getLogger(__name__)

OVERVIEW_PIXELS = 250_000  # usable fraction is measured on a coarse grid of about this many pixels


def cloud_like(data: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Single-date cloud test: every band near the scene's brightest and locally flat.

    A conservative screen for ``watch``'s usability check; pairwise cloud detection in the change
    stage is the finer one.
    """
    if not valid.any():
        return np.zeros(valid.shape, bool)
    v = data[:, valid]
    top = np.percentile(v, 99.5, axis=1)
    low = np.percentile(v, 50, axis=1)
    bright = np.all(data >= (low + 0.85 * (top - low))[:, None, None], axis=0)
    filled = np.where(valid, np.nan_to_num(data).mean(axis=0), 0.0)
    local_sd = np.sqrt(
        np.maximum(ndimage.uniform_filter(filled**2, 5) - ndimage.uniform_filter(filled, 5) ** 2, 0)
    )
    flat = local_sd < 0.02 * max(float(filled.max()), 1e-6)
    cand = bright & flat & valid
    return ndimage.binary_opening(cand, iterations=2)


def usable_fraction(acq: Acquisition, grid: Grid, area_mask: np.ndarray) -> float:
    """Share of the area observable in ``acq`` (valid and not cloud), read on ``grid``. A blank
    product (:func:`~sohae_watch.reader.no_contrast`) is cloud-like everywhere: 0."""
    if not area_mask.any():
        return 0.0
    with GridReader(acq, grid, resampling="nearest") as reader:
        data, valid = reader.read_all()
    clouds = cloud_like(data, valid)
    return float((valid & ~clouds & area_mask).sum()) / float(area_mask.sum())


def coarse_grid(grid: Grid) -> Grid:
    factor = max(1.0, math.sqrt(grid.width * grid.height / OVERVIEW_PIXELS))
    return Grid.from_bounds(grid.crs, grid.bounds, grid.resolution * factor)


def describe(acq: Acquisition, site: Site | None) -> dict[str, Any]:
    row: dict[str, Any] = {
        "date": acq.date.isoformat(),
        "files": [str(s.path) for s in acq.sources],
        "date_source": sorted({s.date_source for s in acq.sources}),
        "crs": sorted({s.crs.to_string() for s in acq.sources}),
        "resolution_m": delivered_m(acq),
        "bands": list(acq.roles),
        "aoi_coverage": None,
        "usable_fraction": None,
    }
    row["crs"] = ", ".join(row["crs"])  # one string, tiles in several CRSs too
    if site is not None:
        grid = site.grid()
        aoi = shape(transform_geom("EPSG:4326", grid.crs, mapping(site.aoi)))
        row["aoi_coverage"] = float(coverage(acq, grid.crs).intersection(aoi).area / aoi.area)
        cg = coarse_grid(grid)
        row["usable_fraction"] = (
            usable_fraction(acq, cg, cg.rasterize(aoi, all_touched=True))
            if row["aoi_coverage"] > 0
            else 0.0
        )
    return row


def describe_catalog(
    folder: str | Path, site: Site | None, *, nodata: float | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Rows for ``ingest``: one per acquisition, and the files skipped with why."""
    acqs, skipped = catalog(folder, nodata=nodata, strict=False)
    rows = []
    for a in acqs:
        # a file whose header reads but whose pixels do not is listed as skipped, like one
        # whose header does not, instead of ending the listing
        try:
            rows.append(describe(a, site))
        except InputError as exc:
            log.warning("skipping %s", exc)
            skipped.extend((s.path, str(exc)) for s in a.sources)
    return rows, [{"file": str(p), "reason": r} for p, r in skipped]
