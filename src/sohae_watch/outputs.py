"""Writing files atomically: every output goes to a temporary sibling, then is renamed into place."""

from __future__ import annotations

import contextlib
import errno
import math
import os
import secrets
import shutil
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.windows import Window

from sohae_watch import __version__
from sohae_watch.errors import DeviceFullError, InputError, SohaeError
from sohae_watch.grid import Grid
from sohae_watch.stream import Tile

BLOCK = 256  # tile side of the output rasters, pixels


@contextlib.contextmanager
def staged_dir(out_dir: Path) -> Iterator[Path]:
    """A temporary folder beside ``out_dir``; on success its files replace those in ``out_dir``.

    On any failure the temporary folder is removed and ``out_dir`` is left as it was (folders
    created for this run are removed again).
    """
    created = not out_dir.exists()
    made = out_dir  # the outermost folder this run makes (parents of a new nested --out too)
    while created and not made.parent.exists() and made.parent != made:
        made = made.parent
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(
            f"{out_dir}: cannot create the output folder ({exc.strerror}); choose another --out"
        ) from exc
    if not out_dir.is_dir():
        raise InputError(f"{out_dir}: exists and is not a folder; choose another --out")
    try:
        tmp = Path(tempfile.mkdtemp(prefix=".sohae-", dir=out_dir))
    except OSError as exc:
        if created:
            shutil.rmtree(made, ignore_errors=True)
        if _device_full(out_dir, exc):
            raise DeviceFullError(_full_message(out_dir)) from exc
        raise InputError(
            f"{out_dir}: cannot write in the output folder ({exc.strerror}); choose another --out"
        ) from exc
    try:
        yield tmp
        _commit(tmp, out_dir)
    except BaseException as exc:
        # before the partial outputs are removed (which frees the space)
        full = isinstance(exc, DeviceFullError) or (
            isinstance(exc, Exception)
            and not isinstance(exc, SohaeError)
            and _device_full(tmp, exc)
        )
        shutil.rmtree(tmp, ignore_errors=True)
        if created:
            shutil.rmtree(made, ignore_errors=True)
        if full:
            raise DeviceFullError(_full_message(out_dir)) from exc
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _commit(tmp: Path, out_dir: Path) -> None:
    """Move every file of ``tmp`` into ``out_dir``, replacing those of the same name: all of them
    or, when a move fails, none (the files already moved are put back as they were). A folder
    standing where an output goes is refused before anything moves."""
    files = sorted(tmp.iterdir())
    for f in files:
        target = out_dir / f.name
        if target.is_dir() and not target.is_symlink():
            raise InputError(
                f"{target}: a folder stands where this output goes; move it away or choose "
                "another --out"
            )
    kept = Path(tempfile.mkdtemp(prefix=".previous-", dir=tmp))
    moved: list[tuple[Path, bool]] = []  # (target, whether it had a previous file)
    try:
        for f in files:
            target = out_dir / f.name
            had = os.path.lexists(target)
            if had:
                try:  # a second name for the previous file: the replacement stays one rename
                    os.link(target, kept / f.name, follow_symlinks=False)
                except OSError:  # a file system without hard links
                    os.replace(target, kept / f.name)
            moved.append((target, had))
            os.replace(f, target)
    except BaseException:
        for target, had in reversed(moved):
            with contextlib.suppress(OSError):
                if had:
                    os.replace(kept / target.name, target)
                elif os.path.lexists(target):
                    target.unlink()
        raise


