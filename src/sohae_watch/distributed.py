"""Where the work runs: the tiles of one `diff`, and the sites of one `watch`, on local threads
or on a Dask cluster (`dask.distributed`).

The unit of a diff is a :class:`BandJob`: a small picklable value (acquisition metadata, working
grid, area, co-registration and change models, a band of rows) that :func:`process_band` turns
into pass 1 of the change stage (:mod:`sohae_watch.change_passes`) in any thread or process that
can read the input files; on local threads it stores its layers into the caller's scene as it
goes, from a cluster they come back in the :class:`~sohae_watch.change_passes.BandResult`. Each
thread keeps its GridReaders per diff run, so a worker opens the inputs once per run, not once
per band. A scene whose evidence grid would not fit the two passes' memory budget (e.g. a
Sentinel-2 tile at 10 m, where the evidence grid is the input grid) goes by :class:`TileJob`
instead: :func:`process_tile` reads a tile with the change model's halo and keeps its core.

The unit of a multi-site watch is a :class:`SiteRun`: :func:`watch_site` is one site's
``run_watch`` (its own state database and lock), run on a worker; outcomes come back per site.

A cluster (``--scheduler ADDRESS``) must see the input files (and, for ``watch``, the state and
report folders) at the same paths as the client, and have sohae-watch installed.
"""

from __future__ import annotations

import logging
import threading
import traceback
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

import numpy as np
from affine import Affine
from shapely.geometry.base import BaseGeometry

from sohae_watch.change import ChangeArea, ChangeModel, apply_change_model, change_areas
from sohae_watch.errors import InputError, SohaeError
from sohae_watch.grid import Grid
from sohae_watch.ingest import Acquisition
from sohae_watch.outputs import overview_lattice
from sohae_watch.readcache import GridCache
from sohae_watch.reader import GridReader
from sohae_watch.stream import Tile

if TYPE_CHECKING:
    from distributed import Client

    from sohae_watch.change_passes import BandResult, Sink
    from sohae_watch.scene import Scene
    from sohae_watch.site import Site
    from sohae_watch.watch import WatchSummary

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")
Progress = Callable[[int, int], None]

IN_FLIGHT_PER_WORKER = (
    2  # tasks submitted ahead per worker thread: keeps workers busy, memory bounded
)
READER_RUNS_PER_THREAD = 4  # diff runs whose readers a thread keeps open at most
CONNECT_TIMEOUT_S = 10.0
BLAS_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


# --- one tile or band of a diff ---------------------------------------------------------------


@dataclass(frozen=True)
class PairJob:
    """What every job of one diff needs, picklable: file paths and metadata, not open datasets.
    ``run`` identifies the diff run; a thread's readers serve every job of a run."""

    run: str
    before: Acquisition
    after: Acquisition
    grid: Grid
    area: BaseGeometry
    roles: tuple[str, ...]
    coreg_model: Affine | None  # None: compare as delivered
    model: ChangeModel


@dataclass(frozen=True)
class TileJob(PairJob):
    """One tile of the change stage, read with the change model's halo (:func:`process_tile`)."""

    tile: Tile
    thumb_step: int = 0  # also return AFTER's core sampled every this many pixels (0: no)


@dataclass(frozen=True)
class TileResult:
    """The core of a tile: mask (uint8 0/1/255) and magnitude (float32) of shape (rows, cols),
    and the change areas found in it (those the tile's border cuts as pieces, which the caller
    joins: :func:`~sohae_watch.areas.join_pieces`)."""

    tile: Tile
    mask: np.ndarray
    magnitude: np.ndarray
    areas: list[ChangeArea]
    thumb: np.ndarray | None = None  # AFTER's bands (NaN invalid) every ``thumb_step`` pixels


@dataclass(frozen=True)
class BandJob(PairJob):
    """Pass 1 of the two-pass change stage on one band of evidence rows
    (:func:`sohae_watch.change_passes.band_pass`)."""

    band: tuple[int, int]
    thumb_step: int = 0  # also return AFTER's rows every this many pixels, sampled so (0: no)


_readers: dict[int, OrderedDict[str, tuple[GridReader, GridReader]]] = {}
_readers_lock = threading.Lock()


def _open_pair(job: PairJob, reads: GridCache | None = None) -> tuple[GridReader, GridReader]:
    rb = GridReader(job.before, job.grid, cache=reads).__enter__()
    try:
        ra = GridReader(job.after, job.grid, model=job.coreg_model, cache=reads).__enter__()
    except BaseException:
        rb.close()
        raise
    rb.roles = ra.roles = job.roles
    return rb, ra


def _thread_readers(job: PairJob, reads: GridCache | None = None) -> tuple[GridReader, GridReader]:
    """This thread's readers for the job's run (rasterio datasets are not shared by threads),
    opened with the run's whole-grid ``reads`` when it has them (a run in this process)."""
    ident = threading.get_ident()
    with _readers_lock:
        cache = _readers.setdefault(ident, OrderedDict())
        pair = cache.get(job.run)
        if pair is not None:
            cache.move_to_end(job.run)
            return pair
    pair = _open_pair(job, reads)
    evicted: list[tuple[GridReader, GridReader]] = []
    with _readers_lock:
        cache[job.run] = pair
        while len(cache) > READER_RUNS_PER_THREAD:  # runs whose release never came
            evicted.append(cache.popitem(last=False)[1])
    for old in evicted:
        for r in old:
            r.close()
    return pair


