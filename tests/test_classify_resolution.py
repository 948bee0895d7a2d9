"""Structures seen at two resolutions: the insides are compared at the coarser date's detail."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from click.testing import CliRunner
from rasterio.enums import Resampling
from scipy import ndimage

from sohae_watch.classify import common_detail
from sohae_watch.cli.main import cli

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


@pytest.mark.parametrize("f", [4, 8], ids=["2m", "4m"])
def test_a_structure_is_not_modified_by_a_coarser_sensor(
    samples: Path, tmp_path: Path, f: int
) -> None:
    """The samples' Mar 2 -> Mar 6 pair with Mar 6 delivered at 2 m or 4 m instead of 0.5 m:
    every structure keeps its true status (the 14 m gantry tower, a lattice, read 'modified' at
    2 m when its blurred inside was compared with the sharp one, and 'removed' at 4 m when its
    blurred outline was)."""
    truth = json.loads((samples / "truth.json").read_text())
    pair = next(
        p for p in truth["pairs"] if (p["before"], p["after"]) == ("2019-03-02", "2019-03-06")
    )
    files = {a["date"]: a["files"] for a in truth["acquisitions"]}
    src_path = samples / files["2019-03-06"][0]
    coarse = tmp_path / "coarse_2019-03-06.tif"
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
            str(samples / files["2019-03-02"][0]),
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
