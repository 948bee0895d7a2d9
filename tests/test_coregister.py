"""Co-registration on synthetic images: sign convention, models, failure, records, files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from scipy import ndimage as ndi

from sohae_watch.coreg_fit import choose_model
from sohae_watch.coreg_phase import correlate_windows
from sohae_watch.coregister import coregister_arrays
from sohae_watch.grid import Grid

N = 384


def texture(seed: int = 0, n: int = N + 80) -> np.ndarray:
    """A smooth random texture with fine detail (float64)."""
    rng = np.random.default_rng(seed)
    coarse = ndi.gaussian_filter(rng.normal(0, 1, (n, n)), 6) * 40
    fine = ndi.gaussian_filter(rng.normal(0, 1, (n, n)), 1.2) * 3
    return 100 + coarse + fine


def moved(img: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """``img`` with its content moved by ``(sx, sy)`` (Fourier shift), cropped to N x N."""
    f = ndi.fourier_shift(np.fft.fft2(img), (sy, sx))
    return np.fft.ifft2(f).real[40 : 40 + N, 40 : 40 + N].astype(np.float32)


def pair(sx: float, sy: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    img = texture(seed)
    return moved(img, 0, 0), moved(img, sx, sy)


@pytest.mark.parametrize("shift", [(0.25, -0.4), (3.6, 1.2), (-17.3, 9.8)])
def test_shift_sign_follows_the_contract(shift: tuple[float, float]) -> None:
    ref, tgt = pair(*shift)
    res = coregister_arrays(ref, tgt)
    assert res.status == "ok"
    assert res.shift_x_px == pytest.approx(shift[0], abs=0.03)
    assert res.shift_y_px == pytest.approx(shift[1], abs=0.03)
    assert res.model is not None and res.model_kind == "translation"
    assert res.model.c == pytest.approx(shift[0], abs=0.03)
    assert 0.0 <= res.reliability <= 1.0
    assert res.n_valid_points >= 6 and res.n_points >= res.n_valid_points


def test_gain_gamma_noise_and_nan() -> None:
    ref, tgt = pair(1.3, -2.7, seed=1)
    rng = np.random.default_rng(3)
    t = 1.7 * (tgt / tgt.max()) ** 0.7 * 1000 + rng.normal(0, 5, tgt.shape)
    t[:, :60] = np.nan  # nodata strip
    res = coregister_arrays(ref, t.astype(np.float32))
    assert res.status == "ok"
    assert res.shift_x_px == pytest.approx(1.3, abs=0.05)
    assert res.shift_y_px == pytest.approx(-2.7, abs=0.05)


def test_window_correlation_sign_and_reliability() -> None:
    img = texture(2)
    ref = moved(img, 0, 0)[:128, :128][None]
    tgt = moved(img, 2.5, -1.25)[:128, :128][None]
    v = np.ones_like(ref, dtype=bool)
    res = correlate_windows(ref, tgt, v, v)
    assert res.dx[0] == pytest.approx(2.5, abs=0.03)
    assert res.dy[0] == pytest.approx(-1.25, abs=0.03)
    assert res.reliability[0] > 0.8
    noise = np.random.default_rng(0).normal(0, 1, ref.shape).astype(np.float32)
    assert correlate_windows(ref, noise, v, v).reliability[0] < 0.15


def test_featureless_target_fails_without_a_shift() -> None:
    ref, _ = pair(0, 0)
    rng = np.random.default_rng(0)
    cloud = (5000 + rng.normal(0, 10, ref.shape)).astype(np.float32)
    res = coregister_arrays(ref, cloud)
    assert res.status == "failed"
    assert res.shift_x_px is None and res.shift_y_px is None and res.model is None
    saturated = np.full(ref.shape, 255.0, dtype=np.float32)
    assert coregister_arrays(ref, saturated).status == "failed"
    assert coregister_arrays(ref, np.full(ref.shape, np.nan, np.float32)).status == "failed"


def test_rotation_chooses_affine_and_translation_stays_global() -> None:
    img = texture(4, n=N + 80)
    ref = img[40 : 40 + N, 40 : 40 + N].astype(np.float32)
    c = N / 2.0
    m = (
        Affine.translation(0.8, -0.5)
        * Affine.translation(c, c)
        * Affine.rotation(0.5)
        * Affine.translation(-c, -c)
    )
    inv = ~m
    yy, xx = np.mgrid[0:N, 0:N].astype(float)
    sx, sy = inv * (xx + 0.5, yy + 0.5)
    tgt = ndi.map_coordinates(img, [sy - 0.5 + 40, sx - 0.5 + 40], order=3).astype(np.float32)
    res = coregister_arrays(ref, tgt)
    assert res.method == "tie-points-affine"
    assert res.model is not None
    for p in [(10.0, 10.0), (370.0, 20.0), (200.0, 360.0)]:
        got = np.array(res.model * p)
        want = np.array(m * p)
        assert np.abs(got - want).max() < 0.08
    forced = coregister_arrays(ref, tgt, mode="global")
    assert forced.model_kind == "translation"


def test_model_choice_f_test() -> None:
    rng = np.random.default_rng(0)
    c, r = np.meshgrid(np.arange(64, 1000, 100.0), np.arange(64, 1000, 100.0))
    c, r = c.ravel(), r.ravel()
    d = np.stack([1.5 + rng.normal(0, 0.03, c.size), -0.5 + rng.normal(0, 0.03, c.size)], 1)
    d[3] = [9.0, 9.0]  # an outlier
    w = np.ones(c.size)
    fit, _ = choose_model(c, r, d, w, (1000.0, 1000.0))
    assert fit.kind == "translation" and not fit.inliers[3]
    d2 = d.copy()
    d2[:, 0] += 0.002 * (r - 500)  # a rotation-like gradient, 1 px over the area
    fit2, f = choose_model(c, r, d2, w, (1000.0, 1000.0))
    assert fit2.kind == "affine" and f > 25
    assert fit2.displacement(500.0, 500.0)[0] == pytest.approx(1.5, abs=0.03)


def test_bad_arguments() -> None:
    a = np.zeros((64, 64), np.float32)
    with pytest.raises(ValueError, match="one shape"):
        coregister_arrays(a, np.zeros((64, 65), np.float32))
    with pytest.raises(ValueError, match="mode"):
        coregister_arrays(a, a, mode="sideways")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="too small"):
        coregister_arrays(a[:16, :16], a[:16, :16])


def test_to_dict_metres_east_and_north() -> None:
    ref, tgt = pair(0.6, -1.8, seed=5)
    res = coregister_arrays(ref, tgt)
    grid = Grid(CRS.from_epsg(32633), Affine(10, 0, 330000, 0, -10, 5862000), N, N)
    d = res.to_dict(grid)
    assert d["shift_x_m"] == pytest.approx(6.0, abs=0.3)
    assert d["shift_y_m"] == pytest.approx(18.0, abs=0.3)  # north positive
    assert d["status"] == "ok" and d["model"] == "translation"
    json.dumps(d)
    # a reference in degrees (or feet): metres, not the CRS's units, east and north positive
    deg = 10.0 / 111_320.0  # about 10 m of latitude
    geographic = Grid(CRS.from_epsg(4326), Affine(deg, 0, 15.0, 0, -deg, 52.7), N, N)
    g = res.to_dict(geographic)
    assert g["shift_y_m"] == pytest.approx(18.0, abs=0.4)
    assert g["shift_x_m"] == pytest.approx(
        6.0 * math.cos(math.radians(52.7 - N / 2 * deg)), abs=0.3
    )
    feet = Grid(CRS.from_epsg(2277), Affine(10, 0, 3e6, 0, -10, 1e7), N, N)  # US survey feet
    assert res.to_dict(feet)["shift_x_m"] == pytest.approx(6.0 * 0.3048, abs=0.1)


def _write(path: Path, data: np.ndarray, transform: Affine, nodata: float | None = None) -> None:
    with rasterio.open(
        path, "w", driver="GTiff", width=data.shape[1], height=data.shape[0], count=1,
        dtype="uint16", crs="EPSG:32633", transform=transform, nodata=nodata,
    ) as dst:  # fmt: skip
        dst.write(data.astype(np.uint16)[None])
        dst.update_tags(TIFFTAG_DATETIME="2020:01:01 00:00:00")


def test_coregister_files_writes_corrected_target(tmp_path: Path) -> None:
    from sohae_watch.coreg_files import coregister_files

    img = texture(6) * 20
    ref, tgt = moved(img, 0, 0), moved(img, 2.4, -1.7)
    t0 = Affine(10, 0, 500000, 0, -10, 4000000)
    _write(tmp_path / "ref.tif", ref, t0)
    # the target covers a different extent: 30 px further east (same lattice)
    tgt = tgt[:, 30:]
    _write(tmp_path / "tgt.tif", tgt, t0 * Affine.translation(30, 0), nodata=0)
    out, pts = tmp_path / "out.tif", tmp_path / "pts.geojson"
    res = coregister_files(tmp_path / "ref.tif", tmp_path / "tgt.tif", out, points_out=pts)
    assert res.status == "ok"
    assert res.shift_x_px == pytest.approx(2.4, abs=0.05)
    assert res.shift_y_px == pytest.approx(-1.7, abs=0.05)
    with rasterio.open(out) as ds:
        assert ds.transform == t0 and ds.shape == ref.shape
        corr = ds.read(1).astype(np.float32)
        valid = ds.read_masks(1) > 0
    assert not valid[:, :25].any()  # outside the target
    inner = (slice(20, -20), slice(60, -20))
    assert valid[inner].all()
    err = np.abs(corr[inner] - np.rint(ref[inner]))
    assert float(np.median(err)) < 1.0 + 0.02 * float(np.std(ref))  # uint16 rounding
    doc = json.loads(pts.read_text())
    assert doc["type"] == "FeatureCollection" and len(doc["features"]) == res.n_points


@pytest.mark.parametrize("mode", ["global", "local"])
def test_the_edges_are_kept_where_the_target_reaches_beyond_the_reference(
    tmp_path: Path, mode: str
) -> None:
    """The target was read on the reference's grid only, so the rows and columns whose kernel
    reached past the reference's edge came out as nodata although the target had data there."""
    from sohae_watch.coreg_files import coregister_files

    img = texture(10) * 20
    t0 = Affine(10, 0, 500000, 0, -10, 4000000)
    _write(tmp_path / "ref.tif", moved(img, 0, 0)[60:-60, 60:-60], t0 * Affine.translation(60, 60))
    _write(tmp_path / "tgt.tif", moved(img, 2.3, -1.6), t0)  # 60 px beyond on every side
    out = tmp_path / "out.tif"
    res = coregister_files(tmp_path / "ref.tif", tmp_path / "tgt.tif", out, mode=mode)
    assert res.status == "ok"
    with rasterio.open(out) as ds:
        assert (ds.read_masks(1) > 0).all()