def check_writable(path: Path, option: str) -> None:
    """Refuse, before any work, a path to write (a folder, or a file in one; ``option`` names
    it) where nothing can be made: a file stands where a folder goes, or the nearest existing
    folder is read-only. Nothing is created."""
    folder = path if path.is_dir() else path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise InputError(f"{path}: {folder} is a file, not a folder; give another {option}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"{path}: {folder} cannot be written in; give another {option}")


def outside_imagery(out_dir: Path, folders: list[Path]) -> None:
    """Refuse an output folder that is, or lies in, an imagery folder read from (a tile folder or
    a catalog, read recursively): the next run would read the output rasters as imagery."""
    out = out_dir.resolve()
    for folder in folders:
        f = folder.resolve()
        if out == f or f in out.parents:
            raise InputError(
                f"{out_dir}: the output folder lies in the imagery folder {folder}, whose rasters "
                "are read as imagery; choose an --out outside it"
            )


FULL_BYTES = 1 << 20  # free space below which a device where a write failed counts as full


def _device_full(path: Path, exc: BaseException) -> bool:
    """Whether ``exc``, raised while writing under ``path``, comes from a full device: ENOSPC in
    its chain, or (GDAL's errors do not carry the errno) less than ``FULL_BYTES`` left there."""
    e: BaseException | None = exc
    while e is not None:
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            return True
        e = e.__cause__ or e.__context__
    try:
        return shutil.disk_usage(path).free < FULL_BYTES
    except OSError:
        return False


def _free_bytes(path: Path) -> int:
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return 1 << 62


def _full_message(path: Path, fix: str = "free space or choose another --out") -> str:
    return f"{path}: no space left on the device (nothing was written there); {fix}"


WRITE_ELSEWHERE = "free space on that device or write the file elsewhere"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary sibling and a rename. The file gets the
    permissions any new file gets (the umask's), not a temporary file's owner-only ones: a
    report folder served or shared keeps every file readable alike."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}"
    made = False
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        made = True
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException as exc:
        if made:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            raise DeviceFullError(_full_message(path, WRITE_ELSEWHERE)) from exc
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` as :func:`atomic_write_bytes` does."""
    atomic_write_bytes(path, text.encode("utf-8"))


def geotiff_profile(grid: Grid, dtype: str, nodata: float | None, count: int = 1) -> dict[str, Any]:
    """Tiled, compressed GeoTIFF creation options for an output on ``grid``."""
    tiled = grid.width >= 256 and grid.height >= 256
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "width": grid.width,
        "height": grid.height,
        "count": count,
        "dtype": dtype,
        "crs": grid.crs,
        "transform": grid.transform,
        "nodata": nodata,
        "compress": "deflate",
        # no predictor for the float score: at 0.5 m (a score on 1 m blocks, each repeated over
        # its 2 x 2 pixels) the floating-point predictor made the file 10 % larger and its writing
        # 1.6x slower; at 10 m it saves 7 % at 1.4x the time (measured on the benchmark, a
        # 4096^2 pair, LEVIR, OSCD)
        "predictor": 1 if dtype.startswith("float") else 2,
        # a float score is mostly noise to DEFLATE: level 1 packs it as small as level 6 at about
        # half the time; both cores compress blocks
        "zlevel": 1 if dtype.startswith("float") else 6,
        "num_threads": "ALL_CPUS",
        "BIGTIFF": "IF_SAFER",
    }
    if tiled:
        profile.update(tiled=True, blockxsize=BLOCK, blockysize=BLOCK)
    if dtype == "uint8":
        profile["predictor"] = 1
    return profile


OVERVIEW_SIDE = 900  # longest side of the overview map, pixels
# Rewriting a finished raster as a Cloud-Optimized GeoTIFF (overviews, header first) costs a read
# and a write of it. The mask (uint8, mostly one value) costs ~3 s at 10980 x 10980 on 2 cores;
# the float score costs ~45 s there (about 5x reading the inputs), so it becomes a COG only up to
# this size and stays a plain tiled GeoTIFF above it.
COG_MAX_FLOAT_PIXELS = 16_000_000


def cog_copy(path: Path, resampling: str) -> Path:
    """A Cloud-Optimized copy (overviews, header first) of the GeoTIFF at ``path``, written to a
    hidden sibling whose path is returned: the caller renames it over ``path`` (no reader of
    ``path`` is disturbed until then)."""
    with rasterio.open(path) as src:
        opts: dict[str, Any] = {
            "driver": "COG",
            "compress": "DEFLATE",
            "predictor": "YES",
            "blocksize": 256,
            "resampling": resampling,
            "num_threads": "ALL_CPUS",
            "bigtiff": "IF_SAFER",
        }
        if src.dtypes[0].startswith("float"):
            opts.update(level=1, predictor="NO")  # as geotiff_profile
    tmp = path.with_name(f".{path.name}.cog")
    try:
        rasterio.shutil.copy(str(path), str(tmp), **opts)
    except BaseException as exc:
        # GDAL's errors carry no errno, and the COG driver has removed its temporary file by
        # now: the device is full when less is free than the copy needs (a temporary file with
        # the overviews, then the copy: about twice its source)
        full = isinstance(exc, Exception) and (
            _device_full(path.parent, exc) or _free_bytes(path.parent) < 2 * path.stat().st_size
        )
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if full:
            raise DeviceFullError(_full_message(path.parent)) from exc
        raise
    return tmp


MASK_DESCRIPTION = "change: 0 no change, 1 change, 255 not observable"
MAGNITUDE_DESCRIPTION = "change score (change where above report.json change.threshold)"


def overview_lattice(tile: Tile, factor: int) -> tuple[int, int]:
    """Row and column offsets, in ``tile``, of its first pixel on the overview's lattice (every
    ``factor``-th input pixel from the grid's corner)."""
    return (-tile.row) % factor, (-tile.col) % factor


class TileOutputs:
    """The two output rasters, written tile by tile, plus the running counts and the overview."""

    def __init__(
        self, workdir: Path, grid: Grid, bands: int = 0, tags: dict[str, str] | None = None
    ) -> None:
        """``tags``: metadata both rasters carry (the dates compared, say)."""
        self.paths = {
            "change_mask": workdir / "change_mask.tif",
            "change_magnitude": workdir / "change_magnitude.tif",
        }
        self.mask = rasterio.open(
            self.paths["change_mask"], "w", **geotiff_profile(grid, "uint8", 255)
        )
        self.magnitude = rasterio.open(
            self.paths["change_magnitude"], "w", **geotiff_profile(grid, "float32", float("nan"))
        )
        # what a GIS shows for the band (gdalinfo, QGIS's layer properties), not a bare "Band 1"
        self.mask.set_band_description(1, MASK_DESCRIPTION)
        self.magnitude.set_band_description(1, MAGNITUDE_DESCRIPTION)
        for ds in (self.mask, self.magnitude):
            ds.update_tags(TIFFTAG_SOFTWARE=f"sohae-watch {__version__}", **(tags or {}))
        self.lock = threading.Lock()  # the mask, counts and overview
        self.magnitude_lock = threading.Lock()
        self.counts = {"changed": 0, "observable": 0, "pixels": grid.width * grid.height}
        self.factor = max(1, int(math.ceil(max(grid.shape) / OVERVIEW_SIDE)))
        oh, ow = -(-grid.height // self.factor), -(-grid.width // self.factor)
        self.overview = np.full((oh, ow), 255, np.uint8)
        self.marked = np.zeros((oh, ow), bool)  # overview pixels a tile found change in
        # AFTER's bands at the overview's scale, filled from the tiles (no second read of AFTER)
        self.thumb = np.full((bands, oh, ow), np.nan, np.float32)

    def write(
        self,
        tile: Tile,
        mask: np.ndarray,
        magnitude: np.ndarray,
        thumb: np.ndarray | None = None,
    ) -> None:
        """Write a tile (whole blocks of the rasters, else see :class:`RowWriter`) and note it."""
        w = Window(tile.col, tile.row, tile.width, tile.height)
        with self.lock:
            self.mask.write(mask, 1, window=w)
        with self.magnitude_lock:
            self.magnitude.write(magnitude.astype(np.float32), 1, window=w)
        self.note(tile, mask, thumb)

    def write_mask_rows(self, row: int, mask: np.ndarray) -> None:
        """Whole rows of the mask (what :meth:`note` does not: see :class:`RowWriter`)."""
        with self.lock:
            self.mask.write(mask, 1, window=Window(0, row, mask.shape[1], mask.shape[0]))

    def write_magnitude_rows(self, row: int, magnitude: np.ndarray) -> None:
        """Whole rows of the score raster; safe beside :meth:`write_mask_rows` in another thread
        (its own dataset and lock)."""
        with self.magnitude_lock:
            w = Window(0, row, magnitude.shape[1], magnitude.shape[0])
            self.magnitude.write(magnitude.astype(np.float32, copy=False), 1, window=w)

    def note(self, tile: Tile, mask: np.ndarray, thumb: np.ndarray | None = None) -> None:
        """The counts, the overview and the AFTER thumbnail of a tile (without writing it). Safe
        from several threads: only the updates hold the lock.

        Overview pixel (i, j) is the mask at input pixel (i f, j f), or changed (1) where any of
        its f x f pixels is, in whichever tiles they lie; ``thumb``: AFTER's bands at the tile's
        pixels on that lattice (:func:`overview_lattice`)."""
        f = self.factor
        changed = mask == 1
        n_changed = int(np.count_nonzero(changed))
        n_observable = int(np.count_nonzero(mask != 255))
        dr, dc = overview_lattice(tile, f)
        small = mask[dr::f, dc::f]
        r0, c0 = (tile.row + dr) // f, (tile.col + dc) // f
        marks = None
        if n_changed:
            # rows with change first: np.nonzero over a whole 1024^2 tile cost 3 ms, ten times
            # more than over the few rows that have change
            rows = np.flatnonzero(changed.any(axis=1))
            rr, cc = np.nonzero(changed[rows])
            marks = ((rows[rr] + tile.row) // f, (cc + tile.col) // f)
        with self.lock:
            self.counts["changed"] += n_changed
            self.counts["observable"] += n_observable
            view = (slice(r0, r0 + small.shape[0]), slice(c0, c0 + small.shape[1]))
            np.copyto(self.overview[view], small, where=~self.marked[view])
            if marks is not None:
                self.overview[marks] = 1
                self.marked[marks] = True
            if thumb is not None and self.thumb.shape[0] == thumb.shape[0]:
                self.thumb[:, r0 : r0 + thumb.shape[1], c0 : c0 + thumb.shape[2]] = thumb

    def close(self) -> None:
        """Close both rasters (safe to call twice)."""
        self.mask.close()
        self.magnitude.close()

    def cog_copies(self) -> list[tuple[Path, Path]]:
        """Cloud-Optimized copies (overviews for viewers) of the mask always, of the float score
        up to ``COG_MAX_FLOAT_PIXELS``, each as (copy, raster it replaces), not renamed yet: the
        rasters can still be read meanwhile (see :meth:`commit`)."""
        todo = [("change_mask", "NEAREST")]
        if self.counts["pixels"] <= COG_MAX_FLOAT_PIXELS:
            todo.append(("change_magnitude", "AVERAGE"))
        done: list[tuple[Path, Path]] = []
        try:
            for name, resampling in todo:
                done.append((cog_copy(self.paths[name], resampling), self.paths[name]))
        except BaseException:
            self.discard(done)
            raise
        return done

    @staticmethod
    def commit(copies: list[tuple[Path, Path]]) -> None:
        """Rename :meth:`cog_copies`' copies over their rasters (once nothing reads them)."""
        try:
            for tmp, path in copies:
                os.replace(tmp, path)
        except BaseException:
            TileOutputs.discard(copies)
            raise

    @staticmethod
    def discard(copies: list[tuple[Path, Path]]) -> None:
        for tmp, _ in copies:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


class RowWriter:
    """Tiles of :func:`~sohae_watch.stream.tiles` (any order, row-major mostly) written to
    :class:`TileOutputs` as whole rows of the rasters' blocks: a compressed GeoTIFF block
    written in parts is compressed (and stored) more than once. Holds one row of tiles plus a
    partial block row, and the tiles that arrive before their row's turn.

    The score's rows (float32, the costly ones to compress) are written by a thread of the
    writer's own, one block row in flight, while the caller goes on: :meth:`close` waits for
    them (and says whether every row came), :meth:`shutdown` only waits. The score has two
    buffers that take turns: the rows in flight are written from one while tiles fill the
    other (no copy of them, and no fresh memory for each)."""

    def __init__(
        self, outputs: TileOutputs, grid: Grid, tile_rows: int, block: int = BLOCK
    ) -> None:
        self.outputs = outputs
        self.rows, self.cols = grid.height, grid.width
        self.block = block
        self.cap = tile_rows + block
        self.mask = np.empty((self.cap, self.cols), np.uint8)
        self.magnitude = np.empty((self.cap, self.cols), np.float32)
        self._spare = np.empty_like(self.magnitude)  # the other buffer (see the class)
        self.filled = np.zeros(self.cap, np.int64)  # columns filled, per buffered row
        self.row = 0  # first row not written yet (the buffer's first row)
        self.pending: list[tuple[Tile, np.ndarray, np.ndarray]] = []
        self._writer = ThreadPoolExecutor(1)
        self._written: Future[None] | None = None

    def put(self, tile: Tile, mask: np.ndarray, magnitude: np.ndarray) -> None:
        self.pending.append((tile, mask, magnitude))
        while True:
            end = self.row + self.cap
            fits = [p for p in self.pending if p[0].row + p[0].height <= end]
            if not fits:
                return
            self.pending = [p for p in self.pending if p[0].row + p[0].height > end]
            for t, m, mag in fits:
                r = t.row - self.row
                self.mask[r : r + t.height, t.col : t.col + t.width] = m
                self.magnitude[r : r + t.height, t.col : t.col + t.width] = mag
                self.filled[r : r + t.height] += t.width
            if not self._flush():
                return

    def _flush(self) -> bool:
        full = (
            int(np.argmin(self.filled == self.cols))
            if (self.filled != self.cols).any()
            else self.cap
        )
        end = self.row + full
        if end < self.rows:
            full -= full % self.block
        else:
            full = self.rows - self.row
        if full <= 0:
            return False
        self.outputs.write_mask_rows(self.row, self.mask[:full])
        self._wait()  # the spare buffer's rows are written: it takes the rows after these
        rest = self.cap - full
        self._spare[:rest] = self.magnitude[full:]
        rows = self.magnitude[:full]
        self.magnitude, self._spare = self._spare, self.magnitude
        self._written = self._writer.submit(self.outputs.write_magnitude_rows, self.row, rows)
        self.mask[:rest] = self.mask[full:]
        self.filled[:rest] = self.filled[full:]
        self.filled[rest:] = 0
        self.row += full
        return True

    def _wait(self) -> None:
        if self._written is not None:
            written, self._written = self._written, None
            written.result()

    def shutdown(self, raise_errors: bool = True) -> None:
        """Wait for the score rows in flight, raising what writing them raised (unless not
        ``raise_errors``: when the caller is already handling an error of its own)."""
        try:
            self._wait()
        except Exception:
            if raise_errors:
                raise
        finally:
            self._writer.shutdown()

    def close(self) -> None:
        self.shutdown()
        if self.pending or self.row < self.rows:
            raise ValueError(
                f"rows {self.row}: of {self.rows} written, {len(self.pending)} tiles pending"
            )