def release_readers(run: str) -> int:
    """Close every thread's readers of diff ``run`` in this process; how many pairs were closed."""
    closing = []
    with _readers_lock:
        for ident in list(_readers):
            pair = _readers[ident].pop(run, None)
            if pair is not None:
                closing.append(pair)
            if not _readers[ident]:
                del _readers[ident]
    for pair in closing:
        for r in pair:
            r.close()
    return len(closing)


def process_tile(job: TileJob) -> TileResult:
    """Read the tile with its halo from both acquisitions, apply the change model, keep the core."""
    from sohae_watch.stream import window_scene

    rb, ra = _thread_readers(job)
    t = job.tile
    window = (t.read_row, t.read_col, t.read_height, t.read_width)
    b = window_scene(rb, job.grid, job.area, job.before, *window)
    a = window_scene(ra, job.grid, job.area, job.after, *window)
    res = apply_change_model(job.model, b, a, core=t.core)  # only the core comes back
    r0, c0 = t.row - t.read_row, t.col - t.read_col
    b_core, a_core = b.crop(r0, c0, t.height, t.width), a.crop(r0, c0, t.height, t.width)
    areas = change_areas(res, b_core, a_core, window=True)
    f = job.thumb_step
    thumb = None
    if f > 0:
        dr, dc = overview_lattice(t, f)
        thumb = a_core.data[:, dr::f, dc::f].copy()
    return TileResult(t, res.mask, res.magnitude.astype(np.float32, copy=False), areas, thumb)


def process_band(
    job: BandJob, sink: Sink | None = None, reads: GridCache | None = None
) -> BandResult:
    """Read the band's rows once, top to bottom, and run pass 1 of the change stage on them;
    what it computes goes to ``sink`` as it comes (default: into the result); ``reads``: the
    run's whole-grid reads (in this process)."""
    from sohae_watch.change_passes import Layout, band_pass
    from sohae_watch.stream import window_scene

    rb, ra = _thread_readers(job, reads)
    width = job.grid.width

    def read(r0: int, r1: int) -> tuple[Scene, Scene]:
        b = window_scene(rb, job.grid, job.area, job.before, r0, 0, r1 - r0, width)
        a = window_scene(ra, job.grid, job.area, job.after, r0, 0, r1 - r0, width)
        return b, a

    layout = Layout.of(job.model, job.grid)
    return band_pass(job.model, layout, read, job.band, job.thumb_step, sink)


def new_run_id() -> str:
    """A key for one diff run's readers."""
    return uuid.uuid4().hex


# --- executors ------------------------------------------------------------------------------------


class Executor(Protocol):
    """Runs a top-level function over items, yielding results as they complete (any order)."""

    @property
    def workers(self) -> int: ...

    def map_unordered(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]: ...

    def release(self, run: str) -> None:
        """Free what the workers keep for diff ``run`` (open readers)."""