def test_no_valid_pixel_of_the_corrected_target_equals_its_nodata(tmp_path: Path) -> None:
    """The cubic kernel undershoots at a sharp edge down to 0, the declared nodata: such pixels
    were valid in the mask but read as nodata by anything going by the nodata value."""
    from sohae_watch.coreg_files import coregister_files

    img = texture(11) * 20
    img[150:250, 150:250] = 1.0  # a dark block: the kernel rings below 0.5 beside its edges
    t0 = Affine(10, 0, 500000, 0, -10, 4000000)
    _write(tmp_path / "ref.tif", moved(img, 0, 0), t0)
    _write(tmp_path / "tgt.tif", np.clip(moved(img, 1.5, -0.5), 1, None), t0, nodata=0)
    out = tmp_path / "out.tif"
    assert coregister_files(tmp_path / "ref.tif", tmp_path / "tgt.tif", out).status == "ok"
    with rasterio.open(out) as ds:
        data, valid = ds.read(1), ds.read_masks(1) > 0
        assert ds.nodata == 0
    assert valid.sum() > 0.9 * valid.size
    assert not (valid & (data == 0)).any()


def test_a_multiband_target_under_an_affine_model_is_resampled_band_by_band(
    tmp_path: Path,
) -> None:
    """The affine path's spline prefilter ran over the band axis too, on pixels not yet filled:
    every multiband target corrected with an affine model came out all zeros, exit 0."""
    from sohae_watch.coreg_files import coregister_files

    img = texture(8, n=N + 80) * 20
    c = N / 2.0
    m = Affine.translation(c, c) * Affine.rotation(0.4) * Affine.translation(-c, -c)
    yy, xx = np.mgrid[0:N, 0:N].astype(float)
    sx, sy = (~m) * (xx + 0.5, yy + 0.5)
    moved_img = ndi.map_coordinates(img, [sy - 0.5 + 40, sx - 0.5 + 40], order=3)
    ref = img[40 : 40 + N, 40 : 40 + N]
    bands = (lambda a: a, lambda a: 0.5 * a + 700, lambda a: 4000 - 0.3 * a)
    t0 = Affine(10, 0, 500000, 0, -10, 4000000)
    for name, base in (("ref.tif", ref), ("tgt.tif", moved_img)):
        with rasterio.open(
            tmp_path / name, "w", driver="GTiff", width=N, height=N, count=3, dtype="uint16",
            crs="EPSG:32633", transform=t0,
        ) as dst:  # fmt: skip
            dst.write(np.stack([f(base) for f in bands]).astype(np.uint16))
            dst.update_tags(TIFFTAG_DATETIME="2020:01:01 00:00:00")
    out = tmp_path / "out.tif"
    res = coregister_files(tmp_path / "ref.tif", tmp_path / "tgt.tif", out, mode="local")
    assert res.status == "ok" and res.model_kind == "affine"
    with rasterio.open(out) as ds:
        corr = ds.read().astype(np.float32)
        valid = ds.read_masks(1) > 0
    inner = np.zeros(valid.shape, bool)
    inner[40:-40, 40:-40] = True
    assert valid[inner].all()
    for b, f in enumerate(bands):
        want = f(ref).astype(np.uint16).astype(np.float32)
        err = np.abs(corr[b] - want)[inner]
        assert float(np.median(err)) < 0.05 * float(np.std(want[inner])), b


