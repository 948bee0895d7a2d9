"""The `diff` pipeline: ingest -> co-register -> change -> classify -> report.

Every pair goes through the same window-by-window path, so a scene larger than memory is just
more rows: co-registration reads only its tie-point windows, the change statistics come from a
sample of windows, then the change stage reads every row once, in bands, and keeps per-pixel
layers of the working grid (in a temporary file beyond a budget); the wide-neighbourhood evidence
is computed once on the whole evidence grid, and output tiles are decided from the stored layers
and written (:mod:`sohae_watch.change_passes`). A scene whose evidence grid would exceed the
passes' budget (at 10 m the evidence grid is the input grid) goes tile by tile instead, each tile
read with the change model's halo: bounded memory at about twice the decoding. Structures are
classified on small windows around their footprints.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import math
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import rasterio
from affine import Affine
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry

from sohae_watch.area import context_grid, working_area
from sohae_watch.areas import join_pieces
from sohae_watch.change import (
    ChangeArea,
    ChangeModel,
    fit_change_model,
)
from sohae_watch.change_passes import BandResult, SceneChange, evidence_bytes, two_passes_fit
from sohae_watch.chips import png, rgb, stretch
from sohae_watch.classify import StructureCall
from sohae_watch.coregister import (
    RELIABLE,
    CoregResult,
    array_reader,
    coregister_readers,
    failed,
    within,
)
from sohae_watch.errors import InputError
from sohae_watch.footprint import gradient_levels
from sohae_watch.grid import Grid
from sohae_watch.ingest import Acquisition, mixed_tiles, open_acquisition
from sohae_watch.outputs import OVERVIEW_SIDE, RowWriter, TileOutputs
from sohae_watch.parallel import concurrently, default_workers, give_back
from sohae_watch.readcache import GridCache, cache_for
from sohae_watch.reader import GridReader, block_rows, no_contrast, set_nan, sources_read
from sohae_watch.scene import Scene, SunPosition, ViewAngle
from sohae_watch.site import Site, site_imagery
from sohae_watch.stream import (
    SAMPLE_WINDOW,
    TILE,
    Tile,
    area_valid,
    intensity_reader,
    sample_grid,
    sample_mosaic,
    sample_origins,
    tiles,
    window_scene,
)
from sohae_watch.structures import classify_windows, mark_rebuilt, screen_activity

if TYPE_CHECKING:
    from sohae_watch.distributed import Executor

log = logging.getLogger(__name__)

NEW_ACTIVITY_MIN_AREA_M2 = 50.0
NEW_ACTIVITY_MIN_CONFIDENCE = 0.5
# GDAL's block cache outside the change stage's band reads, in bytes (rasterio hands the value to
# GDALSetCacheMax64 as it is). It was 256 bytes, in effect none (GDAL's default, 5 % of RAM, had
# dominated resident memory): a source GDAL warps onto the grid (another CRS or resolution) then
# decoded its blocks again for each chunk the warper reads. On the samples' EPSG:4326 date a
# 109 x 181 chip window took 0.8 s against 0.1 s (first read) and 2 ms (next ones) with 16 MB
GDAL_CACHE_BYTES = 64 * 2**20
# the block cache while the change stage reads its bands (bytes): each band reads its rows in
# chunks, which share the blocks of the source files' block rows (two threads hold a 512 px block
# row of both inputs: 184 MB of blocks for 4-band uint16). On the benchmark pair 192 MB was ~1 s
# slower; 224 and 256 MB ran alike, 256 MB peaking ~20 MB higher, close to 1 GB
CHANGE_CACHE = 224 * 2**20
# the block cache while co-registration reads its tie-point windows (bytes): windows side by side
# share blocks (a 448 px window at any column touches two 512 px blocks) and overlapping ones on a
# mid-size grid share most of theirs; without a cache each block was decoded once per window
# (a 4096^2 pair: 8.2 s of co-registration, 4.9 s with it)
COREG_CACHE = 128 * 2**20
WHOLE_FIT_PIXELS = 4_000_000  # grids up to this size fit the change statistics on every pixel
# grids up to this size are read whole for co-registration (16 bytes a pixel while reading): tie-
# point windows overlap there, and reading them one by one decoded the same blocks many times
WHOLE_READ_PIXELS = 16_000_000
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Side:
    """What the reports say about one acquisition."""

    date: dt.date
    sources: tuple[str, ...]
    sun: SunPosition | None
    view: ViewAngle | None = None


@dataclass
class DiffResult:
    """Everything one comparison produced; the report module writes it out.

    The two rasters are already on disk (``rasters``: change_mask, change_magnitude) in
    ``workdir``; everything else is small.
    """

    site: Site | None
    grid: Grid
    area: BaseGeometry
    before: Side
    after: Side
    coreg: CoregResult
    threshold: float
    counts: dict[str, int]
    areas: list[ChangeArea]
    structures: list[StructureCall]
    new_activity: list[ChangeArea]
    chips: dict[str, dict[str, bytes]]
    rasters: dict[str, Path]
    timings: dict[str, float] = field(default_factory=dict)
    workdir: Any = None  # a TemporaryDirectory kept alive with the result, when one was made
    # False when the change model found no ground the dates share: the mask cannot be trusted
    radiometry_matched: bool = True
    # share of the textured ground that looks alike on both dates (NaN: no verdict); under
    # agreement.MOSTLY_DIFFERENT the mask cannot be trusted either
    structure_agreement: float = math.nan
    # the two together (change.ChangeModel.trusted): whether the mask is evidence of a
    # structure come or gone; when False no change area is reported as new activity
    mask_trusted: bool = True


def _common_roles(before: Acquisition, after: Acquisition) -> tuple[str, ...]:
    roles = tuple(r for r in before.roles if r in after.roles)
    if not roles:
        raise InputError(
            f"{after.sources[0].path}: its bands {after.roles} share no role with BEFORE's "
            f"{before.roles}; name the bands (red, green, blue, nir)"
        )
    return roles


def _is_identity(model: Affine | None) -> bool:
    return model is None or model.almost_equals(Affine.identity(), precision=1e-4)


def _after_model(coreg: CoregResult) -> Affine | None:
    """How AFTER is read: through its registration, or as delivered (None) when that failed or
    moves nothing."""
    return None if coreg.status == "failed" or _is_identity(coreg.model) else coreg.model


class _Readers:
    """Per-thread GridReaders of both acquisitions (rasterio datasets are not shared by threads)."""

    def __init__(
        self,
        before: Acquisition,
        after: Acquisition,
        grid: Grid,
        roles: tuple[str, ...],
        model: Affine | None,
        reads: GridCache | None = None,
    ) -> None:
        self.args = (before, after, grid, roles, model)
        self.reads = reads
        self.local = threading.local()
        self.opened: list[GridReader] = []
        self.lock = threading.Lock()

    @classmethod
    def registered(
        cls,
        acqs: tuple[Acquisition, Acquisition],
        grid: Grid,
        roles: tuple[str, ...],
        coreg: CoregResult,
        reads: GridCache | None,
    ) -> _Readers:
        """Readers of both dates, AFTER through its registration (see :func:`_after_model`)."""
        return cls(*acqs, grid, roles, _after_model(coreg), reads)

    def get(self) -> tuple[GridReader, GridReader]:
        pair = getattr(self.local, "pair", None)
        if pair is None:
            before, after, grid, roles, model = self.args
            rb = GridReader(before, grid, cache=self.reads).__enter__()
            ra = GridReader(after, grid, model=model, cache=self.reads).__enter__()
            rb.roles = ra.roles = roles
            pair = (rb, ra)
            self.local.pair = pair
            with self.lock:
                self.opened += [rb, ra]
        return pair

    def close(self) -> None:
        for r in self.opened:
            r.close()


QUICK_WINDOW = 256  # side of the windows the observability check looks at first
MIN_SIDE_PX = 8  # the narrowest area compared: a 1 m working block and a neighbourhood around it


def _check_observable(
    acq: Acquisition, role: str, grid: Grid, area: BaseGeometry, roles: tuple[str, ...]
) -> None:
    """InputError unless some pixel of the area is valid and the image shows some contrast
    there (:func:`~sohae_watch.reader.no_contrast`: a blank product would have every
    structure dismantled).

    First a few full-resolution windows spread over the grid (cheap, and enough for nearly every
    input); only when none of them has a valid pixel that differs from another, the whole area
    on a coarse grid, which on a large reprojected scene costs a warp of all of it."""
    with GridReader(acq, grid) as r:
        r.roles = roles
        for row, col in sample_origins(grid.shape, QUICK_WINDOW):
            h, w = min(QUICK_WINDOW, grid.height - row), min(QUICK_WINDOW, grid.width - col)
            data, valid = r.read(row, col, h, w)
            valid &= area_valid(grid, area, row, col, h, w)
            if valid.any() and not no_contrast(data, valid):
                return
    factor = max(1.0, math.sqrt(grid.width * grid.height / 250_000))
    coarse = (
        Grid.from_bounds(grid.crs, grid.bounds, grid.resolution * factor) if factor > 1 else grid
    )
    with GridReader(acq, coarse, resampling="nearest") as r:
        r.roles = roles
        data, valid = r.read_all()
    valid &= coarse.rasterize(area, all_touched=True)
    if not valid.any():
        raise InputError(
            f"{acq.sources[0].path}: {role} ({acq.date}) has no valid pixel over the area compared "
            "(all nodata or NaN there, or 0 in every band of a file declaring no nodata); give "
            "imagery that covers it"
        )
    if no_contrast(data, valid):
        raise InputError(
            f"{acq.sources[0].path}: {role} ({acq.date}) has the same value in every pixel over "
            "the area compared (a blank or failed product); give another acquisition"
        )


def _coregister(
    readers: tuple[GridReader, GridReader], grid: Grid, area: BaseGeometry, threads: int
) -> CoregResult:
    """Measure AFTER against BEFORE. A grid small enough is read once into memory (a reprojected
    source costs a warp set-up per window read); a large one is read only where tie points are.
    With ``threads`` > 1 the two acquisitions are read at the same time (each reader in one
    thread) and windows are measured in parallel."""
    Reader = Callable[[int, int, int, int], tuple[np.ndarray, np.ndarray]]

    def masked(read: Reader) -> Reader:
        def inner(row: int, col: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
            inside = area_valid(grid, area, row, col, height, width)
            if not inside.any():  # a window beyond the area: nothing to decode
                return np.full((height, width), np.nan, np.float32), inside
            img, valid = read(row, col, height, width)
            return img, valid & inside

        return inner

    whole = grid.width * grid.height <= WHOLE_READ_PIXELS

    def prepare(r: GridReader) -> Reader:
        if not whole:
            return masked(intensity_reader(r))
        img, valid = intensity_reader(r)(0, 0, grid.height, grid.width)
        return array_reader(img, valid & area_valid(grid, area, 0, 0, grid.height, grid.width))

    pair = concurrently(lambda: prepare(readers[0]), lambda: prepare(readers[1]), threads)
    try:
        block = None if whole else block_rows(readers[0].acq, grid)
        return coregister_readers(pair[0], pair[1], grid.shape, row_block=block, threads=threads)
    except ValueError as exc:  # too small to measure: say so rather than assume no shift
        log.warning("co-registration not possible: %s", exc)
        return failed("tie-points")


def _coregister_around(
    before: Acquisition,
    after: Acquisition,
    grid: Grid,
    area: BaseGeometry,
    roles: tuple[str, ...],
    reads: GridCache | None,
    threads: int,
) -> CoregResult:
    """Measure AFTER against BEFORE on ``grid`` within ``area``; a grid too narrow to measure
    well (:func:`~sohae_watch.area.context_grid`) is measured on the ground around it as well,
    where both dates have data, and the result given on ``grid``."""
    around = context_grid(grid, before, after)
    wide, (row, col) = (grid, (0, 0)) if around is None else (around[0], around[1:])
    if around is not None:
        log.info(
            "co-registration measured on %d x %d px around the %d x %d px area",
            wide.width,
            wide.height,
            grid.width,
            grid.height,
        )
        area, reads = box(*wide.bounds), None
    plain = _Readers(before, after, wide, roles, None, reads)
    try:
        with rasterio.Env(GDAL_CACHEMAX=COREG_CACHE):
            coreg = _coregister(plain.get(), wide, area, threads)
    finally:
        plain.close()
    return coreg if around is None else within(coreg, row, col, grid.shape)


def _fit_model(
    readers: tuple[GridReader, GridReader],
    grid: Grid,
    area: BaseGeometry,
    before: Acquisition,
    after: Acquisition,
    threads: int,
    levels: bool = True,
) -> tuple[ChangeModel, tuple[tuple[float, float], tuple[float, float]] | None]:
    """Fit the change statistics on a sample of full-resolution windows (the whole grid when small);
    also each date's gradient levels for the structure classifier (when ``levels``, else None).
    With ``threads`` > 1 the two dates are read at the same time, and their gradient levels
    computed beside the fit."""
    small = grid.width * grid.height <= WHOLE_FIT_PIXELS
    origins = [(0, 0)] if small else sample_origins(grid.shape)
    size = SAMPLE_WINDOW
    gap = 128

    def reader(r: GridReader) -> Callable[[int, int, int, int], tuple[np.ndarray, np.ndarray]]:
        def read(row: int, col: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
            data, valid = r.read(row, col, height, width)
            return data, valid & area_valid(grid, area, row, col, height, width)

        return read

    def scene(r: GridReader, a: Acquisition) -> Scene:
        if small:
            return window_scene(r, grid, area, a, 0, 0, grid.height, grid.width)
        data, valid = sample_mosaic(reader(r), origins, size, grid.shape, gap)
        set_nan(data, valid)
        return Scene(
            data, valid, tuple(r.roles), sample_grid(grid, valid.shape), a.date, a.paths, a.sun
        )

    first, second = concurrently(
        lambda: scene(readers[0], before), lambda: scene(readers[1], after), threads
    )
    try:
        return concurrently(
            lambda: fit_change_model(first, second),
            lambda: (gradient_levels(first), gradient_levels(second)) if levels else None,
            threads,
        )
    except ValueError as exc:
        raise InputError(
            f"{after.sources[0].path}: no pixel of the area is observable in both BEFORE and AFTER ({exc}); "
            "give two acquisitions that overlap where they have data"
        ) from exc


def compute_diff(
    before_acq: Acquisition,
    after_acq: Acquisition,
    *,
    site: Site | None = None,
    aoi: BaseGeometry | None = None,
    stood_before: Mapping[str, bool] | None = None,
    workdir: Path | None = None,
    workers: int | None = None,
    executor: Executor | None = None,
    progress: Progress | None = None,
) -> DiffResult:
    """Compare two acquisitions over the site's AOI (or ``aoi``, or their overlap).

    The rasters are written into ``workdir`` (default: a temporary folder kept with the result).
    Tiles run on ``executor`` (e.g. a Dask cluster), else on ``workers`` threads (default: up
    to 2 cores).
    """
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES):
        return _compute_diff(
            before_acq,
            after_acq,
            site=site,
            aoi=aoi,
            stood_before=stood_before,
            workdir=workdir,
            workers=workers,
            executor=executor,
            progress=progress,
        )


def _compute_diff(
    before_acq: Acquisition,
    after_acq: Acquisition,
    *,
    site: Site | None,
    aoi: BaseGeometry | None,
    stood_before: Mapping[str, bool] | None,
    workdir: Path | None,
    workers: int | None,
    executor: Executor | None,
    progress: Progress | None,
) -> DiffResult:
    from sohae_watch.distributed import ThreadExecutor

    timings: dict[str, float] = {}
    # threads of this process for the stages before the change stage (which runs on ``executor``)
    threads = default_workers() if workers is None else max(1, min(workers, default_workers()))
    t0 = time.perf_counter()
    grid, area = working_area(before_acq, after_acq, site=site, aoi=aoi)
    roles = _common_roles(before_acq, after_acq)
    log.info(
        "working grid %s at %.3g m, %d x %d px", grid.crs, grid.resolution, grid.width, grid.height
    )
    if min(grid.width, grid.height) < MIN_SIDE_PX:
        raise InputError(
            f"{after_acq.sources[0].path}: the area compared (the two acquisitions' overlap, "
            f"within the AOI) is only {grid.width} x {grid.height} px; give acquisitions and an "
            f"area that overlap by at least {MIN_SIDE_PX} x {MIN_SIDE_PX} px"
        )
    _check_observable(before_acq, "BEFORE", grid, area, roles)
    _check_observable(after_acq, "AFTER", grid, area, roles)
    if set(roles) != set(before_acq.roles) or set(roles) != set(after_acq.roles):
        log.warning(
            "BEFORE has bands %s and AFTER %s: compared on %s only",
            ", ".join(before_acq.roles),
            ", ".join(after_acq.roles),
            ", ".join(roles),
        )
    for acq in (before_acq, after_acq):
        note = mixed_tiles(acq)
        if note is not None:
            log.warning("%s", note)
    tmp = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="sohae-diff-")
        workdir = Path(tmp.name)
    timings["plan"] = time.perf_counter() - t0

    # a small grid's whole reads, kept for the later stages (see readcache); freed on return
    reads = cache_for(grid, len(roles))

    t0 = time.perf_counter()
    coreg = _coregister_around(before_acq, after_acq, grid, area, roles, reads, threads)
    if coreg.status == "failed":
        log.warning(
            "co-registration failed: comparing the images as delivered; structure calls get lower confidence"
        )
    log.info(
        "co-registration %s: shift %s, %s px, reliability %.2f",
        coreg.status,
        coreg.shift_x_px,
        coreg.shift_y_px,
        coreg.reliability,
    )
    timings["coregister"] = time.perf_counter() - t0
    after_model = _after_model(coreg)
    if reads is not None and after_model is not None:  # AFTER as delivered is not read again
        reads.drop(lambda key: not (key.paths == after_acq.paths and key.model is None))
    give_back()

    readers = _Readers.registered((before_acq, after_acq), grid, roles, coreg, reads)
    dates = {"BEFORE_DATE": before_acq.date.isoformat(), "AFTER_DATE": after_acq.date.isoformat()}
    outputs = TileOutputs(workdir, grid, len(roles), dates)
    try:
        t0 = time.perf_counter()
        # the gradient levels serve the structure calls only
        model, levels = _fit_model(
            readers.get(),
            grid,
            area,
            before_acq,
            after_acq,
            threads,
            levels=site is not None and bool(site.structures),
        )
        timings["fit"] = time.perf_counter() - t0
        units = model.stats.get("units_factor", 1.0)
        if units != 1.0:
            log.warning(
                "%s: its values are %.3gx those of %s (other units or bit depth: reflectance "
                "against counts, 8 against 11 bits?); compared after bringing them to one level",
                after_acq.sources[0].path,
                units,
                before_acq.sources[0].path,
            )
        give_back()

        t0 = time.perf_counter()
        pool = executor or ThreadExecutor(workers if workers is not None else default_workers())
        stage = _change_passes if two_passes_fit(model, grid) else _change_tiles
        areas = stage(
            _Stage(
                model,
                (before_acq, after_acq),
                grid,
                area,
                roles,
                after_model,
                outputs,
                workdir,
                pool,
                progress,
                reads,
            )
        )
        areas = join_pieces(areas)  # the areas tile borders cut, whole again
        timings["change"] = time.perf_counter() - t0
    finally:
        outputs.close()
        readers.close()
    # the rasters' Cloud-Optimized copies are made beside the classification, which reads the
    # rasters as written (the same pixels); the copies replace them once nothing reads them
    t_write = time.perf_counter()

    def copies() -> tuple[list[tuple[Path, Path]], float]:
        return outputs.cog_copies(), time.perf_counter() - t_write

    timings["write"] = 0.0
    with ThreadPoolExecutor(1) as side:
        finishing = side.submit(copies)
        try:
            t0 = time.perf_counter()
            structures, chips, new_activity, areas = _classify(
                site,
                (before_acq, after_acq),
                grid,
                area,
                roles,
                coreg,
                outputs,
                areas,
                stood_before,
                levels,
                reads,
                trusted=model.trusted,
            )
            timings["classify"] = time.perf_counter() - t0
        except BaseException:
            with contextlib.suppress(Exception):
                TileOutputs.discard(finishing.result()[0])
            raise
    made, timings["write"] = finishing.result()
    outputs.commit(made)
    for k, v in timings.items():
        log.info("stage %-10s %.2f s", k, v)
    return DiffResult(
        site=site,
        grid=grid,
        area=area,
        before=Side(
            before_acq.date, sources_read(before_acq, grid), before_acq.sun, before_acq.view
        ),
        after=Side(
            after_acq.date,
            sources_read(after_acq, grid, after_model),
            after_acq.sun,
            after_acq.view,
        ),
        coreg=coreg,
        threshold=model.threshold,
        counts=outputs.counts,
        areas=areas,
        structures=structures,
        new_activity=new_activity,
        chips=chips,
        rasters=outputs.paths,
        timings=timings,
        workdir=tmp,
        radiometry_matched=model.matched,
        structure_agreement=model.agreement,
        mask_trusted=model.trusted,
    )


def _classify(
    site: Site | None,
    acqs: tuple[Acquisition, Acquisition],
    grid: Grid,
    area: BaseGeometry,
    roles: tuple[str, ...],
    coreg: CoregResult,
    outputs: TileOutputs,
    areas: list[ChangeArea],
    stood_before: Mapping[str, bool] | None,
    levels: tuple[tuple[float, float], tuple[float, float]] | None,
    reads: GridCache | None = None,
    *,
    trusted: bool = True,
) -> tuple[list[StructureCall], dict[str, dict[str, bytes]], list[ChangeArea], list[ChangeArea]]:
    """The site's structure calls, the new activity and the image chips (the overview map's
    too): what the reports show beside the change areas; and the change areas, those found to
    be no structure come or gone retyped. ``reads``: the diff's whole reads. ``trusted``: the
    change model found ground the dates share, and most of the textured ground looks alike on
    both; when not, the change areas are no evidence of a structure come or gone, and none is
    reported as new activity."""
    before_acq, after_acq = acqs
    structures: list[StructureCall] = []
    chips: dict[str, dict[str, bytes]] = {}
    new_activity: list[ChangeArea] = []
    readers = _Readers.registered((before_acq, after_acq), grid, roles, coreg, reads)
    try:
        if site is not None:
            # a registration short of `ok` counts as at most half-way reliable
            reliability = {
                "ok": coreg.reliability,
                "low-confidence": min(coreg.reliability, RELIABLE / 2),
            }.get(coreg.status, 0.0)
            structures, chips, suns = classify_windows(
                site,
                readers.get(),
                grid,
                area,
                (before_acq, after_acq),
                outputs.paths["change_mask"],
                reliability,
                stood_before,
                levels,
            )
            outlines = [
                grid.geometry_from_lonlat(s.geometry.__geo_interface__) for s in site.structures
            ]
            footprints = [f.buffer(3.0) for f in outlines]
            candidates = [
                i
                for i, a in enumerate(areas)
                if trusted
                and a.area_m2 >= NEW_ACTIVITY_MIN_AREA_M2
                and a.confidence >= NEW_ACTIVITY_MIN_CONFIDENCE
                and a.change_type in ("new_structure", "removed_structure")
                and not any(a.geometry.intersects(f) for f in footprints)
            ]
            new_activity, activity, retyped = screen_activity(
                [areas[i] for i in candidates],
                readers.get(),
                grid,
                area,
                (before_acq, after_acq),
                outputs.paths["change_mask"],
                outlines,
                suns,
            )
            chips.update(activity)
            # an area that is no structure come or gone is told as what it is among the areas
            areas = list(areas)
            for k, told in retyped.items():
                areas[candidates[k]] = told
        footprints_ll = [s.geometry for s in site.structures] if site is not None else []
        chips["_overview"] = {"map": _overview_png(readers.get()[1], grid, outputs, footprints_ll)}
    finally:
        readers.close()
    return structures, chips, new_activity, areas


@dataclass(frozen=True)
class _Stage:
    """What the change stage of one diff works with, whichever way it runs."""

    model: ChangeModel
    acqs: tuple[Acquisition, Acquisition]
    grid: Grid
    area: BaseGeometry
    roles: tuple[str, ...]
    after_model: Affine | None  # None: compare as delivered
    outputs: TileOutputs
    workdir: Path
    pool: Executor
    progress: Progress | None
    reads: GridCache | None = None  # the diff's whole reads (this process's threads only)


def _change_passes(st: _Stage) -> list[ChangeArea]:
    """The change stage in two passes (:mod:`sohae_watch.change_passes`): bands of rows on
    ``pool``, each input pixel read once; then the evidence grid; then the output tiles on this
    process's threads, written as they come. The change areas come back in tile order."""
    from sohae_watch.distributed import (
        BandJob,
        ThreadExecutor,
        new_run_id,
        process_band,
    )

    t0 = time.perf_counter()
    change = SceneChange(st.model, st.grid, st.workdir, st.outputs.thumb)
    f = st.outputs.factor
    run_id = new_run_id()
    bands = change.bands(2 * st.pool.workers)
    jobs = (
        BandJob(run_id, *st.acqs, st.grid, st.area, st.roles, st.after_model, st.model, band, f)
        for band in bands
    )
    plan = list(tiles(st.grid.shape, 0, TILE))  # whole blocks of the rasters
    total = len(bands) + len(plan)
    done = 0

    def here(job: BandJob) -> BandResult:  # threads of this process store as they go
        return process_band(job, change, st.reads)

    try:
        run = here if isinstance(st.pool, ThreadExecutor) else process_band
        with rasterio.Env(GDAL_CACHEMAX=CHANGE_CACHE):
            for res in st.pool.map_unordered(run, jobs):  # in any order
                change.add(res)
                done += 1
                if st.progress is not None:
                    st.progress(done, total)
    finally:
        st.pool.release(run_id)
    t1 = time.perf_counter()
    # this process's threads for the evidence grid and the output tiles
    local = ThreadExecutor(
        st.pool.workers if isinstance(st.pool, ThreadExecutor) else default_workers()
    )
    give_back()  # the readers' blocks
    change.prepare(local.workers)
    give_back()
    t2 = time.perf_counter()

    def decide(tile: Tile) -> tuple[Tile, np.ndarray, np.ndarray, list[ChangeArea]]:
        mask, magnitude, areas = change.tile(tile.row, tile.col, tile.height, tile.width)
        st.outputs.note(tile, mask)  # counts and overview on the deciding threads
        return tile, mask, magnitude, areas

    index = {tile: i for i, tile in enumerate(plan)}
    found: dict[int, list[ChangeArea]] = {}
    rows = RowWriter(st.outputs, st.grid, max(t.height for t in plan))
    try:
        for tile, mask, magnitude, areas in local.map_unordered(decide, plan):
            rows.put(tile, mask, magnitude)
            found[index[tile]] = areas
            done += 1
            if st.progress is not None:
                st.progress(done, total)
    except BaseException:
        # no score rows still being written when the stage ends; the first error is the one told
        rows.shutdown(raise_errors=False)
        raise
    rows.close()
    log.info(
        "change: pass 1 %.2f s (%d bands%s), evidence %.2f s, pass 2 %.2f s (%d tiles)",
        t1 - t0,
        len(bands),
        ", layers in a file" if change.spilled else "",
        t2 - t1,
        time.perf_counter() - t2,
        len(plan),
    )
    return [a for i in range(len(plan)) for a in found[i]]  # in plan order, as serial


