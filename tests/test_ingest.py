"""Ingest across CRSs, tiles, resolutions, date sources and validity sources."""

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.control import GroundControlPoint
from rasterio.crs import CRS
from rasterio.rpc import RPC
from rasterio.warp import transform_bounds

from conftest import textured, write_raster
from sohae_watch.errors import InputError
from sohae_watch.grid import Grid
from sohae_watch.ingest import catalog, open_acquisition, open_raster
from sohae_watch.reader import GridReader, block_rows, read_scene

T0 = Affine(0.5, 0, 500000.0, 0, -0.5, 4390000.0)


def coord_image(shape: tuple[int, int]) -> np.ndarray:
    """Pixel values encode their own row and column, so a placement is checked exactly."""
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    return np.stack([rows + 1, cols + 1, rows + cols + 1, np.full(shape, 7)]).astype(np.uint16)


def interpret(path: Path, *kinds: str) -> None:
    """Set each band's colour interpretation (after writing, as rasterio users do)."""
    with rasterio.open(path, "r+") as ds:
        ds.colorinterp = [rasterio.enums.ColorInterp[k] for k in kinds]


def test_band_roles_from_descriptions_and_default(tmp_path: Path) -> None:
    data = textured((8, 8))
    p = write_raster(
        tmp_path / "a_2019-01-01.tif", data, descriptions=["nir", "red", "green", "blue"]
    )
    assert open_raster(p).roles == ("nir", "red", "green", "blue")
    q = write_raster(tmp_path / "b_2019-01-01.tif", data)
    assert open_raster(q).roles == ("red", "green", "blue", "nir")


@pytest.mark.parametrize("shift", [(0.4, -0.3), (-1.75, 0.0), (0.0, 2.5)])
def test_abutting_tiles_moved_by_a_fraction_leave_no_seam(
    tmp_path: Path, shift: tuple[float, float]
) -> None:
    """Four tiles meeting edge to edge (a commercial delivery's R1C1, R1C2, ...) moved by a
    fractional registration: each tile was moved alone, its edge pixels lacked their neighbour
    in the next tile, and a seam of invalid pixels (255 in the mask) ran along every border.
    The mosaic now reads as the scene in one file does."""
    data = textured((60, 70))
    t = Affine(0.5, 0, 500000.0, 0, -0.5, 4390000.0)
    (tmp_path / "whole").mkdir()
    (tmp_path / "tiles").mkdir()
    whole = write_raster(tmp_path / "whole" / "a_2019-01-01.tif", data, transform=t, nodata=0)
    for name, (r, c) in {
        "r1c1": (0, 0),
        "r1c2": (0, 33),
        "r2c1": (25, 0),
        "r2c2": (25, 33),
    }.items():
        part = data[:, r : r + 25 if r == 0 else 60, c : c + 33 if c == 0 else 70]
        write_raster(
            tmp_path / "tiles" / f"{name}_2019-01-01.tif",
            part,
            transform=t * Affine.translation(c, r),
            nodata=0,
        )
    grid = open_raster(whole).grid
    model = Affine.translation(*shift)
    with GridReader(open_acquisition(whole), grid, model=model) as reader:
        want, want_valid = reader.read(0, 0, 60, 70)
    with GridReader(open_acquisition(tmp_path / "tiles"), grid, model=model) as reader:
        got, valid = reader.read(0, 0, 60, 70)
        window, window_valid = reader.read(20, 28, 12, 11)  # across both borders
    assert want_valid.sum() > 3000
    np.testing.assert_array_equal(valid, want_valid)
    np.testing.assert_allclose(got[:, valid], want[:, valid], rtol=1e-6)
    np.testing.assert_array_equal(window_valid, want_valid[20:32, 28:39])
    np.testing.assert_allclose(window, want[:, 20:32, 28:39], rtol=1e-6)


