"""Co-register raster files window by window (bounded memory) and write the corrected target.

The reference grid is the native grid of REFERENCE. Tie-point windows are read through
:class:`sohae_watch.reader.GridReader` (only the windows measured are decoded); the fitted model is
applied when the target is read from its source files (one resampling), block by block.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from pyproj import Transformer
from scipy import ndimage as ndi

from sohae_watch.coregister import MAX_POINTS, CoregResult, Mode, coregister_readers
from sohae_watch.errors import InputError
from sohae_watch.grid import Grid
from sohae_watch.ingest import UNDATED, Acquisition, ResamplingName, open_acquisition
from sohae_watch.parallel import default_workers
from sohae_watch.reader import GridReader, aligned_offset, block_rows
from sohae_watch.scene import VISIBLE

#: output block size (px) and GDAL block cache of the file path
BLOCK = 512
CACHE_BYTES = 256  # in effect no block cache (bytes, see pipeline.GDAL_CACHE_BYTES)
#: DEFLATE level of the corrected target: 1 compresses noisy imagery about as well as the
#: default 6 (within 3 %) in about 60 % of the time; any DEFLATE reader reads it
ZLEVEL = 1
#: pixels per strip read (bounds memory; few large reads suit JPEG2000, which decodes per call)
STRIP_PIXELS = 8_000_000
#: source rows/columns read beyond the spline's support (prefilter boundary; its impulse
#: response decays as 0.268**k, so 6 px leave an error below 1e-4 of the texture's amplitude)
_SPLINE_MARGIN = 6


def native_grid(acq: Acquisition) -> Grid:
    """The acquisition's own grid: its single raster's, else its bounds at its finest resolution."""
    if len(acq.sources) == 1:
        return acq.sources[0].grid
    crs = acq.sources[0].crs
    return Grid.from_bounds(crs, acq.bounds_in(crs), acq.resolution)


class StripReader:
    """A :data:`WindowReader` over a GridReader: the mean of the visible bands, served from
    full-width bands of rows of the grid (one cached).

    Told the window rows to come (:meth:`plan`, called by the measuring loop), it reads only
    those rows, one band per row of windows, and decodes the next band in a thread while the
    current one is measured (GDAL and numpy release the GIL). Without a plan, or for a window
    outside it, it reads a strip of ``rows`` rows around the window.
    """

    def __init__(self, reader: GridReader, pad: int = 64) -> None:
        # the visible bands (GridReader still takes a nodata file's mask from all of them)
        reader.roles = tuple(r for r in reader.roles if r in VISIBLE) or tuple(reader.roles)
        self.reader = reader
        self.pad = pad
        self.rows = max(512, STRIP_PIXELS // max(reader.grid.width, 1))
        self._r0 = self._r1 = 0
        self._data = np.empty((0, reader.grid.width), np.float32)
        self._valid = np.empty((0, reader.grid.width), bool)
        self._bands: list[tuple[int, int]] = []
        self._next = 0  # index of the next planned band not yet requested
        self._pool: ThreadPoolExecutor | None = None
        self._ahead: dict[int, Future[tuple[np.ndarray, np.ndarray]]] = {}
        self.reads = 0

    def plan(self, rows: list[int], size: int) -> None:
        """The windows to come are ``size`` rows tall and start at ``rows`` (in order)."""
        self._drain()
        g = self.reader.grid
        bands: list[tuple[int, int]] = []
        for r in rows:
            a0, a1 = max(r, 0), min(r + size, g.height)
            if a0 >= a1:
                continue
            # windows of one row (their rows differ by a few pixels of model offset) and
            # adjacent rows of windows share a band, up to ``rows`` rows
            if (
                bands
                and bands[-1][0] - size // 2 <= a0 <= bands[-1][1] + size // 2
                and max(bands[-1][1], a1) - min(bands[-1][0], a0) <= max(self.rows, size * 2)
            ):
                bands[-1] = (min(bands[-1][0], a0), max(bands[-1][1], a1))
            else:
                bands.append((a0, a1))
        self._bands = bands
        self._next = 0
        if len(bands) > 1:
            self._pool = self._pool or ThreadPoolExecutor(1)
            self._prefetch(0)

    def _prefetch(self, i: int) -> None:
        # keep two planned bands in flight (a band is small: one row of windows)
        assert self._pool is not None
        for k in range(i, min(i + 2, len(self._bands))):
            if k not in self._ahead:
                self._ahead[k] = self._pool.submit(self._fetch, *self._bands[k])

    def _fetch(self, r0: int, r1: int) -> tuple[np.ndarray, np.ndarray]:
        g = self.reader.grid
        data, valid = self.reader.read(r0, 0, r1 - r0, g.width)  # NaN where invalid
        img = data[0] if data.shape[0] == 1 else np.asarray(np.mean(data, axis=0, dtype=np.float32))
        return img, valid

    def _drain(self) -> None:
        for f in self._ahead.values():
            f.result()  # one reader user at a time
        self._ahead.clear()

    def _load(self, row: int, height: int) -> None:
        g = self.reader.grid
        self._data = np.empty((0, g.width), np.float32)  # release before reading the next
        for i in range(self._next, len(self._bands)):
            b0, b1 = self._bands[i]
            if b0 <= row and row + height <= b1:
                for k in [k for k in self._ahead if k < i]:
                    self._ahead.pop(k).result()
                fut = self._ahead.pop(i, None)
                img, valid = fut.result() if fut is not None else self._fetch(b0, b1)
                self._next = i + 1
                if self._pool is not None:
                    self._prefetch(i + 1)
                break
        else:
            self._drain()
            b0 = max(0, row - self.pad)
            b1 = min(g.height, max(b0 + self.rows, row + height + self.pad))
            img, valid = self._fetch(b0, b1)
        self._data, self._valid = img, valid
        self._r0, self._r1 = b0, b0 + img.shape[0]
        self.reads += 1

    def close(self) -> None:
        """Wait for reads ahead and stop their thread (the GridReader stays open)."""
        self._drain()
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        self._data = np.empty((0, self.reader.grid.width), np.float32)

    def __call__(
        self, row: int, col: int, height: int, width: int
    ) -> tuple[np.ndarray, np.ndarray]:
        g = self.reader.grid
        a0, a1 = max(row, 0), min(row + height, g.height)
        b0, b1 = max(col, 0), min(col + width, g.width)
        if a0 >= a1 or b0 >= b1:
            return np.full((height, width), np.nan, np.float32), np.zeros((height, width), bool)
        if a0 < self._r0 or a1 > self._r1:
            self._load(a0, a1 - a0)
        src = (slice(a0 - self._r0, a1 - self._r0), slice(b0, b1))
        if (a0, a1, b0, b1) == (row, row + height, col, col + width):
            return self._data[src], self._valid[src]  # views: the caller copies
        out = np.full((height, width), np.nan, np.float32)
        ok = np.zeros((height, width), bool)
        dst = (slice(a0 - row, a1 - row), slice(b0 - col, b1 - col))
        out[dst] = self._data[src]
        ok[dst] = self._valid[src]
        return out, ok


def _check_overlap(tgt: Acquisition, grid: Grid, target: Path) -> None:
    a = tgt.bounds_in(grid.crs)
    b = grid.bounds
    if not (a[0] < b[2] and a[2] > b[0] and a[1] < b[3] and a[3] > b[1]):
        raise InputError(f"{target}: does not overlap the reference; give a pair that overlaps")


@contextmanager
def _gdal_env() -> Iterator[None]:
    with rasterio.Env(GDAL_CACHEMAX=CACHE_BYTES):
        yield


def measure_files(
    reference: Path,
    target: Path,
    *,
    nodata: float | None = None,
    mode: Mode = "auto",
    max_points: int | None = None,
) -> tuple[CoregResult, Grid, Acquisition]:
    """Co-register TARGET to REFERENCE's native grid without writing anything.

    Returns the result, the reference grid and the target acquisition (for :func:`write_corrected`).
    """
    ref_acq = open_acquisition(reference, nodata=nodata, dated=False)
    tgt_acq = open_acquisition(target, nodata=nodata, dated=False)
    grid = native_grid(ref_acq)
    _check_overlap(tgt_acq, grid, Path(target))
    block = block_rows(ref_acq, grid)
    with _gdal_env(), GridReader(ref_acq, grid) as rr, GridReader(tgt_acq, grid) as tr:
        strips = StripReader(rr), StripReader(tr)
        try:
            result = coregister_readers(
                strips[0],
                strips[1],
                grid.shape,
                mode=mode,
                max_points=MAX_POINTS if max_points is None else max_points,
                row_block=block,
                threads=default_workers(),
            )
        finally:
            for s in strips:
                s.close()
    return result, grid, tgt_acq


def _bspline_taps(t: float) -> np.ndarray:
    """Cubic B-spline weights of samples floor-1 .. floor+2 at fraction ``t``."""
    s = 1.0 - t
    return np.array(
        [s**3 / 6, (3 * t**3 - 6 * t**2 + 4) / 6, (-3 * t**3 + 3 * t**2 + 3 * t + 1) / 6, t**3 / 6],
        dtype=np.float32,
    )


def _fill_invalid(data: np.ndarray, valid: np.ndarray) -> np.ndarray:
    if valid.all():
        return data
    for b in range(data.shape[0]):
        # the fill is the mean of a sparse sample (NaN where invalid)
        sample = data[b, ::7, ::7]
        if not np.isfinite(sample).any():
            sample = data[b] if valid.any() else np.zeros(1, np.float32)
        fill = float(np.nanmean(sample))
        np.copyto(data[b], np.float32(fill), where=~valid)
    return data


def _shift_strip(
    reader: GridReader | _Offset, model: Affine, row: int, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """A translation ``model``: separable cubic B-spline (prefilter, then 4 taps per axis)."""
    return _shift_block(_read_for_shift(reader, model, row, height, width), model, height, width)


def _read_for_shift(
    reader: GridReader | _Offset, model: Affine, row: int, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """The source pixels :func:`_shift_block` needs for rows ``[row, row + height)``."""
    m = _SPLINE_MARGIN
    ix, iy = math.floor(model.c), math.floor(model.f)
    return reader.read(row + iy - 1 - m, ix - 1 - m, height + 3 + 2 * m, width + 3 + 2 * m)


@lru_cache(maxsize=8)
def _shift_kernel(t: float) -> np.ndarray:
    """One FIR equal to cubic B-spline interpolation at fraction ``t`` along one axis: the
    prefilter's impulse response (cut at +-``_SPLINE_MARGIN``) convolved with the 4 B-spline
    taps, ``2 * _SPLINE_MARGIN + 4`` taps. Output sample ``x`` is ``sum_j k[j] * in[x + j]``
    for a block that starts ``_SPLINE_MARGIN + 1`` samples before ``floor`` of the first
    output's position (as :func:`_read_for_shift` reads)."""
    m = _SPLINE_MARGIN
    delta = np.zeros(8 * m + 1)
    delta[4 * m] = 1.0
    pre = ndi.spline_filter1d(delta, order=3, mode="mirror")[3 * m : 5 * m + 1]  # 2m+1 taps
    pre /= pre.sum()  # the cut tails' DC gain (3e-5) back: flat areas keep their level exactly
    return np.convolve(pre, _bspline_taps(t).astype(np.float64))  # 2m+4 taps


