"""Writing files atomically: every output goes to a temporary sibling, then is renamed into place."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import rasterio

from sohae_watch.errors import InputError
from sohae_watch.grid import Grid


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
