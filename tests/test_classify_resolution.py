"""Structures seen at two resolutions: the insides are compared at the coarser date's detail."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from click.testing import CliRunner
from rasterio.crs import CRS
from rasterio.enums import Resampling
from scipy import ndimage

from conftest import write_raster
from sohae_watch.classify import common_detail
from sohae_watch.cli.main import cli
from sohae_watch.grid import Grid
from sohae_watch.ingest import open_acquisition
from sohae_watch.reader import GridReader, read_scene
from sohae_watch.structures import as_delivered_on, coarse_lattice

ROOT = Path(__file__).resolve().parents[1]


def _textured(seed: int = 5, size: int = 96) -> np.ndarray:
    """Three bands of beams and blocks at the scale of a few 0.5 m pixels."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    base = 1000 + 800 * (((xx // 3) + (yy // 5)) % 2) + rng.normal(0, 30, (size, size))
    return np.stack([base * f for f in (1.0, 0.9, 0.8)]).astype(np.float32)


def _as_coarser(data: np.ndarray, f: int) -> np.ndarray:
    """``data`` as a sensor of f times its pixel size delivers it, brought back to its grid as
    the pipeline does (block means, then bilinear)."""
    b, h, w = data.shape
    coarse = data.reshape(b, h // f, f, w // f, f).mean(axis=(2, 4))
    return np.stack(
        [ndimage.zoom(band, f, order=1, grid_mode=True, mode="nearest") for band in coarse]
    )


def test_the_finer_date_is_blurred_to_the_coarser_ones_detail() -> None:
    fine = _textured()
    coarse = _as_coarser(fine, 4).astype(np.float32)
    inner = (slice(8, -8), slice(8, -8))

    def gap(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.sqrt(np.mean((a[:, inner[0], inner[1]] - b[:, inner[0], inner[1]]) ** 2)))

    b, a = common_detail(fine, coarse, (0.5, 2.0), 0.5)
    assert a is coarse  # the coarser date as it is
    assert gap(b, coarse) < 0.7 * gap(fine, coarse)  # the finer one much nearer to it
    # either order, and NaN (invalid) pixels stay NaN without spreading
    holed = fine.copy()
    holed[:, 40:44, 40:44] = np.nan
    a2, b2 = common_detail(coarse, holed, (2.0, 0.5), 0.5)
    assert a2 is coarse
    assert np.isnan(b2[:, 40:44, 40:44]).all() and np.isfinite(b2[:, :40]).all()
    # the same resolution, or one less than half a pixel of blur apart: the bands as they are
    for native in ((0.5, 0.5), (0.5, 0.55), None):
        same = common_detail(fine, coarse, native, 0.5)
        assert same[0] is fine and same[1] is coarse


@pytest.mark.parametrize(
    ("before", "after", "f"),
    [("2019-03-02", "2019-03-06", 4), ("2019-02-16", "2019-03-02", 3)],
    ids=["mar6-at-2m", "mar2-at-1.5m"],
)
def test_a_structure_is_not_modified_by_a_coarser_sensor(
    samples: Path, tmp_path: Path, before: str, after: str, f: int
) -> None:
    """A pair of the samples with AFTER delivered at 2 m or 1.5 m instead of 0.5 m: every
    structure keeps its true status. The 14 m gantry tower, a lattice, read 'modified' at 2 m
    when its blurred inside was compared with the sharp one, and at 1.5 m, where its girders
    alias, until the sharp date was seen through the coarse date's pixels."""
    truth = json.loads((samples / "truth.json").read_text())
    pair = next(p for p in truth["pairs"] if (p["before"], p["after"]) == (before, after))
    files = {a["date"]: a["files"] for a in truth["acquisitions"]}
    src_path = samples / files[after][0]
    coarse = tmp_path / f"coarse_{after}.tif"
    with rasterio.open(src_path) as src:
        h, w = src.height // f, src.width // f
        data = src.read(out_shape=(src.count, h, w), resampling=Resampling.average)
        profile = src.profile
        t = src.transform
        # as benchmarks/eval_mixed_resolution.degraded: the same ground in whole coarse pixels
        scaled = Affine(t.a * src.width / w, t.b, t.c, t.d, t.e * src.height / h, t.f)
        profile.update(height=h, width=w, transform=scaled)
        with rasterio.open(coarse, "w", **profile) as dst:
            dst.write(data)
            dst.descriptions = src.descriptions
            dst.update_tags(**src.tags())
    out = tmp_path / "out"
    res = CliRunner().invoke(
        cli,
        [
            "diff",
            str(samples / files[before][0]),
            str(coarse),
            "--site",
            str(ROOT / "configs" / "sohae.yaml"),
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    report = json.loads((out / "report.json").read_text())
    got = {s["id"]: s["status"] for s in report["structures"]}
    assert got == {k: v["status"] for k, v in pair["structures"].items()}


@pytest.mark.parametrize("model", [None, Affine.translation(1.0, -2.0)], ids=["as-is", "moved"])
def test_the_finer_date_is_seen_through_the_coarser_ones_pixels(
    tmp_path: Path, model: Affine | None
) -> None:
    """Girders 1.2 m wide every 2.4 m, seen by 2 m pixels, alias into a pattern no blur makes. The finer date averaged over the coarser one's delivered pixels (their lattice from
    its file and the registration) and brought back to the grid as the pipeline brings the
    coarser file is that file as read: the same aliasing."""
    n, f = 240, 4
    xx = np.mgrid[0:n, 0:n][1]
    rng = np.random.default_rng(2)
    base = 1000 + 600 * ((xx * 5 // 12) % 2) + rng.normal(0, 20, (n, n))
    fine = np.stack([base, 0.9 * base, 0.8 * base]).astype(np.float32)
    t = Affine(0.5, 0, 500000.0, 0, -0.5, 4390000.0)
    names = ("red", "green", "blue")
    fine_path = write_raster(
        tmp_path / "fine_2020-01-01.tif", fine, transform=t, descriptions=names
    )
    # the coarser sensor's pixels start one fine pixel in: its lattice is not the grid's
    sub = fine[:, 1 : 1 + (n - 2) // f * f, 1 : 1 + (n - 2) // f * f]
    b, h, w = sub.shape
    coarse = sub.reshape(b, h // f, f, w // f, f).mean(axis=(2, 4)).astype(np.float32)
    ct = t * Affine.translation(1, 1) * Affine.scale(f)
    coarse_path = write_raster(
        tmp_path / "coarse_2020-02-01.tif", coarse, transform=ct, descriptions=names
    )
    grid = Grid(CRS.from_epsg(32651), t, n, n)
    with GridReader(open_acquisition(coarse_path), grid, model=model) as reader:
        lattice = coarse_lattice(reader)
        as_read = reader.read_all()[0]
    assert lattice is not None
    fine_scene = read_scene(open_acquisition(fine_path), grid, model=model)
    seen = as_delivered_on(fine_scene, lattice)
    inner = (slice(None), slice(12, -12), slice(12, -12))
    spread = float(np.nanstd(as_read[inner]))
    assert float(np.nanmax(np.abs(seen[inner] - as_read[inner]))) < 0.02 * spread
    # a Gaussian of the same variance misses the aliasing by far more
    blurred = common_detail(fine_scene.data, as_read, (0.5, 2.0), 0.5)[0]
    assert float(np.nanmax(np.abs(blurred[inner] - as_read[inner]))) > 0.2 * spread


def test_tiles_of_one_product_share_their_lattice(tmp_path: Path) -> None:
    """Two tiles whose origins are whole pixels apart are one lattice; half a pixel apart, none
    (the Gaussian stands in)."""
    t = Affine(2.0, 0, 500000.0, 0, -2.0, 4390000.0)
    img = np.full((3, 20, 20), 500, np.float32)
    names = ("red", "green", "blue")
    grid = Grid(CRS.from_epsg(32651), Affine(0.5, 0, 500000.0, 0, -0.5, 4390000.0), 160, 80)
    for shift, shared in ((20.0, True), (20.5, False)):
        folder = tmp_path / f"tiles{shift:g}"
        folder.mkdir()
        east = t * Affine.translation(shift, 0)
        write_raster(folder / "a_2020-02-01.tif", img, transform=t, descriptions=names)
        write_raster(folder / "b_2020-02-01.tif", img, transform=east, descriptions=names)
        acq = open_acquisition(folder)
        assert len(acq.sources) == 2
        with GridReader(acq, grid) as reader:
            lattice = coarse_lattice(reader)
        assert (lattice in (t, east)) if shared else lattice is None