def _shift_block(
    block: tuple[np.ndarray, np.ndarray], model: Affine, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Cubic B-spline translation of a block read by :func:`_read_for_shift`, axis by axis,
    each axis one FIR pass (:func:`_shift_kernel`); float32 throughout."""
    data, valid = block
    m = _SPLINE_MARGIN
    ix, iy = math.floor(model.c), math.floor(model.f)
    kx, ky = _shift_kernel(model.c - ix), _shift_kernel(model.f - iy)
    data = _fill_invalid(data, valid)
    out = np.empty((data.shape[0], height, width), np.float32)
    n = len(kx)  # 2m + 4 taps; correlate1d centres them on tap n // 2 = m + 2
    for b in range(data.shape[0]):
        # the block starts 1 + m px before the first tap centre of output 0: output x is
        # sum_j k[j] in[x + j], i.e. correlate1d's sample x + n // 2
        t = ndi.correlate1d(data[b], kx, axis=1, mode="nearest", output=np.float32)
        t = t[:, n // 2 : n // 2 + width]
        t = ndi.correlate1d(t, ky, axis=0, mode="nearest", output=np.float32)
        out[b] = t[n // 2 : n // 2 + height]
        del t
    del data
    vx = valid[:, m : m + width].copy()
    for k in range(1, 4):
        vx &= valid[:, m + k : m + k + width]
    ok = vx[m : m + height].copy()
    for k in range(1, 4):
        ok &= vx[m + k : m + k + height]
    if not ok.all():
        out[:, ~ok] = np.nan
    return out, ok


class _Offset:
    """A reader of grid windows over a reader of a grid ``pad`` pixels wider on every side."""

    def __init__(self, reader: GridReader, pad: int) -> None:
        self.reader, self.pad = reader, pad

    def read(self, row: int, col: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        return self.reader.read(row + self.pad, col + self.pad, height, width)


def _spline_strip(
    reader: GridReader | _Offset, model: Affine, row: int, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``[row, row + height)`` of the grid with ``model`` applied by cubic-spline resampling
    of the target's own pixels (read unresampled through the aligned path): one resampling."""
    if (model.a, model.b, model.d, model.e) == (1.0, 0.0, 0.0, 1.0):
        return _shift_strip(reader, model, row, height, width)
    rows, cols = np.mgrid[row : row + height, 0:width].astype(np.float64)
    u = model.a * (cols + 0.5) + model.b * (rows + 0.5) + model.c - 0.5
    v = model.d * (cols + 0.5) + model.e * (rows + 0.5) + model.f - 0.5
    del rows, cols
    m = _SPLINE_MARGIN
    c0, r0 = math.floor(float(u.min())) - m, math.floor(float(v.min())) - m
    c1, r1 = math.ceil(float(u.max())) + m + 1, math.ceil(float(v.max())) + m + 1
    data, valid = reader.read(r0, c0, r1 - r0, c1 - c0)
    u -= c0
    v -= r0
    # validity: all pixels of the spline's 4x4 support valid (nearest sample of the eroded mask)
    core = ndi.binary_erosion(valid, np.ones((4, 4), bool), border_value=0, origin=(-1, -1))
    iu = np.clip(np.floor(u).astype(np.intp), 0, core.shape[1] - 1)
    iv = np.clip(np.floor(v).astype(np.intp), 0, core.shape[0] - 1)
    ok = core[iv, iu]
    del iu, iv
    # per band, over the rows and columns only (a 3-D filter ran along the bands too), invalid
    # pixels filled first (a NaN spreads through the whole recursive filter: an all-zero output)
    filled = _fill_invalid(data, valid)
    coef = np.empty(filled.shape, np.float32)
    for b in range(filled.shape[0]):
        ndi.spline_filter(filled[b], order=3, mode="mirror", output=coef[b])
    out = np.empty((data.shape[0], height, width), np.float32)
    half = height // 2

    def part(b: int, a0: int, a1: int) -> None:
        ndi.map_coordinates(
            coef[b], [v[a0:a1], u[a0:a1]], order=3, mode="nearest", prefilter=False,
            output=out[b, a0:a1],
        )  # fmt: skip

    # scipy.ndimage releases the GIL: two threads share the interpolation
    with ThreadPoolExecutor(2) as pool:
        jobs = [pool.submit(part, b, a0, a1) for b in range(data.shape[0])
                for a0, a1 in ((0, half), (half, height))]  # fmt: skip
        for j in jobs:
            j.result()
    out[:, ~ok] = np.nan
    return out, ok


def write_corrected(
    tgt_acq: Acquisition,
    grid: Grid,
    result: CoregResult,
    out: Path,
    *,
    resampling: ResamplingName = "cubic",
) -> None:
    """Write every band of the target on ``grid`` with ``result.model`` applied, block by block.

    Invalid pixels get the target's nodata value when it has one (else NaN for float data), and
    the validity is also written as the dataset mask. When every target raster shares the grid's
    CRS and pixel lattice, the model is applied by cubic-spline resampling of the source pixels
    (GDAL's kernels pull fractional shifts towards whole pixels measurably); otherwise GDAL warps
    with ``resampling``. Either way each pixel is resampled from the source once.
    """
    if result.model is None:
        raise ValueError("a failed co-registration has no model to apply")
    src0 = tgt_acq.sources[0]
    with rasterio.open(src0.path) as ds:
        dtype = ds.dtypes[src0.data_bands[0] - 1]
        descriptions = [ds.descriptions[i - 1] for i in src0.data_bands]
    nodata = src0.nodata
    if nodata is None and np.issubdtype(np.dtype(dtype), np.floating):
        nodata = float("nan")
    profile = {
        "driver": "GTiff",
        "width": grid.width,
        "height": grid.height,
        "count": len(tgt_acq.roles),
        "dtype": dtype,
        "crs": grid.crs,
        "transform": grid.transform,
        "tiled": True,
        "blockxsize": BLOCK,
        "blockysize": BLOCK,
        "compress": "deflate",
        "zlevel": ZLEVEL,
        "predictor": 2 if np.issubdtype(np.dtype(dtype), np.integer) else 3,
        "nodata": nodata,
        "BIGTIFF": "IF_SAFER",
        "NUM_THREADS": "ALL_CPUS",
        # every band a plain sample: GDAL's default for 4 bytes per pixel (RGB + alpha) turned a
        # near-infrared band into transparency
        "PHOTOMETRIC": "MINISBLACK",
    }
    model = result.model
    # an affine whose linear part moves no pixel of the grid by 0.005 px is applied as the
    # equivalent translation (the separable fast path)
    lin = np.array([[model.a - 1.0, model.b], [model.d, model.e - 1.0]])
    corners = np.array([[0, 0], [grid.width, 0], [0, grid.height], [grid.width, grid.height]])
    centre = np.array([grid.width / 2.0, grid.height / 2.0])
    if np.abs((corners - centre) @ lin.T).max() < 0.005:
        sx, sy = model * tuple(centre)
        model = Affine.translation(sx - centre[0], sy - centre[1])
    aligned = resampling == "cubic" and all(
        aligned_offset(s, grid) is not None for s in tgt_acq.sources
    )
    # how far beyond the grid the aligned paths read: the model's reach at the corners, the
    # spline's support and its prefilter's margin
    reach = max(abs(v) for c in corners for v in np.subtract(model * tuple(c), c))
    pad = math.ceil(reach) + _SPLINE_MARGIN + 4
    out = Path(out)
    tmp = out.with_name(out.name + ".partial.tif")
    try:
        with (
            _gdal_env(),
            rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True),
            GridReader(
                tgt_acq,
                # on the target's own lattice: the grid and a margin around it, so the pixels
                # beyond the reference's edge that the kernels reach are read too
                grid.crop(-pad, -pad, grid.height + 2 * pad, grid.width + 2 * pad)
                if aligned
                else grid,
                model=None if aligned else model,
                resampling=resampling,
                stored=True,  # written as the target stores them, with its scale and offset
            ) as padded_reader,
            rasterio.open(tmp, "w", **profile) as dst,
        ):
            # the target's own band names, none invented (a band without one keeps the role
            # its position gives it, as it had in the target)
            for i in range(len(tgt_acq.roles)):
                if i < len(descriptions) and descriptions[i]:
                    dst.set_band_description(i + 1, descriptions[i])
            if src0.scaling:  # the stored numbers keep their meaning
                dst.scales = [sc for sc, _ in src0.scaling]
                dst.offsets = [off for _, off in src0.scaling]
            dst.update_tags(COREGISTRATION=json.dumps(result.to_dict(grid)))
            if tgt_acq.date != UNDATED:
                dst.update_tags(TIFFTAG_DATETIME=tgt_acq.date.strftime("%Y:%m:%d 00:00:00"))
            info = np.iinfo(dtype) if np.issubdtype(np.dtype(dtype), np.integer) else None
            # full-width strips, a multiple of the block height, within the pixel budget
            per_band = STRIP_PIXELS // max(1, len(tgt_acq.roles)) // (2 if aligned else 1)
            rows = max(BLOCK, (per_band // max(grid.width, 1)) // BLOCK * BLOCK)
            spans = [(r, min(rows, grid.height - r)) for r in range(0, grid.height, rows)]
            shift = aligned and (model.a, model.b, model.d, model.e) == (1.0, 0.0, 0.0, 1.0)
            reader = _Offset(padded_reader, pad if aligned else 0)

            def fetch(span: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
                # the only thread that reads the target
                if shift:
                    return _read_for_shift(reader, model, span[0], span[1], grid.width)
                if aligned:
                    return _spline_strip(reader, model, span[0], span[1], grid.width)
                return reader.read(span[0], 0, span[1], grid.width)

            def store(span: tuple[int, int], data: np.ndarray, mask: np.ndarray) -> None:
                # the only thread that writes (GDAL compresses, releasing the GIL)
                win = rasterio.windows.Window(0, span[0], grid.width, span[1])
                dst.write(data, window=win)
                dst.write_mask(mask, window=win)

            # three stages overlap: decode strip k+1, resample strip k, compress strip k-1
            with ThreadPoolExecutor(1) as reads, ThreadPoolExecutor(1) as writes:
                ahead = reads.submit(fetch, spans[0])
                written: Future[None] | None = None
                for k, span in enumerate(spans):
                    block = ahead.result()
                    if k + 1 < len(spans):
                        ahead = reads.submit(fetch, spans[k + 1])
                    data, valid = (
                        _shift_block(block, model, span[1], grid.width) if shift else block
                    )
                    del block
                    if info is not None and info.min == 0:
                        # round half up by truncation (values clipped to >= 0 first)
                        np.clip(data, 0.0, info.max, out=data)
                        data += np.float32(0.5)
                    elif info is not None:
                        np.rint(data, out=data)
                        np.clip(data, info.min, info.max, out=data)
                    if not valid.all():
                        data[:, ~valid] = nodata if nodata is not None else 0
                    arr = data.astype(dtype)
                    if info is not None and nodata is not None:
                        # a valid pixel that rounds to the nodata value would read as nodata
                        # wherever the mask is not consulted: one step off it, as gdalwarp does
                        step = 1 if nodata < info.max else -1
                        for band in arr:
                            band[valid & (band == nodata)] = nodata + step
                    mask = valid.astype(np.uint8)
                    mask *= 255
                    del data, valid
                    if written is not None:
                        written.result()
                    written = writes.submit(store, span, arr, mask)
                    del arr, mask
                if written is not None:
                    written.result()
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)


def write_points(result: CoregResult, grid: Grid, path: Path) -> None:
    """The tie-point table as a GeoJSON FeatureCollection (lon/lat points at window centres)."""
    tr = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True)
    t = grid.transform
    feats = []
    for p in result.points:
        x, y = t * (p.col, p.row)
        lon, lat = tr.transform(x, y)
        dx_m, dy_m = grid.offset_m(p.dx, p.dy)
        feats.append(
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [float(lon), float(lat)]},
                "properties": {
                    "col": p.col,
                    "row": p.row,
                    "dx_px": round(p.dx, 4),
                    "dy_px": round(p.dy, 4),
                    "dx_m": round(dx_m, 3),
                    "dy_m": round(dy_m, 3),
                    "reliability": round(p.reliability, 4),
                    "valid": p.valid,
                },
            }
        )
    doc = {
        "type": "FeatureCollection",
        "coregistration": result.to_dict(grid),
        "features": feats,
    }
    tmp = Path(path).with_name(Path(path).name + ".partial")
    tmp.write_text(json.dumps(doc, indent=1, allow_nan=False))
    tmp.replace(path)


