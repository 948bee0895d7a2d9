"""Co-registration's fast paths give the results of the plain ones: the bilinear shift of the
gradient measurement, the probe that stops phase correlation early, the reading of all bands
for a nodata mask."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from scipy import ndimage as ndi

from sohae_watch import coregister as C
from sohae_watch.coreg_fit import fit_translation
from sohae_watch.coreg_phase import SETTLED, gaussian_nearest, gradient_windows, shift_bilinear
from test_coregister import big_pair_recipe


@pytest.mark.parametrize(
    "shift",
    [(0.0, 0.0), (3.0, -2.0), (0.3, -0.7), (-1.25, 2.5), (7.9, 0.0), (0.0, -0.01), (-30.2, 41.6)],
)
def test_shift_bilinear_equals_scipy(shift: tuple[float, float]) -> None:
    """Integer and fractional shifts, inside and beyond the image's edge (mode nearest)."""
    img = np.random.default_rng(1).normal(0, 100, (41, 67)).astype(np.float32)
    want = ndi.shift(img, shift, order=1, mode="nearest")
    got = shift_bilinear(img, shift)
    assert got.dtype == np.float32 and got.shape == img.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)
    if float(shift[0]).is_integer() and float(shift[1]).is_integer():
        np.testing.assert_array_equal(got, want)
    # float64 input: same values, float32 out
    np.testing.assert_allclose(shift_bilinear(img.astype(np.float64), shift), want, atol=1e-4)


def _reference_gradient(a, b, va, vb, ix, iy):  # type: ignore[no-untyped-def]
    """The straightforward form of :func:`gradient_windows` (scipy shifts, float64 jacobian),
    as it was before the fast path; the fast path must give its numbers. Also the size of each
    window's last update (px), from which the fast path drops windows that did not settle."""
    import math

    from sohae_watch.coreg_phase import MIN_VALID_FRACTION

    def normalise(win, valid):  # type: ignore[no-untyped-def]
        # one level for the whole stack, over its valid pixels; 0 where invalid
        vals = win[valid]
        return np.where(valid, (win - vals.mean()) / vals.std(), 0.0).astype(np.float32)

    w = a.shape[1]
    va = va & np.isfinite(a)
    vbb = vb & np.isfinite(b)
    measured = (va.mean(axis=(1, 2)) >= MIN_VALID_FRACTION) & (
        vbb.mean(axis=(1, 2)) >= MIN_VALID_FRACTION
    )
    a = ndi.gaussian_filter(normalise(a, va), (0, 1.5, 1.5), mode="nearest")
    b = ndi.gaussian_filter(normalise(b, vbb), (0, 1.5, 1.5), mode="nearest")
    va = ~ndi.maximum_filter(~va, size=(1, 11, 11))
    vb = (~ndi.maximum_filter(~vbb, size=(1, 11, 11))).astype(np.float32)
    sx, sy = np.array(ix, float), np.array(iy, float)
    last = np.full(len(a), np.inf)
    yy, xx = np.mgrid[0:w, 0:w]
    for i in np.flatnonzero(measured):
        for _ in range(8):
            bw = ndi.shift(b[i], (-sy[i], -sx[i]), order=1, mode="nearest")
            vw = ndi.shift(vb[i], (-sy[i], -sx[i]), order=1, mode="constant", cval=0.0)
            e = int(math.ceil(max(abs(sx[i]), abs(sy[i])))) + 3
            use = va[i] & (vw > 0.999) & (yy >= e) & (yy < w - e) & (xx >= e) & (xx < w - e)
            gy, gx = np.gradient(0.5 * (a[i] + bw))
            jac = np.stack([gx[use], gy[use], bw[use]], axis=1).astype(np.float64)
            step = np.linalg.solve(jac.T @ jac, jac.T @ (bw - a[i])[use].astype(np.float64))
            sx[i] -= step[0]
            sy[i] -= step[1]
            last[i] = max(abs(step[0]), abs(step[1]))
            if last[i] < 2e-3:
                break
    return sx, sy, last