def big_pair_recipe(n: int, shift: tuple[int, int], seed: int = 0) -> np.ndarray:
    """The mean of the visible bands of ``../shared/bench/make_big_pair.py``'s texture (three
    sinusoids under independent white noise per band; 'after' moved and with bright squares)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    yy += shift[1]
    xx += shift[0]
    base = 3000 + 800 * np.sin(xx / 97.0) * np.cos(yy / 131.0) + 400 * np.sin((xx + yy) / 23.0)
    bands = []
    for b in range(3):
        v = base * (1 + 0.1 * b) + rng.normal(0, 60, size=(n, n)).astype(np.float32)
        if shift != (0, 0):
            v = np.where(((xx % 1000) < 60) & ((yy % 1000) < 40), v + 2500, v)
        bands.append(np.clip(v, 1, 65535).astype(np.uint16).astype(np.float32))
    return np.mean(bands, axis=0, dtype=np.float32)


def test_smooth_waves_under_noise_are_registered() -> None:
    """make_big_pair's texture: whitened phase correlation sees mostly noise there; the
    gradient fallback finds the shift. ``after`` samples the texture at (x + 3, y - 2): a
    feature at (c, r) before is at (c - 3, r + 2) after, i.e. (-3, +2) in the contract."""
    ref = big_pair_recipe(1024, (0, 0), seed=0)
    tgt = big_pair_recipe(1024, (3, -2), seed=1)
    res = coregister_arrays(ref, tgt)
    assert res.status != "failed"
    assert res.shift_x_px == pytest.approx(-3.0, abs=0.1)
    assert res.shift_y_px == pytest.approx(2.0, abs=0.1)


def test_shift_beyond_the_coarse_windows_is_found() -> None:
    """200 px east and 150 px north on a 860 x 1060 image: past the coarse windows' reach (they
    find nothing), the wide window finds it and the tie points measured from there agree."""
    rng = np.random.default_rng(4)
    n = 1500
    img = ndi.gaussian_filter(rng.normal(0, 1, (n, n)), 6) * 40
    img += ndi.gaussian_filter(rng.normal(0, 1, (n, n)), 1.2) * 3
    h, w, sx, sy = 860, 1060, 200, -150
    ref = img[300 : 300 + h, 300 : 300 + w].astype(np.float32)
    # a feature at (c, r) of the reference is at (c + sx, r + sy) in the target
    tgt = img[300 - sy : 300 - sy + h, 300 - sx : 300 - sx + w].astype(np.float32)
    res = coregister_arrays(ref, tgt)
    assert res.status == "ok"
    assert res.shift_x_px == pytest.approx(sx, abs=0.03)
    assert res.shift_y_px == pytest.approx(sy, abs=0.03)
    assert res.model is not None and res.model.c == pytest.approx(sx, abs=0.03)
    inliers = [p for p in res.points if p.valid]
    assert len(inliers) >= 6
    assert all(abs(p.dx - sx) < 0.2 and abs(p.dy - sy) < 0.2 for p in inliers)


def test_coregister_command_refuses_outputs_over_its_inputs_and_needs_no_date(
    tmp_path: Path,
) -> None:
    """--out or --points naming an input overwrote it (the reference replaced by the corrected
    target, exit 0); a raster without a date was refused, though co-registration needs none;
    4 bytes per pixel were written as RGB + alpha, the near-infrared band read as transparency."""
    from click.testing import CliRunner

    from sohae_watch.cli.main import cli

    img = texture(9) * 20
    t0 = Affine(10, 0, 500000, 0, -10, 4000000)
    paths = {}
    for name, data in (("ref.tif", moved(img, 0, 0)), ("tgt.tif", moved(img, 1.3, -0.6))):
        paths[name] = tmp_path / name  # no date: neither tag nor name
        with rasterio.open(
            paths[name], "w", driver="GTiff", width=N, height=N, count=4, dtype="uint8",
            crs="EPSG:32633", transform=t0, photometric="MINISBLACK",
        ) as dst:  # fmt: skip
            dst.write(np.stack([np.clip(data / 20, 0, 255)] * 4).astype(np.uint8))
            dst.descriptions = ("red", "green", "blue", "nir")
    ref, tgt = str(paths["ref.tif"]), str(paths["tgt.tif"])
    kept = paths["ref.tif"].read_bytes()
    runner = CliRunner()
    for extra, says in (
        (["--out", ref], "--out is an input of this run"),
        (["--out", str(tmp_path / "o.tif"), "--points", tgt], "--points is an input of this run"),
        (["--out", str(tmp_path / "o.png")], "give --out a .tif name"),
    ):
        res = runner.invoke(cli, ["coregister", ref, tgt, *extra])
        assert res.exit_code == 2 and says in res.output, res.output
    assert paths["ref.tif"].read_bytes() == kept
    res = runner.invoke(cli, ["coregister", ref, tgt, "--out", str(tmp_path / "o.tif")])
    assert res.exit_code == 0, res.output
    with rasterio.open(tmp_path / "o.tif") as ds:
        assert ds.count == 4 and ds.colorinterp[3] != rasterio.enums.ColorInterp.alpha
        assert "TIFFTAG_DATETIME" not in ds.tags()


def test_corrected_target_keeps_its_stored_numbers_and_their_scale(tmp_path: Path) -> None:
    """Pixels are read as values (GDAL's scale and offset applied), but the corrected target is
    written as the target stores them, with its scale and offset: read back, the same values."""
    from sohae_watch.coreg_files import coregister_files

    img = texture(9) * 20
    t0 = Affine(10, 0, 500000, 0, -10, 4000000)
    paths = {}
    for name, data in (("ref.tif", moved(img, 0, 0)), ("tgt.tif", moved(img, 1.0, 0.0))):
        paths[name] = tmp_path / name
        with rasterio.open(
            paths[name], "w", driver="GTiff", width=N, height=N, count=1, dtype="uint16",
            crs="EPSG:32633", transform=t0,
        ) as dst:  # fmt: skip
            dst.write(np.clip(data + 1000, 1, 65535).astype(np.uint16)[None])
            dst.scales, dst.offsets = [0.5], [-500.0]
    out = tmp_path / "o.tif"
    res = coregister_files(paths["ref.tif"], paths["tgt.tif"], out)
    assert res.status == "ok" and abs(res.shift_x_px - 1.0) < 0.05
    with rasterio.open(out) as ds, rasterio.open(paths["ref.tif"]) as ref:
        assert (ds.scales, ds.offsets) == ((0.5,), (-500.0,))
        got, want = ds.read(1).astype(float), ref.read(1).astype(float)
    inner = (slice(20, -20), slice(20, -20))
    assert np.abs(got[inner] - want[inner]).mean() < 0.1 * want[inner].std()


def test_two_motions_in_the_tie_points_are_named_not_averaged_away() -> None:
    """One tile of a date georeferenced 3 m apart from the other: the model fitted the larger
    half, called itself ok at 0.98 and left the other half 4 m off (dismantled structures that
    were not). A quarter of the usable tie points agreeing on a shift a pixel or more away is
    a second motion; scattered outliers are not."""
    from sohae_watch.coreg_fit import choose_model
    from sohae_watch.coregister import second_motion

    rng = np.random.default_rng(3)
    c, r = rng.uniform(0, 1000, 100), rng.uniform(0, 800, 100)
    d = np.where((c > 600)[:, None], [5.1, 7.0], [-0.9, 1.0]) + rng.normal(0, 0.05, (100, 2))
    wt = np.full(100, 0.9)
    fit, _ = choose_model(c, r, d, wt, (1000.0, 800.0), "auto")
    shift = tuple(float(v) for v in fit.displacement(500.0, 400.0))
    found = second_motion(c, r, d, wt, fit.inliers, (1000.0, 800.0), shift, fit.rms)
    assert found is not None
    ox, oy, n = found
    assert (round(ox), round(oy)) == ((5, 7) if shift[0] < 2 else (-1, 1))
    assert n == int((~fit.inliers).sum()) and n >= 25
    # a coarse date's tie points scattering by a pixel, in two clouds 2.4 px apart: one motion
    d = np.where((c > 600)[:, None], [-2.6, 1.4], [-3.3, 3.7]) + rng.normal(0, 0.8, (100, 2))
    fit, _ = choose_model(c, r, d, wt, (1000.0, 800.0), "global", tol=0.5)
    shift = tuple(float(v) for v in fit.displacement(500.0, 400.0))
    assert second_motion(c, r, d, wt, fit.inliers, (1000.0, 800.0), shift, fit.rms) is None
    # one motion, with a fifth of the points scattered (cloud, change): no second motion
    d = np.tile([[-0.9, 1.0]], (100, 1)) + rng.normal(0, 0.05, (100, 2))
    d[:20] += rng.uniform(-15, 15, (20, 2))
    fit, _ = choose_model(c, r, d, wt, (1000.0, 800.0), "auto")
    shift = tuple(float(v) for v in fit.displacement(500.0, 400.0))
    assert second_motion(c, r, d, wt, fit.inliers, (1000.0, 800.0), shift) is None


def test_an_image_in_two_halves_moved_apart_is_low_confidence() -> None:
    img = texture(9) * 20
    ref = moved(img, 0, 0)
    whole, right = moved(img, 1.0, 0.0), moved(img, 5.0, 5.0)
    halves = whole.copy()
    halves[:, N // 2 :] = right[:, N // 2 :]
    assert coregister_arrays(ref, whole).status == "ok"
    res = coregister_arrays(ref, halves)
    assert res.status == "low-confidence" and res.reliability < 0.7