def coregister_files(
    reference: Path,
    target: Path,
    out: Path,
    *,
    nodata: float | None = None,
    points_out: Path | None = None,
    mode: Mode = "auto",
    resampling: ResamplingName = "cubic",
) -> CoregResult:
    """Co-register TARGET to REFERENCE and write the corrected target on REFERENCE's grid.

    Parameters
    ----------
    reference, target : Path
        Rasters (or folders of tiles) GDAL reads; the reference's native grid is the output grid.
    out : Path
        The corrected GeoTIFF (all target bands; nodata/mask where invalid). Not written when the
        co-registration failed: the failed result is returned and the caller reports it.
    nodata : float, optional
        Nodata value for rasters that do not declare one (0 for Sentinel-2 L1C).
    points_out : Path, optional
        Where to write the tie-point table as GeoJSON (written even when failed).
    mode : {"auto", "global", "local"}
        See :func:`sohae_watch.coregister.coregister_arrays`.
    resampling : {"nearest", "bilinear", "cubic"}
        Kernel of the single resampling of the target.
    """
    result, grid, tgt_acq = measure_files(reference, target, nodata=nodata, mode=mode)
    if points_out is not None:
        write_points(result, grid, Path(points_out))
    if result.status != "failed":
        write_corrected(tgt_acq, grid, result, Path(out), resampling=resampling)
    return result