def test_gradient_windows_match_the_plain_computation() -> None:
    ref = big_pair_recipe(640, (0, 0), seed=0)
    tgt = big_pair_recipe(640, (3, -2), seed=1)
    tgt[300:340, 50:200] = np.nan  # some invalid pixels: the masked path
    a = np.stack([ref[r : r + 256, c : c + 256] for r in (0, 192, 384) for c in (0, 384)])
    b = np.stack([tgt[r : r + 256, c : c + 256] for r in (0, 192, 384) for c in (0, 384)])
    va, vb = np.isfinite(a), np.isfinite(b)
    init = np.full(len(a), -2.6), np.full(len(a), 1.6)
    res = gradient_windows(a, b, va, vb, *init)
    want_x, want_y, last = _reference_gradient(a, b, va, vb, *init)
    # measured: the windows whose eight updates settled (one here wanders off to dy = 7 px)
    settled = last < SETTLED
    assert 0 < settled.sum() < len(a)
    np.testing.assert_array_equal(res.measured, settled)
    np.testing.assert_allclose(res.dx[settled], want_x[settled], atol=1e-3)
    np.testing.assert_allclose(res.dy[settled], want_y[settled], atol=1e-3)
    # windows solved on two threads: the same numbers exactly
    two = gradient_windows(a, b, va, vb, *init, threads=2)
    np.testing.assert_array_equal(two.dx, res.dx)
    np.testing.assert_array_equal(two.dy, res.dy)
    np.testing.assert_array_equal(two.reliability, res.reliability)