def _change_tiles(st: _Stage) -> list[ChangeArea]:
    """The change stage tile by tile, each tile read with the change model's halo (decoding
    pixels near tile borders more than once) and its core written: memory bounded by the tile,
    whatever the scene's size, for scenes whose evidence grid the two passes would hold too much
    of (:func:`~sohae_watch.change_passes.two_passes_fit`). The same result as the two passes."""
    from sohae_watch.distributed import TileJob, new_run_id, process_tile

    plan = list(tiles(st.grid.shape, st.model.halo_px, TILE))
    log.info(
        "change: evidence grid of %.0f MB over the two passes' budget: %d tiles with a %d px halo",
        evidence_bytes(st.model, st.grid) / 2**20,
        len(plan),
        st.model.halo_px,
    )
    run_id = new_run_id()
    jobs = (
        TileJob(
            run_id,
            *st.acqs,
            st.grid,
            st.area,
            st.roles,
            st.after_model,
            st.model,
            tile,
            st.outputs.factor,
        )
        for tile in plan
    )
    index = {tile: i for i, tile in enumerate(plan)}
    found: dict[int, list[ChangeArea]] = {}
    try:
        for res in st.pool.map_unordered(process_tile, jobs):  # in any order
            st.outputs.write(res.tile, res.mask, res.magnitude, res.thumb)
            found[index[res.tile]] = res.areas
            if st.progress is not None:
                st.progress(len(found), len(plan))
    finally:
        st.pool.release(run_id)
    return [a for i in range(len(plan)) for a in found[i]]  # in plan order, as serial