def summary_lines(result: CoregResult, grid: Grid | None = None) -> list[str]:
    """Human-readable lines: shift, reliability and the tie-point summary."""
    if result.status == "failed":
        return [
            f"co-registration FAILED ({result.method}): no common texture found "
            f"({result.n_points} windows measured, {result.n_valid_points} usable); "
            "the target was not corrected"
        ]
    assert result.shift_x_px is not None and result.shift_y_px is not None
    line = f"shift: x {result.shift_x_px:+.3f} px, y {result.shift_y_px:+.3f} px"
    if grid is not None:
        d = result.to_dict(grid)
        line += f" ({d['shift_x_m']:+.2f} m east, {d['shift_y_m']:+.2f} m north)"
    rel = [p.reliability for p in result.points if p.valid]
    dxs = np.array([p.dx for p in result.points if p.valid])
    dys = np.array([p.dy for p in result.points if p.valid])
    lines = [
        line,
        f"method: {result.method} ({result.model_kind}), status: {result.status}, "
        f"reliability: {result.reliability:.2f}",
        f"tie points: {result.n_valid_points} valid of {result.n_points} measured",
    ]
    if len(rel):
        lines.append(
            f"  dx range {dxs.min():+.2f}..{dxs.max():+.2f} px, dy range {dys.min():+.2f}.."
            f"{dys.max():+.2f} px, median peak reliability {float(np.median(rel)):.2f}"
        )
    return lines
