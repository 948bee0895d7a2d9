"""Reading: any window of an acquisition on a working grid, its tiles mosaicked, reprojected or
moved by co-registration's model, with nodata / alpha / mask bands carried into a validity mask
and GDAL's scale and offset applied. Only the source windows a read needs are decoded.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import ColorInterp, MaskFlags, Resampling
from rasterio.errors import RasterioError
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window
from scipy import ndimage

from sohae_watch.errors import InputError
from sohae_watch.filters import set_box
from sohae_watch.grid import Grid, origin_on_lattice
from sohae_watch.ingest import Acquisition, RasterSource, ResamplingName
from sohae_watch.readcache import GridCache, ReadKey
from sohae_watch.scene import Scene


def aligned_offset(src: RasterSource, grid: Grid) -> tuple[int, int] | None:
    """(row, col) of the grid's origin in the source's pixels when both share CRS and pixel
    lattice, else None."""
    if src.crs != grid.crs or src.transform.b != 0 or src.transform.d != 0:
        return None
    return origin_on_lattice(grid.transform, src.transform)


def block_rows(acq: Acquisition, grid: Grid) -> int | None:
    """Height of the internal blocks of a single-raster, tiled acquisition when the grid's rows
    start on a block border (the source on the grid's pixel lattice), else None: windows packed
    into those block rows decode fewer rows."""
    if len(acq.sources) != 1:
        return None
    offset = aligned_offset(acq.sources[0], grid)
    if offset is None:
        return None
    with rasterio.open(acq.sources[0].path) as ds:
        bh, bw = ds.block_shapes[0]
        tiled = bw < ds.width or bh < ds.height
    return int(bh) if tiled and offset[0] % bh == 0 else None


class GridReader:
    """Reads windows of an acquisition on a working grid.

    ``model`` (an Affine in pixel space) maps a grid pixel (col, row) to where its content lies in
    the acquisition on the same grid: co-registration's correction, applied when resampling from
    the source, so every pixel is resampled once. Pixels are values (GDAL's scale and offset
    applied), or with ``stored`` the numbers as the files store them (to write a file like them).
    """

    def __init__(
        self,
        acq: Acquisition,
        grid: Grid,
        *,
        model: Affine | None = None,
        resampling: ResamplingName = "bilinear",
        cache: GridCache | None = None,
        stored: bool = False,
    ) -> None:
        self.acq = acq
        self.grid = grid
        self.model = model
        self.stored = stored
        self.cache = cache if cache is not None and cache.grid == grid and not stored else None
        self.roles = acq.roles
        self.resampling = Resampling[resampling]
        self._datasets: list[tuple[RasterSource, rasterio.io.DatasetReader]] = []
        self._vrts: dict[int, WarpedVRT] = {}
        self._offsets: list[tuple[int, int] | None] = []  # per source, see aligned_offset

    def __enter__(self) -> GridReader:
        try:
            for src in self.acq.sources:
                self._datasets.append((src, rasterio.open(src.path)))
                self._offsets.append(aligned_offset(src, self.grid))
        except RasterioError as exc:
            self.close()
            raise InputError(f"{src.path}: cannot be read ({exc}); replace the file") from exc
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for v in self._vrts.values():
            v.close()
        for _, ds in self._datasets:
            ds.close()
        self._vrts.clear()
        self._datasets.clear()
        self._offsets.clear()

    def _margin(self) -> float:
        """How far (map units) the model can move a window's content: widens the overlap test."""
        return model_reach(self.model, self.grid)

    def _target_transform(self) -> Affine:
        t = self.grid.transform
        return t @ self.model if self.model is not None else t

    def _vrt(self, n: int, src: RasterSource, ds: rasterio.io.DatasetReader) -> WarpedVRT:
        if n not in self._vrts:
            kwargs: dict[str, object] = {}
            if src.nodata is not None:
                kwargs["src_nodata"] = src.nodata
                kwargs["nodata"] = src.nodata
            self._vrts[n] = WarpedVRT(
                ds,
                crs=self.grid.crs,
                transform=self._target_transform(),
                width=self.grid.width,
                height=self.grid.height,
                resampling=self.resampling,
                **kwargs,
            )
        return self._vrts[n]

    def _read_block(
        self,
        src: RasterSource,
        ds: rasterio.io.DatasetReader,
        indexes: list[int],
        row: int,
        col: int,
        height: int,
        width: int,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Source pixels [row:row+height, col:col+width] (zero and invalid outside the raster)."""
        r0, c0 = max(0, -row), max(0, -col)
        r1, c1 = min(height, src.height - row), min(width, src.width - col)
        if r1 <= r0 or c1 <= c0:
            return np.zeros((len(indexes), height, width), np.float32), np.zeros(
                (height, width), bool
            )
        inside = Window(col + c0, row + r0, c1 - c0, r1 - r0)
        if (r1 - r0, c1 - c0) == (height, width):  # inside the raster: decoded into the result
            return _read_masked(ds, indexes, inside)
        # partly outside (e.g. a target moved by its registration): decoded straight into the
        # zero-padded result
        data = np.zeros((len(indexes), height, width), np.float32)
        mask = np.zeros((height, width), bool)
        _, part_mask = _read_masked(ds, indexes, inside, out=data[:, r0:r1, c0:c1])
        mask[r0:r1, c0:c1] = part_mask
        return data, mask

    def _resample_aligned(
        self,
        src: RasterSource,
        ds: rasterio.io.DatasetReader,
        indexes: list[int],
        offset: tuple[int, int],
        window: Window,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Bilinear resampling of a source on the grid's own pixel lattice through ``model``:
        the window's pixels sampled once from the source pixels, in numpy (no warp set-up)."""
        assert self.model is not None
        m = self.model
        h, w = int(window.height), int(window.width)
        r_off, c_off = int(window.row_off) + offset[0], int(window.col_off) + offset[1]
        if _is_translation(m):
            ix, iy, fx, fy = _whole_and_fraction(m)
            if fx == 0 and fy == 0:  # a whole-pixel shift: the source pixels themselves
                return self._read_block(src, ds, indexes, r_off + iy, c_off + ix, h, w)
            block, bmask = self._read_block(src, ds, indexes, r_off + iy, c_off + ix, h + 1, w + 1)
            return _bilinear(block, bmask, fx, fy)
        rows, cols = np.mgrid[0:h, 0:w].astype(np.float64)
        u = m.a * (cols + 0.5) + m.b * (rows + 0.5) + m.c - 0.5
        v = m.d * (cols + 0.5) + m.e * (rows + 0.5) + m.f - 0.5
        c0, r0 = math.floor(u.min()), math.floor(v.min())
        c1, r1 = math.floor(u.max()) + 2, math.floor(v.max()) + 2
        block, bmask = self._read_block(src, ds, indexes, r_off + r0, c_off + c0, r1 - r0, c1 - c0)
        coords = np.stack([v - r0, u - c0])
        out = np.stack(
            [ndimage.map_coordinates(b, coords, order=1, mode="constant", cval=0.0) for b in block]
        )
        valid = (
            ndimage.map_coordinates(
                bmask.astype(np.float32), coords, order=1, mode="constant", cval=0.0
            )
            > 0.999
        )
        return out.astype(np.float32, copy=False), valid

    def _read_source(
        self, n: int, src: RasterSource, ds: rasterio.io.DatasetReader, window: Window
    ) -> tuple[np.ndarray, np.ndarray]:
        indexes = [src.data_bands[src.roles.index(r)] for r in self.roles]
        offset = self._offsets[n]
        if offset is not None and self.model is None:
            data, mask = self._read_block(
                src,
                ds,
                indexes,
                int(window.row_off) + offset[0],
                int(window.col_off) + offset[1],
                int(window.height),
                int(window.width),
            )
        elif offset is not None:
            data, mask = self._resample_aligned(src, ds, indexes, offset, window)
        else:
            vrt = self._vrt(n, src, ds)
            data = vrt.read(indexes, window=window, out_dtype="float32")
            mask = vrt.dataset_mask(window=window) > 0
            if src.nodata is None and all(f == [MaskFlags.all_valid] for f in ds.mask_flag_enums):
                mask &= zero_fill(data)
        valid = _validity(src, ds, data, mask)
        self._scale(src, indexes, data)
        return data, valid

    def _scale(self, src: RasterSource, indexes: list[int], data: np.ndarray) -> None:
        """GDAL's scale and offset applied to bands ``indexes`` of ``src`` read into ``data``, in
        place (after the nodata tests, which are on the stored numbers); none when ``stored``."""
        if not src.scaling or self.stored:
            return
        for k, i in enumerate(indexes):
            scale, off = src.scaling[src.data_bands.index(i)]
            if (scale, off) != (1.0, 0.0):
                data[k] *= np.float32(scale)
                data[k] += np.float32(off)

    def _shifted_mosaic(self, window: Window) -> tuple[np.ndarray, np.ndarray] | None:
        """A window of tiles on the grid's lattice moved by a fractional translation: the
        tiles' pixels put together first, then moved once. Moved tile by tile, each tile's
        edge pixels lacked their neighbour in the next tile, and a seam of pixels no tile
        gave (255 in the mask) ran along every border between abutting tiles. None where this
        does not apply (one source, no fraction, a source off the lattice)."""
        m = self.model
        if m is None or not _is_translation(m) or len(self._datasets) < 2:
            return None
        ix, iy, fx, fy = _whole_and_fraction(m)
        if (fx == 0 and fy == 0) or any(o is None for o in self._offsets):
            return None
        h, w = int(window.height), int(window.width)
        row, col = int(window.row_off), int(window.col_off)
        block = np.zeros((len(self.roles), h + 1, w + 1), np.float32)
        bmask = np.zeros((h + 1, w + 1), bool)
        near = self.grid.crop(row, col, h, w)
        for n, (src, ds) in enumerate(self._datasets):
            offset = self._offsets[n]
            if offset is None or not _overlaps(src, near, margin=self._margin()):
                continue
            indexes = [src.data_bands[src.roles.index(r)] for r in self.roles]
            try:
                data, mask = self._read_block(
                    src, ds, indexes, row + offset[0] + iy, col + offset[1] + ix, h + 1, w + 1
                )
            except RasterioError as exc:
                raise _undecodable(src, exc) from exc
            mask = _validity(src, ds, data, mask)
            self._scale(src, indexes, data)
            take = mask & ~bmask
            np.copyto(block, data, where=take[None])
            bmask |= take
        return _bilinear(block, bmask, fx, fy)

    def read(self, row: int, col: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """Bands (float32, NaN where invalid) and validity of a window of the grid; the parts of
        the window outside the grid are invalid. With a cache, from the grid's whole read where
        that gives the same pixels (see :mod:`sohae_watch.readcache`)."""
        g = self.grid
        inside = row >= 0 and col >= 0 and row + height <= g.height and col + width <= g.width
        whole = (row, col, height, width) == (0, 0, g.height, g.width)
        if self.cache is not None and whole:
            return self.cache.whole(self.cache_key, lambda: self._read(0, 0, *g.shape))
        if self.cache is not None and inside and self._window_independent():
            part = self.cache.window(self.cache_key, row, col, height, width)
            if part is not None:
                return part
        return self._read(row, col, height, width)

    @property
    def cache_key(self) -> ReadKey:
        return ReadKey(self.acq.paths, self.model, tuple(self.roles), self.resampling)

    def _window_independent(self) -> bool:
        """Whether a window's pixels are those of the whole grid's read: every source on the
        grid's lattice, read as it is or moved by a translation (see :meth:`_resample_aligned`)."""
        translation = self.model is None or _is_translation(self.model)
        return translation and all(o is not None for o in self._offsets)

    def _read(self, row: int, col: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        r0, c0 = max(0, row), max(0, col)
        r1, c1 = min(self.grid.height, row + height), min(self.grid.width, col + width)
        if len(self._datasets) == 1 and (r1 - r0, c1 - c0) == (height, width):
            # one source and the window inside the grid (the common case): its pixels are the
            # result, decoded straight into it when the source is on the grid's lattice
            src, ds = self._datasets[0]
            if _overlaps(src, self.grid.crop(r0, c0, height, width), margin=self._margin()):
                data, mask = self._decode(0, src, ds, Window(c0, r0, width, height))
                set_nan(data, mask)
                return data, mask
        out = np.full((len(self.roles), height, width), np.nan, dtype=np.float32)
        valid = np.zeros((height, width), dtype=bool)
        if r1 <= r0 or c1 <= c0:
            return out, valid
        inner = (slice(r0 - row, r1 - row), slice(c0 - col, c1 - col))
        window = Window(c0, r0, c1 - c0, r1 - r0)
        sub_out, sub_valid = out[(slice(None), *inner)], valid[inner]
        mosaic = self._shifted_mosaic(window)
        if mosaic is not None:
            data, mask = mosaic
            np.copyto(sub_out, data, where=mask[None])
            sub_valid |= mask
            return out, valid
        for n, (src, ds) in enumerate(self._datasets):
            if not _overlaps(src, self.grid.crop(r0, c0, r1 - r0, c1 - c0), margin=self._margin()):
                continue
            data, mask = self._decode(n, src, ds, window)
            take = mask & ~sub_valid
            np.copyto(sub_out, data, where=take[None])
            sub_valid |= take
            if sub_valid.all():
                break
        return out, valid

    def _decode(
        self, n: int, src: RasterSource, ds: rasterio.io.DatasetReader, window: Window
    ) -> tuple[np.ndarray, np.ndarray]:
        try:
            return self._read_source(n, src, ds, window)
        except RasterioError as exc:
            raise _undecodable(src, exc) from exc

    def read_all(self) -> tuple[np.ndarray, np.ndarray]:
        return self.read(0, 0, self.grid.height, self.grid.width)


def _reason(exc: BaseException) -> str:
    """GDAL's own words for a failure: rasterio wraps them as 'Read failed. See previous
    exception for details.', with the cause chained."""
    cause = exc.__cause__ or exc.__context__
    if "See previous exception" in str(exc) and cause is not None:
        return _reason(cause)
    return str(exc)


def _undecodable(src: RasterSource, exc: RasterioError) -> InputError:
    return InputError(
        f"{src.path}: pixels cannot be decoded ({_reason(exc)}); the file is truncated or "
        "corrupt, replace it"
    )


def _bilinear(
    block: np.ndarray, bmask: np.ndarray, fx: np.float32, fy: np.float32
) -> tuple[np.ndarray, np.ndarray]:
    """Bands of ``block`` (bands, h + 1, w + 1) moved by the fractions ``fx``, ``fy`` of a pixel,
    bilinearly, and where every source pixel used is in ``bmask``: (bands, h, w) and (h, w).
    Separable, band by band, in place: along the rows, then down the columns (x0 + f (x1 - x0)
    each way; a zero fraction reads nothing beyond x0): one window-sized result and one
    band-sized temporary, 1.4x faster than four taps."""
    h, w = block.shape[1] - 1, block.shape[2] - 1
    valid = bmask[:-1, :-1].copy()
    out = np.empty((block.shape[0], h, w), np.float32)
    across = np.empty((h + 1, w), np.float32) if fx else None
    for k in range(out.shape[0]):
        line = block[k, :, :-1]
        if across is not None:
            np.subtract(block[k, :, 1:], line, out=across)
            across *= fx
            across += line
            line = across
        if fy:
            np.subtract(line[1:], line[:-1], out=out[k])
            out[k] *= fy
            out[k] += line[:-1]
        else:
            out[k] = line[:-1]
    if fx > 0:
        valid &= bmask[:-1, 1:]
    if fy > 0:
        valid &= bmask[1:, :-1]
    if fx > 0 and fy > 0:
        valid &= bmask[1:, 1:]
    return out.astype(np.float32, copy=False), valid


def _whole_and_fraction(m: Affine) -> tuple[int, int, np.float32, np.float32]:
    """A translation's whole pixels (floored) and the fractions left, x then y."""
    ix, iy = math.floor(m.c), math.floor(m.f)
    return ix, iy, np.float32(m.c - ix), np.float32(m.f - iy)


def _is_translation(m: Affine) -> bool:
    return m.a == 1 and m.e == 1 and m.b == 0 and m.d == 0


def set_nan(data: np.ndarray, valid: np.ndarray) -> None:
    """NaN in every band of ``data`` where not ``valid``, written on the invalid pixels'
    bounding box only: a date moved by its registration has invalid pixels in a few columns of
    every window (on the benchmark pair, masking whole windows cost ~1 CPU-s of a diff's ~37)."""
    box = set_box(~valid)
    if box is not None:
        part = data[(slice(None), *box)]
        part[:, ~valid[box]] = np.nan


def _read_masked(
    ds: rasterio.io.DatasetReader,
    indexes: list[int],
    window: Window,
    out: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Bands ``indexes`` of ``window`` (float32) and GDAL's dataset mask there (valid where any
    band of the file is). When the file's only masks are nodata values, every band is read once
    and the mask taken from the pixels: asking GDAL for it decodes every band a second time.
    When it declares no mask at all, pixels 0 in every band read are fill (:func:`zero_fill`).
    ``out``: a float32 array (a view will do) of the bands' shape to decode into."""
    flags = ds.mask_flag_enums

    def read(idx: list[int], into: np.ndarray | None) -> np.ndarray:
        if into is None:
            return np.asarray(ds.read(idx, window=window, out_dtype="float32"))
        return np.asarray(ds.read(idx, window=window, out=into))

    # a band GDAL takes for alpha but its description names as data (see _band_roles): GDAL's
    # mask is then that band's values, and dark water in an 8-bit NIR would be "transparent"
    alpha_data = any(ds.colorinterp[i - 1] == ColorInterp.alpha for i in indexes)
    if alpha_data or all(f == [MaskFlags.all_valid] for f in flags):
        data = read(indexes, out)
        valid = zero_fill(data)
        # an alpha band GDAL does not mask with (its interpretation set after the file was
        # written): transparent where 0, as GDAL reads alpha when it does
        hidden = [
            i + 1
            for i in range(ds.count)
            if ds.colorinterp[i] == ColorInterp.alpha and i + 1 not in indexes
        ]
        for i in hidden:
            valid &= np.asarray(ds.read(i, window=window)) != 0
        return data, valid
    every = list(range(1, ds.count + 1))
    if all(f == [MaskFlags.nodata] for f in flags) and None not in ds.nodatavals:
        bands = read(every, out if indexes == every else None)
        valid = np.zeros(bands.shape[1:], bool)
        for band, v in zip(bands, ds.nodatavals, strict=True):
            valid |= ~np.isnan(band) if math.isnan(v) else band != np.float32(v)
        if indexes == every:
            return bands, valid
        data = bands[[i - 1 for i in indexes]]
        if out is not None:
            out[...] = data
            data = out
        return data, valid
    data = read(indexes, out)
    return data, np.asarray(ds.dataset_mask(window=window) > 0)


def zero_fill(data: np.ndarray) -> np.ndarray:
    """Valid pixels of bands (bands, rows, cols) from a file that declares no nodata and no mask:
    those not 0 in every band. Products fill what they did not image with 0 without always
    saying so (Sentinel-2 L1C, clipped mosaics); no sensor reads exactly 0 in every band over
    the ground, and taken as ground such fill has every structure in it dismantled."""
    return np.asarray(np.any(data != 0, axis=0))


def no_contrast(data: np.ndarray, valid: np.ndarray) -> bool:
    """Whether some pixel is ``valid`` and every valid one has the same value in each band of
    ``data`` (bands, rows, cols): a blank or failed product, which shows no ground at all (any
    image of the ground, however flat, varies by its noise)."""
    if not valid.any():
        return False
    for band in data:
        v = band[valid]
        if v.max() > v.min():
            return False
    return True


def _validity(
    src: RasterSource, ds: rasterio.io.DatasetReader, data: np.ndarray, mask: np.ndarray
) -> np.ndarray:
    """``mask`` narrowed by a declared nodata GDAL does not already mask, and by NaN/inf."""
    if src.nodata is not None and not (
        ds.nodata is not None and ds.mask_flag_enums[0] == [MaskFlags.nodata]
    ):
        mask &= ~np.any(data == np.float32(src.nodata), axis=0)
    if any(np.dtype(t).kind == "f" for t in ds.dtypes):
        mask &= np.all(np.isfinite(data), axis=0)
    return mask


def model_reach(model: Affine | None, grid: Grid) -> float:
    """How far (map units) ``model`` can move content on ``grid``: 0 without one."""
    if model is None:
        return 0.0
    m = model
    reach = (
        abs(m.c)
        + abs(m.f)
        + (abs(m.a - 1) + abs(m.b) + abs(m.d) + abs(m.e - 1)) * max(grid.shape)
        + 2
    )
    return float(reach * grid.resolution)


def sources_read(acq: Acquisition, grid: Grid, model: Affine | None = None) -> tuple[str, ...]:
    """The files of ``acq`` a read on ``grid`` (through ``model``) draws on: a tile of the date
    that lies beyond the area is not decoded, and the report does not name it a source."""
    margin = model_reach(model, grid)
    used = tuple(str(s.path) for s in acq.sources if _overlaps(s, grid, margin))
    return used or acq.paths


def _overlaps(src: RasterSource, grid: Grid, margin: float = 0.0) -> bool:
    a = src.bounds_in(grid.crs)
    b = grid.bounds
    return (
        a[0] < b[2] + margin
        and a[2] > b[0] - margin
        and a[1] < b[3] + margin
        and a[3] > b[1] - margin
    )


def read_scene(
    acq: Acquisition,
    grid: Grid,
    *,
    model: Affine | None = None,
    roles: Sequence[str] | None = None,
) -> Scene:
    """The whole acquisition on ``grid`` as a Scene (``roles`` restricts and orders the bands)."""
    with GridReader(acq, grid, model=model) as reader:
        if roles is not None:
            reader.roles = tuple(roles)
        data, valid = reader.read_all()
    return Scene(
        data=data,
        valid=valid,
        bands=tuple(reader.roles),
        grid=grid,
        date=acq.date,
        sources=acq.paths,
        sun=acq.sun,
    )
