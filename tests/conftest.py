"""Shared fixtures: tiny rasters with explicit CRS and transform, the CLI runner, the samples."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from affine import Affine
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
REAL = SHARED / "data" / "real"
SAMPLES = ROOT / "data" / "samples" / "sohae"
SITE = ROOT / "configs" / "sohae.yaml"


def write_raster(
    path: Path,
    data: np.ndarray,
    *,
    crs: str = "EPSG:32651",
    transform: Affine | None = None,
    nodata: float | None = None,
    tags: dict[str, str] | None = None,
    descriptions: Sequence[str] | None = None,
    **extra: Any,
) -> Path:
    """Write ``data`` (bands, rows, cols) as a GeoTIFF with an explicit CRS and transform."""
    if data.ndim == 2:
        data = data[None]
    transform = transform or Affine(0.5, 0, 500000.0, 0, -0.5, 4390000.0)
    profile = dict(
        driver="GTiff",
        width=data.shape[2],
        height=data.shape[1],
        count=data.shape[0],
        dtype=str(data.dtype),
        crs=crs,
        transform=transform,
        nodata=nodata,
        **extra,
    )
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        if tags:
            dst.update_tags(**tags)
        if descriptions:
            for i, d in enumerate(descriptions, start=1):
                dst.set_band_description(i, d)
    return path


def textured(shape: tuple[int, int], seed: int = 0, bands: int = 4) -> np.ndarray:
    """A smooth random texture (uint16) that phase correlation can lock onto."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    base = ndimage.gaussian_filter(rng.normal(size=shape), 2.0)
    base = (base - base.min()) / (np.ptp(base) + 1e-9)
    out = np.stack([1000 + 2000 * base * (1 + 0.1 * b) for b in range(bands)])
    return out.astype(np.uint16)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture(scope="session")
def samples() -> Path:
    """The Sohae sample set, generated deterministically on first use (shared with `make demo`)."""
    from sohae_watch.samples import generate_sohae_samples

    truth = SAMPLES / "truth.json"
    if not truth.is_file():
        generate_sohae_samples(SAMPLES)
    return SAMPLES


@pytest.fixture
def in_root(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run with the repository root as the working directory (so `--site sohae` resolves)."""
    monkeypatch.chdir(ROOT)
    return ROOT


def needs_real() -> pytest.MarkDecorator:
    return pytest.mark.skipif(
        not REAL.is_dir(), reason=f"real development cases not present at {REAL}"
    )


os.environ.setdefault("GDAL_PAM_ENABLED", "NO")
