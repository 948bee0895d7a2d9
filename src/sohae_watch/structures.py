"""Structures in the windowed pipeline: classify each on a window around its footprint, draw its
chips, and find in the catalog whether a structure that appeared had stood before."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import rasterio
from affine import Affine
from rasterio.warp import Resampling, reproject
from scipy import ndimage
from shapely.geometry.base import BaseGeometry

from sohae_watch.agreement import AGREE_NCC
from sohae_watch.area import delivered_m
from sohae_watch.areas import ChangeArea
from sohae_watch.chips import Box, box_around, mask_rgb, png, rgb, stretch
from sohae_watch.classify import (
    FOOTPRINT_TOLERANCE_M,
    PRESENT,
    StructureCall,
    classify_structures,
    detail_sigma,
    presence,
    standing_footprint,
    structure_sentence,
)
from sohae_watch.errors import InputError
from sohae_watch.grid import Grid, origin_on_lattice
from sohae_watch.ingest import Acquisition, catalog
from sohae_watch.lean import lean_reach_m
from sohae_watch.parallel import concurrently, default_workers
from sohae_watch.reader import GridReader, read_scene
from sohae_watch.scene import Scene, SunPosition
from sohae_watch.shadow import estimate_azimuth, listed_shadow, moved_shadow
from sohae_watch.site import Site, Structure
from sohae_watch.stream import window_scene

if TYPE_CHECKING:
    from sohae_watch.pipeline import DiffResult

log = logging.getLogger(__name__)

CHIP_MARGIN_M = 15.0  # ground shown around a footprint in its chips
# ground read around where known views may draw a roof (m): the ring the inside's shade is
# measured on (8 m beyond the tolerance) and the gradients' few pixels of smoothing
LEAN_GROUND_M = 10.0


def structure_chips(
    s: Structure, grid: Grid, before: Scene, after: Scene, mask: np.ndarray
) -> dict[str, bytes]:
    return outlined_chips(
        before.grid.geometry_from_lonlat(s.geometry.__geo_interface__), before, after, mask
    )


def outlined_chips(
    geom: BaseGeometry, before: Scene, after: Scene, mask: np.ndarray
) -> dict[str, bytes]:
    """Before / after / change PNG chips of two window scenes with ``geom`` (the window's CRS)
    outlined."""
    from sohae_watch.report import outline_rings

    full = (0, 0, before.grid.height, before.grid.width)
    rings = outline_rings(before.grid, geom, full)

    def chip(scene: Scene) -> bytes:
        return png(rgb(scene, full, stretch(scene)), outlines=rings)

    # the dates' chips on two threads (Pillow compresses without the GIL)
    first, second = concurrently(lambda: chip(before), lambda: chip(after), default_workers())
    return {"before": first, "after": second, "change": png(mask_rgb(mask, full), outlines=rings)}


def classify_windows(
    site: Site,
    readers: tuple[GridReader, GridReader],
    grid: Grid,
    area: BaseGeometry,
    acqs: tuple[Acquisition, Acquisition],
    mask_path: Path,
    reliability: float,
    stood_before: Mapping[str, bool] | None,
    levels: tuple[tuple[float, float], tuple[float, float]] | None = None,
) -> tuple[list[StructureCall], dict[str, dict[str, bytes]], list[SunPosition | None]]:
    """Classify each structure on a window around its footprint; its before / after / change
    chips; and each date's sun position, as used (None: unknown).

    A date without the sun's position in its metadata gets one estimated from the image: the
    direction in which dark bands sit next to the footprints clearly outlined on that date."""
    windows: list[tuple[Structure, list[Scene], np.ndarray]] = []
    boxes: list[tuple[Box, Box]] = []  # each window's chips' and evidence's
    # with both views known the evidence is read as far as they draw the tallest roof, and
    # the ground around it: the chips still show their own window
    reach = lean_reach_m(acqs[0].view, acqs[1].view)
    pad_m = reach + FOOTPRINT_TOLERANCE_M + LEAN_GROUND_M if reach > 0 else 0.0
    with rasterio.open(mask_path) as mask_ds:
        for s in site.structures:
            fp = grid.geometry_from_lonlat(s.geometry.__geo_interface__)
            box = _chip_box(grid, fp)
            if box is None:
                box = 0, 0, min(grid.height, 8), min(grid.width, 8)
            wide = _chip_box(grid, fp, pad_m) or box
            boxes.append((box, wide))
            before, after, mask = _chip_window(wide, readers, grid, area, acqs, mask_ds)
            windows.append((s, [before, after], mask))
    suns = [acq.sun for acq in acqs]
    for i in (0, 1):
        if windows and windows[0][1][i].sun is None:
            sun = estimate_sun(windows, i, levels[i] if levels else None)
            if sun is not None:
                log.info(
                    "%s: sun azimuth estimated from shadows: %.0f deg", acqs[i].date, sun.azimuth
                )
                for _, scenes, _ in windows:
                    scenes[i] = replace(scenes[i], sun=sun)
                suns[i] = sun
    calls: list[StructureCall] = []
    chips: dict[str, dict[str, bytes]] = {}
    native_m = (delivered_m(acqs[0]), delivered_m(acqs[1]))
    # where the dates' detail differs (classify.detail_sigma), the finer date seen through the
    # coarser one's delivered pixels when that lattice is known (files in the grid's CRS on one
    # lattice), else the Gaussian of classify.common_detail
    coarse = 0 if native_m[0] > native_m[1] else 1
    lattice = coarse_lattice(readers[coarse]) if detail_sigma(native_m, grid.resolution) else None
    for (s, scenes, mask), (chip_box, wide) in zip(windows, boxes, strict=True):
        detail = None
        if lattice is not None:
            fine = scenes[1 - coarse]
            seen = as_delivered_on(fine, lattice)
            detail = (seen, scenes[1].data) if coarse == 1 else (scenes[0].data, seen)
        call = classify_structures(
            [s],
            scenes[0],
            scenes[1],
            mask,
            min_observed_fraction=site.thresholds["min_observed_fraction"],
            coreg_reliability=reliability,
            stood_before=stood_before,
            levels=levels,
            native_m=native_m,
            detail=detail,
            views=(acqs[0].view, acqs[1].view),
        )[0]
        calls.append(call)
        chips[s.id] = structure_chips(s, grid, *_within(chip_box, wide, scenes, mask))
    return calls, chips, suns


def screen_activity(
    areas: Sequence[ChangeArea],
    readers: tuple[GridReader, GridReader],
    grid: Grid,
    area: BaseGeometry,
    acqs: tuple[Acquisition, Acquisition],
    mask_path: Path,
    footprints: Sequence[BaseGeometry] = (),
    suns: Sequence[SunPosition | None] = (None, None),
) -> tuple[list[ChangeArea], dict[str, dict[str, bytes]], dict[int, ChangeArea]]:
    """New activity among candidate ``areas``, each read on a window around it: the areas kept,
    their before / after / change chips (keys ``_activity-N``, in order, the area outlined), and
    by their index in ``areas`` those found to be no structure that came or went, retyped: a
    shadow that moved with the sun, or the shadow of a listed structure (``footprints``, in the
    grid's CRS), ``darker`` where it came and ``brighter`` where it left (see
    :func:`moved_shadow`, :func:`listed_shadow`), an area that shows the same pattern on both
    dates ``other`` (see :func:`same_pattern`). ``suns``: each date's sun position where its
    metadata gives none (estimated by :func:`classify_windows`)."""
    kept: list[ChangeArea] = []
    chips: dict[str, dict[str, bytes]] = {}
    retyped: dict[int, ChangeArea] = {}
    with rasterio.open(mask_path) as mask_ds:
        for i, a in enumerate(areas):
            box = _chip_box(grid, a.geometry)
            if box is None:
                kept.append(a)
                continue
            before, after, mask = _chip_window(box, readers, grid, area, acqs, mask_ds)
            before, after = (
                scene if scene.sun is not None or sun is None else replace(scene, sun=sun)
                for scene, sun in zip((before, after), suns, strict=True)
            )
            way = moved_shadow(a.geometry, before, after)
            if way is not None:
                log.info("change area of %.0f m² is a shadow that moved %s", a.area_m2, way)
                retyped[i] = replace(a, change_type="darker" if way == "in" else "brighter")
                continue
            way = listed_shadow(a.geometry, before, after, footprints)
            if way is not None:
                log.info(
                    "change area of %.0f m² is the shadow of a listed structure (%s)",
                    a.area_m2,
                    "came" if way == "in" else "left",
                )
                retyped[i] = replace(a, change_type="darker" if way == "in" else "brighter")
                continue
            if same_pattern(a.geometry, before, after):
                log.info("change area of %.0f m² shows the same pattern on both dates", a.area_m2)
                retyped[i] = replace(a, change_type="other")
                continue
            chips[f"_activity-{len(kept)}"] = outlined_chips(a.geometry, before, after, mask)
            kept.append(a)
    return kept, chips, retyped


# correlation of the dates' brightness in and around an area at which it shows the same
# pattern: the scene-wide test's (agreement.AGREE_NCC). It was 0.9, "the same up to a linear
# radiometric change"; over the nine generated seed groups the areas that were a building come
# correlate at -0.35-0.49 (two of 71 at 0.72 and 0.91), while 32 false ones sat at 0.54-0.89
SAME_PATTERN = AGREE_NCC
PATTERN_GROW_PX = 6  # the area's surroundings looked at with it


def same_pattern(geom: BaseGeometry, before: Scene, after: Scene) -> bool:
    """Whether the two dates show the same pattern in and around a change area (``geom``, in
    the scenes' CRS, grown by :data:`PATTERN_GROW_PX`): their brightness there linearly related,
    correlation at least :data:`SAME_PATTERN`. The area then changed in brightness or contrast
    only (a roof whose surroundings changed colour, haze), not in what stands there: a structure
    that comes or goes changes the pattern. Correlation ignores any gain and offset between the
    dates, which the scene-wide normalisation cannot fit to every neighbourhood."""
    both = before.valid & after.valid
    inside = before.grid.rasterize(geom) & both
    grown = ndimage.binary_dilation(inside, iterations=PATTERN_GROW_PX) & both
    if grown.sum() < 16:
        return False
    x, y = before.intensity()[grown], after.intensity()[grown]
    if not (float(np.std(x)) > 0 and float(np.std(y)) > 0):
        return False
    return float(np.corrcoef(x, y)[0, 1]) >= SAME_PATTERN


def _chip_box(grid: Grid, geom: BaseGeometry, pad_m: float = 0.0) -> Box | None:
    """Rows and columns (r0, c0, r1, c1) of the window around ``geom`` (the grid's CRS) that
    chips and structure evidence are read on (at least ``pad_m`` around it); None when it
    misses the grid."""
    pad = max(CHIP_MARGIN_M, 12 * grid.resolution, pad_m)
    r0, c0, r1, c1 = box_around(grid, geom.bounds, pad_m=pad)
    return None if r1 <= r0 or c1 <= c0 else (r0, c0, r1, c1)


def _within(
    box: Box, wide: Box, scenes: Sequence[Scene], mask: np.ndarray
) -> tuple[Scene, Scene, np.ndarray]:
    """The window ``box`` (grid rows and columns) of two dates' ``scenes`` and their ``mask``
    read on the window ``wide`` that holds it: the chips' own window where the evidence was
    read on a wider one."""
    before, after = scenes
    if box == wide:
        return before, after, mask
    r, c = box[0] - wide[0], box[1] - wide[1]
    h, w = box[2] - box[0], box[3] - box[1]
    return before.crop(r, c, h, w), after.crop(r, c, h, w), mask[r : r + h, c : c + w]


def coarse_lattice(reader: GridReader) -> Affine | None:
    """The pixel lattice the acquisition of ``reader`` was delivered on, as a transform in the
    grid's CRS after registration (the reader's model), when its files are in the grid's CRS on
    one lattice (tiles of one product); None otherwise."""
    sources = reader.acq.sources
    if any(s.crs != reader.grid.crs for s in sources):
        return None
    src = sources[0].transform
    if any(origin_on_lattice(s.transform, src) is None for s in sources[1:]):
        return None
    t = reader.grid.transform
    if reader.model is None:
        return src
    return t * ~reader.model * ~t * src


def as_delivered_on(scene: Scene, lattice: Affine) -> np.ndarray:
    """``scene``'s bands as a sensor delivering pixels on ``lattice`` would show them on the
    scene's grid: averaged over each lattice pixel, then resampled back bilinearly, as the
    pipeline brings such a date onto the grid. Its aliasing (a lattice of girders seen by pixels
    of about their spacing) is reproduced, which no blur of the finer date does."""
    g = scene.grid
    inv = ~lattice
    corners = [inv * (g.transform * (c, r)) for c in (0, g.width) for r in (0, g.height)]
    c0 = math.floor(min(x for x, _ in corners)) - 1
    r0 = math.floor(min(y for _, y in corners)) - 1
    c1 = math.ceil(max(x for x, _ in corners)) + 1
    r1 = math.ceil(max(y for _, y in corners)) + 1
    sub = lattice * Affine.translation(c0, r0)

    def warp(src: np.ndarray, dst: np.ndarray, frm: Affine, to: Affine, how: Resampling) -> None:
        kw = {"src_crs": g.crs, "dst_crs": g.crs, "src_nodata": np.nan, "dst_nodata": np.nan}
        reproject(src, dst, src_transform=frm, dst_transform=to, resampling=how, **kw)

    coarse = np.full((scene.data.shape[0], r1 - r0, c1 - c0), np.nan, np.float32)
    warp(
        np.where(scene.valid, scene.data, np.nan).astype(np.float32),
        coarse,
        g.transform,
        sub,
        Resampling.average,
    )
    out = np.full(scene.data.shape, np.nan, np.float32)
    warp(coarse, out, sub, g.transform, Resampling.bilinear)
    out[:, ~scene.valid] = np.nan
    return out


def _chip_window(
    box: tuple[int, int, int, int],
    readers: tuple[GridReader, GridReader],
    grid: Grid,
    area: BaseGeometry,
    acqs: tuple[Acquisition, Acquisition],
    mask_ds: rasterio.io.DatasetReader,
) -> tuple[Scene, Scene, np.ndarray]:
    """Both dates and the change mask on the window ``box``."""
    from rasterio.windows import Window

    r0, c0, r1, c1 = box
    h, w = r1 - r0, c1 - c0
    before, after = (
        window_scene(r, grid, area, acq, r0, c0, h, w) for r, acq in zip(readers, acqs, strict=True)
    )
    return before, after, mask_ds.read(1, window=Window(c0, r0, w, h))


def estimate_sun(
    windows: list[tuple[Structure, list[Scene], np.ndarray]],
    date: int,
    levels: tuple[float, float] | None,
) -> SunPosition | None:
    """The sun azimuth of date ``date`` (0 before, 1 after) from the structures standing on it
    (elevation unknown: NaN), or None when none stands or their shadows show no clear side."""
    views = []
    for s, scenes, _ in windows:
        fp = standing_footprint(scenes[date], s, levels)
        if fp is not None:
            views.append((scenes[date], fp))
    azimuth = estimate_azimuth(views)
    return SunPosition(azimuth, float("nan")) if azimuth is not None else None


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


def mark_rebuilt(
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
            sentence = structure_sentence(
                c.name,
                c.status,
                "rebuilt",
                c.observed_fraction,
                result.before.date,
                result.after.date,
            )
            result.structures[i] = replace(c, event="rebuilt", summary=sentence)