def test_a_band_described_as_nir_is_data_where_gdal_reads_alpha(tmp_path: Path) -> None:
    """A 4-band 8-bit GeoTIFF with GDAL's defaults is RGB + alpha: its NIR, described as such,
    was dropped (and the vegetation screens with it) without a word. Its zeros (dark water in
    8 bits) are ground, not transparency."""
    data = (textured((8, 8)) // 16).astype(np.uint8)
    data[3, :2, :2] = 0
    p = write_raster(
        tmp_path / "a_2019-01-01.tif", data, descriptions=["red", "green", "blue", "nir"]
    )
    with rasterio.open(p) as ds:
        assert ds.colorinterp[3] == rasterio.enums.ColorInterp.alpha  # GDAL's default
    src = open_raster(p)
    assert (src.data_bands, src.roles) == ((1, 2, 3, 4), ("red", "green", "blue", "nir"))
    scene = read_scene(open_acquisition(p), src.grid)
    assert scene.valid.all()
    np.testing.assert_array_equal(scene.data[3], data[3])


def test_an_alpha_band_gdal_does_not_mask_with_still_masks(tmp_path: Path) -> None:
    """A band made alpha after the file was written: GDAL's mask flags say every pixel is valid,
    so the band was dropped from the data but its zeros were compared as ground."""
    data = np.concatenate([textured((16, 16)), np.full((1, 16, 16), 65535, np.uint16)])
    data[4, :, :4] = 0
    p = write_raster(tmp_path / "a_2019-01-01.tif", data, photometric="MINISBLACK")
    interpret(p, "gray", "undefined", "undefined", "undefined", "alpha")
    with rasterio.open(p) as ds:
        assert ds.mask_flag_enums[0] == [rasterio.enums.MaskFlags.all_valid]
    src = open_raster(p)
    assert src.data_bands == (1, 2, 3, 4)
    scene = read_scene(open_acquisition(p), src.grid)
    assert not scene.valid[:, :4].any() and scene.valid[:, 4:].all()


def test_an_unnamed_fourth_band_beside_rgb_is_nir(tmp_path: Path) -> None:
    """Bands 1-3 interpreted as RGB and band 4 undefined: band 4 takes its default role, near
    infrared, as the contract says for a band without a role (it was 'b4', dropped)."""
    p = write_raster(tmp_path / "a_2019-01-01.tif", textured((8, 8)), photometric="RGB")
    with rasterio.open(p) as ds:
        assert ds.colorinterp[3] == rasterio.enums.ColorInterp.undefined
    assert open_raster(p).roles == ("red", "green", "blue", "nir")
    q = write_raster(tmp_path / "b_2019-01-01.tif", textured((8, 8)), photometric="RGB")
    interpret(q, "blue", "green", "red", "undefined")
    assert open_raster(q).roles == ("blue", "green", "red", "nir")


def test_alpha_band_is_validity_not_data(tmp_path: Path) -> None:
    data = textured((8, 8), bands=3)
    alpha = np.full((1, 8, 8), 255, np.uint16)
    alpha[0, :, :4] = 0
    p = write_raster(
        tmp_path / "a_2019-01-01.tif", np.concatenate([data, alpha]), photometric="RGB"
    )
    interpret(p, "red", "green", "blue", "alpha")
    src = open_raster(p)
    assert src.data_bands == (1, 2, 3)
    scene = read_scene(open_acquisition(p), src.grid)
    assert not scene.valid[:, :4].any() and scene.valid[:, 4:].all()
    assert np.isnan(scene.data[:, :, :4]).all()


def test_aligned_window_reads_exact_pixels(tmp_path: Path) -> None:
    data = coord_image((40, 50))
    p = write_raster(tmp_path / "a_2019-01-01.tif", data, nodata=0)
    acq = open_acquisition(p)
    grid = acq.sources[0].grid.crop(10, 20, 5, 6)
    scene = read_scene(acq, grid)
    assert scene.valid.all()
    np.testing.assert_array_equal(scene.data[0], data[0, 10:15, 20:26])
    np.testing.assert_array_equal(scene.data[1], data[1, 10:15, 20:26])


def test_window_beyond_raster_is_invalid(tmp_path: Path) -> None:
    p = write_raster(tmp_path / "a_2019-01-01.tif", coord_image((10, 10)))
    acq = open_acquisition(p)
    grid = acq.sources[0].grid.crop(-5, -5, 10, 10)
    scene = read_scene(acq, grid)
    assert scene.valid[5:, 5:].all() and not scene.valid[:5].any() and not scene.valid[:, :5].any()


@pytest.mark.parametrize("shift", [(-3.0, 2.0), (1.25, -0.5)])
def test_corrected_read_is_the_shifted_source(tmp_path: Path, shift: tuple[float, float]) -> None:
    """A co-registration translation is applied when reading: whole pixels give the source's
    pixels, fractions their bilinear blend; a window reaching past the raster is invalid there."""
    data = coord_image((40, 50)).astype(np.float32)
    data[3] = textured((40, 50), bands=1)[0]
    p = write_raster(tmp_path / "a_2019-01-01.tif", data.astype(np.uint16))
    acq = open_acquisition(p)
    grid = acq.sources[0].grid
    sx, sy = shift
    with GridReader(acq, grid, model=Affine.translation(sx, sy)) as reader:
        got, valid = reader.read(10, 12, 8, 9)
        edge, edge_valid = reader.read(30, 40, 10, 10)
    ix, iy = int(np.floor(sx)), int(np.floor(sy))
    fx, fy = sx - ix, sy - iy
    src = data.astype(np.uint16).astype(np.float64)[:, 10 + iy : 19 + iy, 12 + ix : 22 + ix]
    want = (
        (1 - fx) * (1 - fy) * src[:, :-1, :-1]
        + fx * (1 - fy) * src[:, :-1, 1:]
        + (1 - fx) * fy * src[:, 1:, :-1]
        + fx * fy * src[:, 1:, 1:]
    )
    assert valid.all()
    np.testing.assert_allclose(got, want, rtol=1e-6)
    # the corrected window [30:40, 40:50] samples source rows/cols up to 40 + shift + 1
    last_col = 50 - ix - (1 if fx else 0)
    last_row = 40 - iy - (1 if fy else 0)
    assert edge_valid[: last_row - 30, : last_col - 40].all()
    assert not edge_valid[last_row - 30 :].any() and not edge_valid[:, last_col - 40 :].any()
    assert np.isnan(edge[:, ~edge_valid]).all() and np.isfinite(edge[:, edge_valid]).all()


def test_corrected_read_past_the_edge_of_a_nodata_file(tmp_path: Path) -> None:
    """A shifted read reaching past the raster decodes into the padded result: with a declared
    nodata and only some of the bands asked for, values and validity are those of the source."""
    data = coord_image((40, 50))
    data[:, 30:, 45:] = 0  # nodata in every band
    p = write_raster(tmp_path / "a_2019-01-01.tif", data, nodata=0)
    acq = open_acquisition(p)
    grid = acq.sources[0].grid
    with GridReader(acq, grid, model=Affine.translation(3.0, -2.0)) as reader:
        reader.roles = tuple(acq.roles[1:3])
        got, valid = reader.read(25, 40, 15, 10)  # source rows 23:38, columns 43:53 (50 on)
    src = data[1:3, 23:38, 43:50].astype(np.float32)
    want_valid = np.zeros((15, 10), bool)
    want_valid[:, :7] = (data[:, 23:38, 43:50] != 0).any(axis=0)
    np.testing.assert_array_equal(valid, want_valid)
    np.testing.assert_array_equal(got[:, :, :7][:, want_valid[:, :7]], src[:, want_valid[:, :7]])
    assert np.isnan(got[:, ~valid]).all()


def test_nodata_declared_and_given(tmp_path: Path) -> None:
    data = textured((10, 10))
    data[:, 0, :] = 0
    p = write_raster(tmp_path / "a_2019-01-01.tif", data, nodata=0)
    s = read_scene(open_acquisition(p), open_raster(p).grid)
    assert not s.valid[0].any() and s.valid[1:].all()
    q = write_raster(tmp_path / "b_2019-01-01.tif", data)  # undeclared
    s2 = read_scene(open_acquisition(q, nodata=0), open_raster(q).grid)
    assert not s2.valid[0].any() and s2.valid[1:].all()


def test_undeclared_zero_fill_is_not_ground(tmp_path: Path) -> None:
    """A file that declares no nodata: a pixel 0 in every band is fill (no sensor reads that
    over the ground), one 0 in some bands only is a pixel. Read as it is and reprojected."""
    data = textured((40, 40))
    data[:, :, :10] = 0  # a filled strip
    data[0, 20:, 20] = 0  # one band's zeros in a column
    q = write_raster(tmp_path / "b_2019-01-01.tif", data)
    grid = open_raster(q).grid
    s = read_scene(open_acquisition(q), grid)
    assert not s.valid[:, :10].any() and s.valid[:, 10:].all()
    # on another CRS's grid (GDAL's warper): the strip is still no ground
    wgs84 = CRS.from_epsg(4326)
    other = Grid.from_bounds(wgs84, transform_bounds(grid.crs, wgs84, *grid.bounds), 2e-6)
    w = read_scene(open_acquisition(q), other)
    assert w.valid.any()
    assert not (w.valid & (w.data == 0).all(axis=0)).any()


def test_nan_pixels_are_invalid(tmp_path: Path) -> None:
    data = textured((10, 10)).astype(np.float32)
    data[:, :, 3] = np.nan
    p = write_raster(tmp_path / "a_2019-01-01.tif", data)
    s = read_scene(open_acquisition(p), open_raster(p).grid)
    assert not s.valid[:, 3].any() and s.valid[:, 4].all()


def test_two_tiles_mosaic_into_one_acquisition(tmp_path: Path) -> None:
    full = coord_image((20, 40))
    write_raster(tmp_path / "site_20190302_west.tif", full[:, :, :24], transform=T0, nodata=0)
    write_raster(
        tmp_path / "site_20190302_east.tif",
        full[:, :, 20:],
        transform=T0 @ Affine.translation(20, 0),
        nodata=0,
    )
    acqs, skipped = catalog(tmp_path)
    assert not skipped and len(acqs) == 1 and len(acqs[0].sources) == 2
    grid = Grid(CRS.from_epsg(32651), T0, 40, 20)
    s = read_scene(acqs[0], grid)
    assert s.valid.all()
    np.testing.assert_array_equal(s.data[1], full[1])


def test_other_crs_and_resolution_reprojected(tmp_path: Path) -> None:
    """A tile in EPSG:4326 and one at 0.7 m land on the 0.5 m UTM grid at the right place."""
    from rasterio.warp import calculate_default_transform, reproject

    grid = Grid(CRS.from_epsg(32651), T0, 200, 200)
    data = textured((200, 200), seed=3)
    ref = write_raster(tmp_path / "ref_2019-01-01.tif", data, transform=T0)
    dst_t, w, h = calculate_default_transform(grid.crs, "EPSG:4326", 200, 200, *grid.bounds)
    ll = np.zeros((4, h, w), np.uint16)
    reproject(
        data,
        ll,
        src_transform=T0,
        src_crs=grid.crs,
        dst_transform=dst_t,
        dst_crs="EPSG:4326",
        resampling=rasterio.enums.Resampling.cubic,
    )
    other = write_raster(
        tmp_path / "ll_2019-01-02.tif", ll, crs="EPSG:4326", transform=dst_t, nodata=0
    )
    s_ref = read_scene(open_acquisition(ref), grid)
    s_ll = read_scene(open_acquisition(other), grid)
    inner = np.zeros(grid.shape, bool)
    inner[20:-20, 20:-20] = True
    assert s_ll.valid[inner].all()
    diff = np.abs(s_ll.data[0] - s_ref.data[0])[inner]
    assert np.median(diff) < 0.02 * np.ptp(data[0])


def test_dates_from_tag_stac_and_name(tmp_path: Path) -> None:
    d = textured((8, 8))
    write_raster(tmp_path / "a.tif", d, tags={"TIFFTAG_DATETIME": "2019:02:16 02:30:00"})
    write_raster(tmp_path / "b.tif", d)
    (tmp_path / "b.json").write_text(
        json.dumps(
            {
                "type": "Feature",
                "properties": {
                    "datetime": "2019-03-02T02:00:00Z",
                    "view:sun_azimuth": 150,
                    "view:sun_elevation": 40,
                },
            }
        )
    )
    write_raster(tmp_path / "c_20190306T023000.tif", d)
    acqs, _ = catalog(tmp_path)
    assert [a.date for a in acqs] == [
        dt.date(2019, 2, 16),
        dt.date(2019, 3, 2),
        dt.date(2019, 3, 6),
    ]
    assert [a.sources[0].date_source for a in acqs] == ["tag", "stac", "name"]
    assert acqs[1].sun is not None and acqs[1].sun.elevation == 40


def test_view_angles_from_tags_and_stac(tmp_path: Path) -> None:
    """The view a date was taken from: tags OFF_NADIR / VIEW_AZIMUTH, else the STAC view
    extension's view:off_nadir / view:azimuth; unknown without either (or with a word)."""
    d = textured((8, 8))
    write_raster(
        tmp_path / "a_2019-02-16.tif", d, tags={"OFF_NADIR": "21.5", "VIEW_AZIMUTH": "200"}
    )
    write_raster(tmp_path / "b_2019-03-02.tif", d)
    (tmp_path / "b_2019-03-02.json").write_text(
        json.dumps({"type": "Feature", "properties": {"view:off_nadir": 4, "view:azimuth": 35.5}})
    )
    write_raster(tmp_path / "c_2019-03-06.tif", d)
    write_raster(tmp_path / "d_2019-03-08.tif", d, tags={"OFF_NADIR": "n/a", "VIEW_AZIMUTH": "1"})
    acqs, _ = catalog(tmp_path)
    views = [a.view for a in acqs]
    assert views[0] is not None and (views[0].off_nadir, views[0].azimuth) == (21.5, 200.0)
    assert views[1] is not None and (views[1].off_nadir, views[1].azimuth) == (4.0, 35.5)
    assert views[2] is None and views[3] is None


def test_reads_only_the_needed_window(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A small AOI of a big scene decodes only the blocks it touches."""
    big = textured((2048, 2048), bands=1)
    p = write_raster(
        tmp_path / "big_2019-01-01.tif", big, tiled=True, blockxsize=256, blockysize=256
    )
    acq = open_acquisition(p)
    grid = acq.sources[0].grid.crop(1000, 1000, 50, 50)
    seen: list[object] = []
    orig = rasterio.io.DatasetReader.read

    def spy(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(kwargs.get("window"))
        return orig(self, *args, **kwargs)

    monkeypatch.setattr(rasterio.io.DatasetReader, "read", spy)
    with GridReader(acq, grid) as r:
        data, valid = r.read_all()
    assert valid.all() and data.shape == (1, 50, 50)
    assert seen and all(w is not None and w.width * w.height <= 50 * 50 for w in seen)


@pytest.mark.parametrize(
    ("content", "match"),
    [(b"", "empty"), (b"not a raster at all", "not a readable raster")],
)
def test_unreadable_files(tmp_path: Path, content: bytes, match: str) -> None:
    p = tmp_path / "bad_2019-01-01.tif"
    p.write_bytes(content)
    with pytest.raises(InputError, match=match):
        open_raster(p)


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_no_georeference(tmp_path: Path) -> None:
    """rasterio warns on writing and opening such a file (the CLI silences it); the error is
    what is tested."""
    p = tmp_path / "plain_2019-01-01.tif"
    with rasterio.open(p, "w", driver="GTiff", width=4, height=4, count=1, dtype="uint8") as dst:
        dst.write(np.ones((1, 4, 4), np.uint8))
    with pytest.raises(InputError, match="no georeference"):
        open_raster(p)


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
@pytest.mark.parametrize("kind", ["gcps", "rpcs"])
def test_gcp_or_rpc_georeference_asks_for_a_warp(tmp_path: Path, kind: str) -> None:
    """A commercial Basic/L1B product (RPCs) or a GCP-referenced scan has no map grid: the error
    says which, and how to warp it onto one."""
    p = tmp_path / f"{kind}_2019-01-01.tif"
    with rasterio.open(p, "w", driver="GTiff", width=4, height=4, count=1, dtype="uint8") as dst:
        dst.write(np.ones((1, 4, 4), np.uint8))
        if kind == "gcps":
            corners = [(0, 0), (0, 4), (4, 0), (4, 4)]
            points = [GroundControlPoint(r, c, 5e5 + c, 4.39e6 - r) for r, c in corners]
            dst.gcps = (points, CRS.from_epsg(32651))
        else:
            num, den = [0.0] * 20, [1.0] + [0.0] * 19
            dst.rpcs = RPC(
                height_off=0, height_scale=100, lat_off=39.7, lat_scale=0.01, long_off=124.7,
                long_scale=0.01, line_off=2, line_scale=2, samp_off=2, samp_scale=2,
                line_num_coeff=num, line_den_coeff=den, samp_num_coeff=num, samp_den_coeff=den,
            )  # fmt: skip
    match = "ground control points only" if kind == "gcps" else "not orthorectified"
    with pytest.raises(InputError, match=f"{match}.*gdalwarp"):
        open_raster(p)


def test_catalog_lenient_skips_bad_files(tmp_path: Path) -> None:
    write_raster(tmp_path / "good_2019-01-01.tif", textured((8, 8)))
    (tmp_path / "half_2019-01-02.tif").write_bytes(b"II*\x00garbage")
    acqs, skipped = catalog(tmp_path, strict=False)
    assert len(acqs) == 1 and len(skipped) == 1 and "half" in str(skipped[0][0])
    with pytest.raises(InputError):
        catalog(tmp_path, strict=True)


def test_date_lookup(tmp_path: Path) -> None:
    write_raster(tmp_path / "x_2019-01-01.tif", textured((8, 8)))
    assert open_acquisition("2019-01-01", imagery=tmp_path).date == dt.date(2019, 1, 1)
    with pytest.raises(InputError, match="no acquisition dated 2019-01-02"):
        open_acquisition("2019-01-02", imagery=tmp_path)
    with pytest.raises(InputError, match="not a valid date"):
        open_acquisition("2019-02-30", imagery=tmp_path)


@pytest.mark.parametrize("nodata", [0.0, float("nan")])
def test_validity_from_pixels_matches_gdal_dataset_mask(tmp_path: Path, nodata: float) -> None:
    """The reader computes a nodata file's mask from the pixels it read; it must equal GDAL's."""
    rng = np.random.default_rng(5)
    data = rng.integers(1, 50, size=(3, 80, 90)).astype(np.float32)
    data[0, :20] = nodata  # one band missing: still valid (GDAL: valid where any band is)
    data[:, 40:50, 10:30] = nodata  # all bands missing: invalid
    data[1:, 60:, :] = nodata
    p = write_raster(tmp_path / "a_2019-01-01.tif", data, nodata=nodata)
    acq = open_acquisition(p)
    with rasterio.open(p) as ds:
        # GDAL: valid where any band is; a NaN in any band also makes a pixel unusable
        truth = (ds.dataset_mask() > 0) & np.all(np.isfinite(data), axis=0)
        grid = Grid(ds.crs, ds.transform, ds.width, ds.height)
    with GridReader(acq, grid) as r:
        inside = r.read(5, 7, 70, 80)[1]  # a window inside the file: the direct path
        edge = r.read(-10, -10, 40, 40)[1]  # partly outside the grid: the block path
        _, whole = r.read_all()
    np.testing.assert_array_equal(whole, truth)
    np.testing.assert_array_equal(inside, truth[5:75, 7:87])
    np.testing.assert_array_equal(edge[10:, 10:], truth[:30, :30])
    assert not edge[:10].any()


def test_block_rows_only_when_the_grid_starts_on_a_block(tmp_path: Path) -> None:
    data = textured((96, 80), bands=1)
    tiled = write_raster(
        tmp_path / "t_2019-01-01.tif", data, tiled=True, blockxsize=32, blockysize=32
    )
    acq = open_acquisition(tiled)
    grid = acq.sources[0].grid
    assert block_rows(acq, grid) == 32
    assert block_rows(acq, grid.crop(64, 16, 32, 32)) == 32
    assert block_rows(acq, grid.crop(10, 0, 32, 32)) is None  # rows start inside a block
    half = Grid.from_bounds(grid.crs, grid.bounds, 1.0)  # another pixel lattice
    assert block_rows(acq, half) is None


def test_a_rotated_before_gives_a_north_up_grid_at_its_pixel_size(tmp_path: Path) -> None:
    """The working grid was BEFORE's own lattice even when that lattice is rotated: a 'north-up'
    Grid with a rotated transform, its resolution one coefficient of it (0.49 for 0.5 m)."""
    from sohae_watch.area import working_area

    rotated = T0 * Affine.rotation(10.0)
    before = write_raster(tmp_path / "b_2019-01-01.tif", textured((128, 128)), transform=rotated)
    after = write_raster(tmp_path / "a_2019-01-02.tif", textured((200, 200), seed=1), transform=T0)
    grid, area = working_area(open_acquisition(before), open_acquisition(after))
    t = grid.transform
    assert t.b == 0 and t.d == 0 and t.e < 0
    assert grid.resolution == pytest.approx(0.5)
    # the grid covers the area compared and no more than a pixel around it
    minx, miny, maxx, maxy = area.bounds
    left, bottom, right, top = grid.bounds
    assert left <= minx and right >= maxx and bottom <= miny and top >= maxy
    assert right - left < maxx - minx + 2 * 0.5 + 1e-6


def test_a_nodata_value_the_pixels_cannot_hold_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """--nodata 300 on bytes (or -5 on unsigned) matches no pixel: accepted silently, it left
    the user believing the fill was masked."""
    p = write_raster(tmp_path / "a_2019-01-01.tif", textured((32, 32)).astype(np.uint8))
    with caplog.at_level("WARNING", logger="sohae_watch.ingest"):
        open_raster(p, nodata=0)
        assert not caplog.records
        open_raster(p, nodata=300)
    assert "--nodata 300 cannot occur in its uint8 pixels" in caplog.records[0].getMessage()


def test_declared_scale_and_offset_give_the_values(tmp_path: Path) -> None:
    """A band stored as DN + 1000 with GDAL offset -1000 (as Sentinel-2 L2A from baseline 04
    is often delivered) was read as DN + 1000: NDVI and the brightness tests saw other numbers
    than the other date's. The nodata value stays a stored number."""
    data = textured((8, 8))
    stored = data + 1000
    stored[:, 0, 0] = 0
    p = write_raster(tmp_path / "a_2019-01-01.tif", stored, nodata=0)
    with rasterio.open(p, "r+") as ds:
        ds.offsets = [-1000.0] * 4
        ds.scales = [1.0, 1.0, 1.0, 2.0]
    src = open_raster(p)
    scene = read_scene(open_acquisition(p), src.grid)
    assert not scene.valid[0, 0] and scene.valid.sum() == 63
    want = data.astype(np.float32)
    want[3] = 2.0 * (data[3] + 1000) - 1000
    np.testing.assert_array_equal(scene.data[:, scene.valid], want[:, scene.valid])


def test_tiles_of_two_products_in_one_date_are_named(tmp_path: Path) -> None:
    """An 8-bit tile beside 16-bit ones, or a 1 m tile beside 0.5 m ones, was pasted into one
    image without a word (one fit for both: false change where they meet)."""
    from sohae_watch.ingest import mixed_tiles

    data = textured((20, 20))
    t = Affine(0.5, 0, 500000.0, 0, -0.5, 4390000.0)
    for name in ("same", "kind", "size"):
        (tmp_path / name).mkdir()
        write_raster(tmp_path / name / "w_2019-01-01.tif", data, transform=t)
    east = t * Affine.translation(20, 0)
    write_raster(tmp_path / "same" / "e_2019-01-01.tif", data, transform=east)
    write_raster(
        tmp_path / "kind" / "e_2019-01-01.tif", (data // 64).astype(np.uint8), transform=east
    )
    coarse = Affine(1.0, 0, east.c, 0, -1.0, east.f)
    write_raster(tmp_path / "size" / "e_2019-01-01.tif", data, transform=coarse)
    assert mixed_tiles(open_acquisition(tmp_path / "same")) is None
    kind = mixed_tiles(open_acquisition(tmp_path / "kind"))
    assert (
        kind is not None
        and "pixel type (uint16: w_2019-01-01.tif; uint8: e_2019-01-01.tif)" in kind
    )
    size = mixed_tiles(open_acquisition(tmp_path / "size"))
    assert size is not None and "e_2019-01-01.tif 1 m" in size and "w_2019-01-01.tif 0.5 m" in size


def test_a_tile_beyond_the_area_is_not_named_a_source(tmp_path: Path) -> None:
    """A tile of the date 20 km away is never decoded for the area, but report.json listed it
    among the sources compared. A registration's shift widens what a read can reach."""
    from affine import Affine as A

    from sohae_watch.reader import sources_read

    data = textured((20, 20))
    t = A(0.5, 0, 500000.0, 0, -0.5, 4390000.0)
    write_raster(tmp_path / "near_2019-01-01.tif", data, transform=t)
    write_raster(tmp_path / "next_2019-01-01.tif", data, transform=t * A.translation(22, 0))
    write_raster(tmp_path / "far_2019-01-01.tif", data, transform=t * A.translation(40000, 0))
    acq = open_acquisition(tmp_path)
    grid = open_raster(tmp_path / "near_2019-01-01.tif").grid
    assert [Path(p).name for p in sources_read(acq, grid)] == ["near_2019-01-01.tif"]
    moved = [Path(p).name for p in sources_read(acq, grid, A.translation(4, 0))]
    assert moved == ["near_2019-01-01.tif", "next_2019-01-01.tif"]


def test_the_area_of_far_apart_tiles_is_read_only_where_it_is() -> None:
    """The overlap of a date whose tiles lie 20 km apart is a bounding grid that is mostly gap:
    a window in the gap is none of the area (no rasterizing, nothing decoded for it), one
    inside is all of it, one across its edge is the pixels that touch it."""
    from shapely.geometry import box as rect

    from sohae_watch.grid import Grid as G
    from sohae_watch.stream import area_valid

    grid = G(CRS.from_epsg(32651), Affine(0.5, 0, 500000.0, 0, -0.5, 4390000.0), 4000, 100)
    area = rect(500000.0, 4389950.0, 500100.0, 4390000.0).union(
        rect(501900.0, 4389950.0, 502000.0, 4390000.0)
    )
    assert not area_valid(grid, area, 0, 1000, 100, 100).any()
    assert area_valid(grid, area, 0, 0, 100, 100).all()
    edge = area_valid(grid, area, 0, 150, 100, 100)
    assert edge[:, :50].all() and not edge[:, 51:].any()