def _overview_png(
    after: GridReader, grid: Grid, outputs: TileOutputs, footprints: list[BaseGeometry]
) -> bytes:
    """The AFTER image at overview scale, change in red, structure footprints (lon/lat) outlined."""
    from sohae_watch.report import outline_rings

    f = outputs.factor
    coarse = Grid(
        grid.crs,
        grid.transform @ Affine.scale(f),
        outputs.overview.shape[1],
        outputs.overview.shape[0],
    )
    data = outputs.thumb  # AFTER sampled by the tiles, as co-registered
    valid = np.all(np.isfinite(data), axis=0)
    scene = Scene(data, valid, tuple(after.roles), coarse, after.acq.date)
    full = (0, 0, coarse.height, coarse.width)
    img = rgb(scene, full, stretch(scene))
    m = outputs.overview == 1
    img[m] = (0.5 * img[m] + 0.5 * np.array([255, 0, 0])).astype(np.uint8)
    rings = [
        r
        for g in footprints
        for r in outline_rings(coarse, coarse.geometry_from_lonlat(g.__geo_interface__), full)
    ]
    return png(img, outlines=rings, max_side=OVERVIEW_SIDE)


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
    workers: int | None = None,
    executor: Executor | None = None,
    progress: Progress | None = None,
) -> tuple[DiffResult, dict[str, Any]]:
    """Resolve BEFORE / AFTER, compare them, write the contract's outputs into ``out_dir``."""
    from sohae_watch.outputs import outside_imagery, staged_dir
    from sohae_watch.report import write_reports

    catalog_dir = imagery if imagery is not None else (site.imagery if site is not None else None)
    uses_catalog = not (Path(before).exists() and Path(after).exists())
    if uses_catalog and imagery is None and site is not None and site.imagery is not None:
        catalog_dir = site_imagery(site)
    b = open_acquisition(before, nodata=nodata, imagery=catalog_dir)
    a = open_acquisition(after, nodata=nodata, imagery=catalog_dir)
    read_from = [Path(spec) for spec in (before, after) if Path(spec).is_dir()]
    if catalog_dir is not None and uses_catalog:
        read_from.append(Path(catalog_dir))
    outside_imagery(Path(out_dir), read_from)
    if b.date > a.date:
        raise InputError(f"{before}: BEFORE ({b.date}) is later than AFTER ({a.date}); swap them")
    if {Path(p).resolve() for p in b.paths} == {Path(p).resolve() for p in a.paths}:
        raise InputError(
            f"{after}: AFTER is the same imagery as BEFORE; give the acquisitions of two dates"
        )
    if b.date == a.date:
        log.warning(
            "BEFORE and AFTER were both acquired on %s: changes are dated to that day", a.date
        )
    with staged_dir(Path(out_dir)) as tmp:
        result = compute_diff(
            b,
            a,
            site=site,
            aoi=aoi,
            stood_before=stood_before,
            workdir=tmp,
            workers=workers,
            executor=executor,
            progress=progress,
        )
        if site is not None:
            mark_rebuilt(result, site, catalog_dir, b, nodata)
        report = write_reports(result, tmp)
    return result, report
