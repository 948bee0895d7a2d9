"""The `diff` pipeline: ingest -> co-register -> change -> classify -> report."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine
from shapely.geometry.base import BaseGeometry

from sohae_watch.area import working_area
from sohae_watch.change import ChangeArea, ChangeResult, change_areas, detect_changes
from sohae_watch.classify import (
    PRESENT,
    StructureCall,
    classify_structures,
    presence,
    structure_sentence,
)
from sohae_watch.coregister import CoregResult, coregister_arrays
from sohae_watch.errors import InputError
from sohae_watch.grid import Grid
from sohae_watch.ingest import Acquisition, catalog, open_acquisition, read_scene
from sohae_watch.scene import Scene
from sohae_watch.site import Site

log = logging.getLogger(__name__)

NEW_ACTIVITY_MIN_AREA_M2 = 50.0
NEW_ACTIVITY_MIN_CONFIDENCE = 0.5


@dataclass
class DiffResult:
    """Everything one comparison produced; the report module writes it out."""

    site: Site | None
    grid: Grid
    area: BaseGeometry
    before: Scene
    after: Scene
    coreg: CoregResult
    change: ChangeResult
    areas: list[ChangeArea]
    structures: list[StructureCall]
    new_activity: list[ChangeArea]
    timings: dict[str, float] = field(default_factory=dict)


def _common_roles(before: Acquisition, after: Acquisition) -> tuple[str, ...]:
    roles = tuple(r for r in before.roles if r in after.roles)
    if not roles:
        raise InputError(
            f"{after.sources[0].path}: its bands {after.roles} share no role with BEFORE's "
            f"{before.roles}; name the bands (red, green, blue, nir)"
        )
    return roles


def _restrict(scene: Scene, area_mask: np.ndarray, role: str, acq: Acquisition) -> Scene:
    scene.valid &= area_mask
    scene.data[:, ~scene.valid] = np.nan
    if not scene.valid.any():
        raise InputError(
            f"{acq.sources[0].path}: {role} ({acq.date}) has no valid pixel over the area compared "
            "(all nodata or NaN there); give imagery that covers it"
        )
    return scene


def compute_diff(
    before_acq: Acquisition,
    after_acq: Acquisition,
    *,
    site: Site | None = None,
    aoi: BaseGeometry | None = None,
    stood_before: Mapping[str, bool] | None = None,
) -> DiffResult:
    """Compare two acquisitions over the site's AOI (or ``aoi``, or their overlap)."""
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    grid, area = working_area(before_acq, after_acq, site=site, aoi=aoi)
    area_mask = grid.rasterize(area, all_touched=True)
    roles = _common_roles(before_acq, after_acq)
    log.info(
        "working grid %s at %.3g m, %d x %d px", grid.crs, grid.resolution, grid.width, grid.height
    )
    before = _restrict(read_scene(before_acq, grid, roles=roles), area_mask, "BEFORE", before_acq)
    after = _restrict(read_scene(after_acq, grid, roles=roles), area_mask, "AFTER", after_acq)
    timings["ingest"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    coreg = coregister_arrays(before.intensity(), after.intensity(), before.valid, after.valid)
    if coreg.status == "failed":
        log.warning(
            "co-registration failed: comparing the images as delivered; calls get lower confidence"
        )
    elif coreg.model is not None and not coreg.model.almost_equals(
        Affine.identity(), precision=1e-4
    ):
        after = _restrict(
            read_scene(after_acq, grid, roles=roles, model=coreg.model),
            area_mask,
            "AFTER",
            after_acq,
        )
    timings["coregister"] = time.perf_counter() - t0
    log.info(
        "co-registration %s: shift %s, %s px, reliability %.2f",
        coreg.status,
        coreg.shift_x_px,
        coreg.shift_y_px,
        coreg.reliability,
    )

    t0 = time.perf_counter()
    change = detect_changes(before, after)
    areas = change_areas(change, before, after)
    timings["change"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    structures: list[StructureCall] = []
    new_activity: list[ChangeArea] = []
    if site is not None:
        reliability = coreg.reliability if coreg.status != "failed" else 0.0
        structures = classify_structures(
            site.structures,
            before,
            after,
            change.mask,
            min_observed_fraction=site.thresholds["min_observed_fraction"],
            coreg_reliability=reliability,
            stood_before=stood_before,
        )
        footprints = [
            grid.geometry_from_lonlat(s.geometry.__geo_interface__) for s in site.structures
        ]
        new_activity = [
            a
            for a in areas
            if a.area_m2 >= NEW_ACTIVITY_MIN_AREA_M2
            and a.confidence >= NEW_ACTIVITY_MIN_CONFIDENCE
            and a.change_type in ("new_structure", "removed_structure")
            and not any(a.geometry.intersects(f.buffer(3.0)) for f in footprints)
        ]
    timings["classify"] = time.perf_counter() - t0
    return DiffResult(
        site, grid, area, before, after, coreg, change, areas, structures, new_activity, timings
    )


def stood_in_catalog(
    site: Site, earlier: list[Acquisition], grid: Grid, structure_ids: set[str]
) -> set[str]:
    """Which of ``structure_ids`` stood (a clear outline) in any of the ``earlier`` acquisitions,
    each read only on a small window around the footprint."""
    found: set[str] = set()
    for s in site.structures:
        if s.id not in structure_ids:
            continue
        geom = grid.geometry_from_lonlat(s.geometry.__geo_interface__)
        window = Grid.from_bounds(grid.crs, geom.buffer(30.0).bounds, grid.resolution)
        for acq in reversed(earlier):  # the most recent first
            try:
                scene = read_scene(acq, window)
            except InputError as exc:
                log.warning("earlier acquisition %s skipped: %s", acq.date, exc)
                continue
            if presence(scene, s) >= PRESENT:
                found.add(s.id)
                break
    return found


def _mark_rebuilt(
    result: DiffResult,
    site: Site,
    catalog_dir: str | Path | None,
    before: Acquisition,
    nodata: float | None,
) -> None:
    """``built`` becomes ``rebuilt`` where an earlier acquisition in the catalog shows the structure."""
    built = {c.id for c in result.structures if c.event == "built"}
    if not built or catalog_dir is None:
        return
    acqs, _ = catalog(catalog_dir, nodata=nodata, strict=False)
    earlier = [a for a in acqs if a.date < before.date]
    stood = stood_in_catalog(site, earlier, result.grid, built) if earlier else set()
    for i, c in enumerate(result.structures):
        if c.id in stood:
            result.structures[i] = replace(
                c,
                event="rebuilt",
                summary=structure_sentence(
                    c.name, c.status, "rebuilt", c.observed_fraction, result.before, result.after
                ),
            )


def run_diff(
    before: str,
    after: str,
    out_dir: Path,
    *,
    site: Site | None = None,
    imagery: str | Path | None = None,
    aoi: BaseGeometry | None = None,
    nodata: float | None = None,
    stood_before: Mapping[str, bool] | None = None,
) -> tuple[DiffResult, dict[str, Any]]:
    """Resolve BEFORE / AFTER, compare them, write the contract's outputs into ``out_dir``."""
    from sohae_watch.report import write_outputs

    catalog_dir = imagery if imagery is not None else (site.imagery if site is not None else None)
    b = open_acquisition(before, nodata=nodata, imagery=catalog_dir)
    a = open_acquisition(after, nodata=nodata, imagery=catalog_dir)
    if b.date > a.date:
        raise InputError(f"{before}: BEFORE ({b.date}) is later than AFTER ({a.date}); swap them")
    result = compute_diff(b, a, site=site, aoi=aoi, stood_before=stood_before)
    if site is not None:
        _mark_rebuilt(result, site, catalog_dir, b, nodata)
    report = write_outputs(result, out_dir)
    return result, report