class ThreadExecutor:
    """Threads of this process: GDAL and numpy release the GIL for most of a tile's work."""

    def __init__(self, workers: int) -> None:
        self._workers = max(1, workers)

    @property
    def workers(self) -> int:
        return self._workers

    def map_unordered(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        todo = iter(items)
        pool = ThreadPoolExecutor(max_workers=self._workers)
        try:
            running = {
                pool.submit(fn, x) for x in islice(todo, IN_FLIGHT_PER_WORKER * self._workers)
            }
            while running:
                done, running = wait(running, return_when=FIRST_COMPLETED)
                for fut in done:
                    running.update(pool.submit(fn, x) for x in islice(todo, 1))
                    yield fut.result()
        finally:
            # stopped early (an error, Ctrl-C): the items not started are dropped, only the
            # running ones are waited for (a diff's band is a quarter of the scene)
            pool.shutdown(wait=True, cancel_futures=True)

    def release(self, run: str) -> None:
        release_readers(run)


class DaskExecutor:
    """The workers of a Dask cluster: tasks submitted in a bounded window, results as they come."""

    def __init__(self, client: Client) -> None:
        self.client = client

    @property
    def workers(self) -> int:
        return max(1, sum(self.client.nthreads().values()))

    def map_unordered(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        from distributed import as_completed

        todo = iter(items)
        first = list(islice(todo, IN_FLIGHT_PER_WORKER * self.workers))
        if not first:
            return
        running = as_completed(self.client.map(fn, first, pure=False))
        for fut in running:
            for x in islice(todo, 1):
                running.add(self.client.submit(fn, x, pure=False))
            result: R = fut.result()
            fut.release()
            yield result

    def release(self, run: str) -> None:
        try:
            self.client.run(release_readers, run)
        except Exception as exc:  # a worker gone: its readers went with it
            log.debug("releasing readers of run %s: %s", run, exc)


# --- a cluster for the run --------------------------------------------------------------------------


@contextmanager
def dask_client(
    scheduler: str | None = None, workers: int | None = None, *, log_level: int = logging.WARNING
) -> Iterator[Client]:
    """A client of the cluster at ``scheduler``, or of a ``LocalCluster`` of ``workers`` processes
    on loopback started for the run and closed after it."""
    if (scheduler is None) == (workers is None):
        raise ValueError("give exactly one of scheduler or workers")
    from distributed import Client, LocalCluster

    quiet = max(log_level, logging.ERROR) if log_level > logging.INFO else log_level
    logging.getLogger("distributed").setLevel(quiet)
    if scheduler is not None:
        try:
            client = Client(scheduler, timeout=CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError, ValueError) as exc:
            raise InputError(
                f"{scheduler}: cannot connect to the Dask scheduler ({exc}); start it "
                "(`dask scheduler`) or give its tcp://host:port with --scheduler"
            ) from exc
        try:
            client.run(set_log_level, log_level)
            yield client
        finally:
            client.close()
        return
    assert workers is not None
    with (
        _blas_as_here(),
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            # no dashboard; its bare HTTP server on a free loopback port, not :8787
            scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"},
            silence_logs=quiet,
        ) as cluster,
        Client(cluster) as client,
    ):
        client.run(set_log_level, log_level)
        yield client


@contextmanager
def _blas_as_here() -> Iterator[None]:
    """Local workers with this process's BLAS threading, not Dask's one thread per worker.

    OpenBLAS on one thread sums co-registration's matrix products in another order than on
    several, which moves shifts by ~1e-7 px and edge magnitudes by ~1e-3: a local cluster would
    not give the serial run's outputs. BLAS is a small part of the work here, so the extra
    threads cost little.
    """
    import os

    import dask

    key = "distributed.nanny.pre-spawn-environ"
    environ = {k: v for k, v in dask.config.get(key, {}).items() if k not in BLAS_THREAD_VARS}
    environ.update({k: os.environ[k] for k in BLAS_THREAD_VARS if k in os.environ})
    with dask.config.set({key: environ}):
        yield


def set_log_level(level: int) -> None:
    """sohae-watch's log level in a worker as in the client (so -q is quiet there too); run on
    each worker when the client connects."""
    root = logging.getLogger("sohae_watch")
    root.setLevel(level)
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        root.handlers[:] = [handler]
        root.propagate = False


# --- many sites -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SiteRun:
    """One site's watch, as ``run_watch`` takes it (paths resolved by the caller)."""

    site: Site
    imagery: Path
    db_path: Path
    out_dir: Path
    nodata: float | None = None
    lock_wait: float = 0.0


@dataclass
class SiteOutcome:
    """What one site's watch did: its summary, or why it did nothing."""

    run: SiteRun
    summary: WatchSummary | None = None
    error: str | None = None
    exit_code: int = 0  # of the error: 2 bad input, 1 other; 0 with busy or success
    busy: bool = False  # another run held the site's lock
    details: str = field(default="", repr=False)  # the traceback of an unexpected failure


def watch_site(run: SiteRun) -> SiteOutcome:
    """One site's ``run_watch``; failures come back as the outcome, so other sites go on."""
    from sohae_watch.state import LockBusy
    from sohae_watch.watch import run_watch

    try:
        summary = run_watch(
            run.site,
            run.imagery,
            run.db_path,
            run.out_dir,
            nodata=run.nodata,
            lock_wait=run.lock_wait,
        )
    except LockBusy as exc:
        return SiteOutcome(run, error=str(exc), busy=True)
    except SohaeError as exc:
        return SiteOutcome(run, error=str(exc), exit_code=exc.exit_code)
    except MemoryError:
        return SiteOutcome(run, error="out of memory", exit_code=1)
    except Exception as exc:
        return SiteOutcome(
            run,
            error=f"unexpected failure: {type(exc).__name__}: {exc}",
            exit_code=1,
            details=traceback.format_exc(),
        )
    return SiteOutcome(run, summary=summary)


def watch_sites(
    runs: Sequence[SiteRun],
    executor: Executor | None = None,
    *,
    progress: Progress | None = None,
) -> list[SiteOutcome]:
    """Each site's watch, one after another here, or one task per site on ``executor``;
    outcomes in the order of ``runs``."""
    indexed = list(enumerate(runs))
    outcomes: dict[int, SiteOutcome] = {}
    results: Iterator[tuple[int, SiteOutcome]]
    if executor is None:
        results = ((i, watch_site(r)) for i, r in indexed)
    else:
        results = executor.map_unordered(_watch_indexed, indexed)
    for i, outcome in results:
        outcomes[i] = outcome
        if progress is not None:
            progress(len(outcomes), len(runs))
    return [outcomes[i] for i in range(len(runs))]


def _watch_indexed(item: tuple[int, SiteRun]) -> tuple[int, SiteOutcome]:
    return item[0], watch_site(item[1])