def _count_phase_windows(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    seen: list[int] = []
    real = C.correlate_windows

    def counting(a, *args, **kw):  # type: ignore[no-untyped-def]
        seen.append(len(a))
        return real(a, *args, **kw)

    monkeypatch.setattr(C, "correlate_windows", counting)
    return seen


# a grid wide enough for the sparse layout of large images (rows of windows side by side, the
# rows apart) with few points: 8 rows of 24 windows of 128 px; 7 x 7 coarse windows
SHAPE = (1536, 3072)
POINTS = 200
COARSE = 7 * 7


def waves(shape: tuple[int, int], shift: tuple[int, int], seed: int) -> np.ndarray:
    """:func:`test_coregister.big_pair_recipe` on a rectangular grid."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    yy += shift[1]
    xx += shift[0]
    base = 3000 + 800 * np.sin(xx / 97.0) * np.cos(yy / 131.0) + 400 * np.sin((xx + yy) / 23.0)
    bands = [base * (1 + 0.1 * b) + rng.normal(0, 60, size=shape) for b in range(3)]
    return np.mean(np.clip(bands, 1, 65535).astype(np.uint16), axis=0, dtype=np.float32)


def _both(ref: np.ndarray, tgt: np.ndarray, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """(result, phase windows measured) with the probe, then the same without it."""
    out = []
    for probe in (True, False):
        with monkeypatch.context() as m:
            seen = _count_phase_windows(m)
            if not probe:
                m.setattr(C, "_probe_split", lambda *a: None)
            rd, td = C.array_reader(ref, None), C.array_reader(tgt, None)
            out.append((C.coregister_readers(rd, td, SHAPE, max_points=POINTS), sum(seen)))
    return out


def test_probe_stops_phase_correlation_where_it_sees_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """make_big_pair's texture, the coarse phase windows agreeing by chance (as they do on the
    full-size pair): three rows of phase windows, not all eight, then gradients (same result
    as without the probe)."""
    ref, tgt = waves(SHAPE, (0, 0), 0), waves(SHAPE, (3, -2), 1)
    real = C._coarse

    def chance(ref, tgt, shape, windows, method="phase", threads=1):  # type: ignore[no-untyped-def]
        if method != "phase":
            return real(ref, tgt, shape, windows, method, threads)
        c, r = np.array([500.0, 1500.0, 2500.0]), np.array([300.0, 800.0, 1300.0])
        d = np.tile([-3.0, 2.0], (3, 1))
        return fit_translation(c, r, d, np.ones(3), tol=4.0)

    monkeypatch.setattr(C, "_coarse", chance)
    (res, seen), (plain, seen_plain) = _both(ref, tgt, monkeypatch)
    assert res.method.startswith("gradient") and plain.method == res.method
    assert res.shift_x_px == pytest.approx(-3.0, abs=0.05)
    assert res.shift_y_px == pytest.approx(2.0, abs=0.05)
    assert res.shift_x_px == pytest.approx(plain.shift_x_px, abs=1e-6)
    assert res.shift_y_px == pytest.approx(plain.shift_y_px, abs=1e-6)
    assert seen == 3 * 24 and seen_plain == 8 * 24  # (the coarse windows are stubbed)


@pytest.mark.parametrize("cover", ["cloud", "nodata"])
def test_probe_keeps_phase_correlation_when_the_first_rows_are_covered(
    monkeypatch: pytest.MonkeyPatch, cover: str
) -> None:
    """The top rows covered (featureless cloud, or nodata): phase correlation still measures
    every window and gives the same result as without the probe."""
    h, w = SHAPE
    rng = np.random.default_rng(4)
    coarse = ndi.gaussian_filter(rng.normal(0, 1, (h + 80, w + 80)), 6) * 40
    img = 100 + coarse + ndi.gaussian_filter(rng.normal(0, 1, coarse.shape), 1.2) * 3
    f = ndi.fourier_shift(np.fft.fft2(img), (-0.7, 1.3))
    ref = img[40 : 40 + h, 40 : 40 + w].astype(np.float32)
    tgt = np.fft.ifft2(f).real[40 : 40 + h, 40 : 40 + w].astype(np.float32)
    top = slice(0, int(0.45 * h))
    if cover == "cloud":  # on the target: bright, smooth, not clipped
        tgt[top] = 400 + ndi.gaussian_filter(rng.normal(0, 2, tgt[top].shape), 3)
    else:
        tgt[top] = np.nan
    (res, seen), (plain, _) = _both(ref, tgt, monkeypatch)
    assert res.status == "ok" and not res.method.startswith("gradient")
    assert res.shift_x_px == pytest.approx(1.3, abs=0.03)
    assert res.shift_y_px == pytest.approx(-0.7, abs=0.03)
    assert res.shift_x_px == pytest.approx(plain.shift_x_px, abs=1e-4)
    assert res.shift_y_px == pytest.approx(plain.shift_y_px, abs=1e-4)
    assert (res.n_points, res.n_valid_points) == (plain.n_points, plain.n_valid_points)
    assert seen == COARSE + 8 * 24  # every window was measured


def test_strip_reader_reads_all_bands_for_a_nodata_mask(tmp_path: Path) -> None:
    """A 4-band file with nodata 0 read for its visible bands: their mean, and GDAL's dataset
    mask (valid where any band is), taken from the pixels of every band."""
    from sohae_watch import coreg_files
    from sohae_watch.ingest import open_acquisition
    from sohae_watch.reader import GridReader

    rng = np.random.default_rng(2)
    data = rng.integers(1, 4000, (4, 300, 200)).astype(np.uint16)
    data[:, :40, :30] = 0  # nodata in every band
    data[:3, 100:120, 50:90] = 0  # visible bands zero, NIR valid: GDAL's mask says valid
    data[3, 200:230, 10:60] = 0  # NIR alone zero
    data[0, 250:260, :] = 0  # one band zero
    path = tmp_path / "four_2024-05-01.tif"
    profile = {
        "driver": "GTiff", "width": 200, "height": 300, "count": 4, "dtype": "uint16",
        "crs": CRS.from_epsg(32651), "transform": Affine(0.5, 0, 400000, 0, -0.5, 4400000),
        "nodata": 0, "tiled": True, "blockxsize": 64, "blockysize": 64,
    }  # fmt: skip
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data)
        ds.descriptions = ("red", "green", "blue", "nir")
    acq = open_acquisition(path)
    assert acq.roles == ("red", "green", "blue", "nir")
    grid = coreg_files.native_grid(acq)
    with GridReader(acq, grid) as gr:
        sr = coreg_files.StripReader(gr)
        assert gr.roles == ("red", "green", "blue")
        img, valid = sr._fetch(0, 300)
    with rasterio.open(path) as ds:
        gdal_mask = ds.dataset_mask() > 0
    np.testing.assert_array_equal(valid, gdal_mask)
    want = np.where(gdal_mask, data[:3].astype(np.float32).mean(axis=0, dtype=np.float32), np.nan)
    np.testing.assert_array_equal(img, want)
    assert not valid[:40, :30].any() and valid[100:120, 50:90].all()


@pytest.mark.parametrize("shape", [(512, 512), (128, 96), (37, 61), (5, 5)])
def test_gaussian_nearest_equals_scipy(shape: tuple[int, int]) -> None:
    """The gradient windows' smoothing is scipy's Gaussian (mode nearest) to float32 rounding,
    also for images narrower than the kernel."""
    img = np.random.default_rng(2).normal(0, 3, shape).astype(np.float32)
    want = ndi.gaussian_filter(img, 1.5, mode="nearest")
    got = gaussian_nearest(img, 1.5)
    assert got.dtype == np.float32 and got.shape == img.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-6)
