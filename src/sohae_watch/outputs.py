"""Writing files atomically: every output goes to a temporary sibling, then is renamed into place."""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.windows import Window

from sohae_watch.errors import InputError
from sohae_watch.grid import Grid
from sohae_watch.stream import Tile


@contextlib.contextmanager
def staged_dir(out_dir: Path) -> Iterator[Path]:
    """A temporary folder beside ``out_dir``; on success its files replace those in ``out_dir``.

    On any failure the temporary folder is removed and ``out_dir`` is left as it was (a folder
    created for this run is removed again).
    """
    created = not out_dir.exists()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(
            f"{out_dir}: cannot create the output folder ({exc.strerror}); choose another --out"
        ) from exc
    if not out_dir.is_dir():
        raise InputError(f"{out_dir}: exists and is not a folder; choose another --out")
    tmp = Path(tempfile.mkdtemp(prefix=".sohae-", dir=out_dir))
    try:
        yield tmp
        for f in sorted(tmp.iterdir()):
            os.replace(f, out_dir / f.name)
    except BaseException:
        if created:
            shutil.rmtree(out_dir, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


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
        "predictor": 3 if dtype.startswith("float") else 2,
        "BIGTIFF": "IF_SAFER",
    }
    if tiled:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    if dtype == "uint8":
        profile["predictor"] = 1
    return profile


def write_raster(
    path: Path,
    array: np.ndarray,
    grid: Grid,
    *,
    nodata: float | None,
    tags: dict[str, str] | None = None,
) -> None:
    """Write a single-band array on ``grid`` as a GeoTIFF."""
    with rasterio.open(path, "w", **geotiff_profile(grid, str(array.dtype), nodata)) as dst:
        dst.write(array, 1)
        if tags:
            dst.update_tags(**tags)


OVERVIEW_SIDE = 900  # longest side of the overview map, pixels


class TileOutputs:
    """The two output rasters, written tile by tile, plus the running counts and the overview."""

    def __init__(self, workdir: Path, grid: Grid) -> None:
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
        self.lock = threading.Lock()
        self.counts = {"changed": 0, "observable": 0, "pixels": grid.width * grid.height}
        self.factor = max(1, int(math.ceil(max(grid.shape) / OVERVIEW_SIDE)))
        oh, ow = -(-grid.height // self.factor), -(-grid.width // self.factor)
        self.overview = np.full((oh, ow), 255, np.uint8)

    def write(self, tile: Tile, mask: np.ndarray, magnitude: np.ndarray) -> None:
        f = self.factor
        with self.lock:
            w = Window(tile.col, tile.row, tile.width, tile.height)
            self.mask.write(mask, 1, window=w)
            self.magnitude.write(magnitude.astype(np.float32), 1, window=w)
            self.counts["changed"] += int((mask == 1).sum())
            self.counts["observable"] += int((mask != 255).sum())
            if tile.row % f == 0 and tile.col % f == 0:  # tiles are multiples of the factor
                small = mask[::f, ::f].copy()
                changed = mask == 1
                if changed.any():
                    hh, ww = small.shape
                    pad = np.zeros((hh * f, ww * f), bool)
                    pad[: changed.shape[0], : changed.shape[1]] = changed
                    small[pad.reshape(hh, f, ww, f).any(axis=(1, 3))] = 1
                r0, c0 = tile.row // f, tile.col // f
                self.overview[r0 : r0 + small.shape[0], c0 : c0 + small.shape[1]] = small

    def close(self) -> None:
        self.mask.close()
        self.magnitude.close()
