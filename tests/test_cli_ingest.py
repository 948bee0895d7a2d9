"""`ingest` / `catalog` lists acquisitions with date, files, CRS, resolution, coverage, usability."""

import json
from pathlib import Path

from affine import Affine
from click.testing import CliRunner

from conftest import textured, write_raster
from sohae_watch.cli.main import cli

SITE = """
id: mini
name: Mini site
grid: {{crs: EPSG:32651, resolution: 0.5}}
aoi: {{type: Polygon, coordinates: [[[{x0}, {y0}], [{x1}, {y0}], [{x1}, {y1}], [{x0}, {y1}], [{x0}, {y0}]]]}}
imagery: imagery
"""


def make_site(tmp_path: Path) -> Path:
    from rasterio.warp import transform

    t = Affine(0.5, 0, 500000.0, 0, -0.5, 4390000.0)
    img = tmp_path / "imagery"
    img.mkdir()
    data = textured((100, 100))
    write_raster(img / "a_2019-01-01.tif", data, transform=t, nodata=0)
    half = data.copy()
    half[:, :, 50:] = 0
    write_raster(img / "b_2019-01-02.tif", half, transform=t, nodata=0)
    # AOI: the inner 40 x 40 m of the 50 x 50 m tile
    xs, ys = transform("EPSG:32651", "EPSG:4326", [500005.0, 500045.0], [4389955.0, 4389995.0])
    site = tmp_path / "mini.yaml"
    site.write_text(SITE.format(x0=xs[0], x1=xs[1], y0=ys[0], y1=ys[1]))
    return site


def test_ingest_lists_acquisitions(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    res = CliRunner().invoke(cli, ["ingest", "--site", str(site), "--format", "json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)["acquisitions"]
    assert [r["date"] for r in rows] == ["2019-01-01", "2019-01-02"]
    assert rows[0]["crs"] == "EPSG:32651" and rows[0]["resolution_m"] == 0.5
    assert rows[0]["aoi_coverage"] > 0.99
    assert rows[0]["usable_fraction"] > 0.95
    assert abs(rows[1]["usable_fraction"] - 0.5) < 0.08


def test_catalog_alias_text_and_skips_bad(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    (tmp_path / "imagery" / "c_2019-01-03.tif").write_bytes(b"II*\x00half-copied")
    res = CliRunner().invoke(cli, ["catalog", "--site", str(site)])
    assert res.exit_code == 0, res.output
    assert "2019-01-01" in res.output and "usable" in res.output
    assert "skipped" in res.output and "c_2019-01-03.tif" in res.output


def test_ingest_without_folder_is_exit_2(tmp_path: Path) -> None:
    res = CliRunner().invoke(cli, ["ingest", "--imagery", str(tmp_path / "none")])
    assert res.exit_code == 2 and "none" in res.output


def test_a_file_whose_pixels_do_not_decode_is_skipped_and_a_bad_date_named(
    tmp_path: Path,
) -> None:
    """A tiled file whose header reads but whose tiles do not ended the whole listing (exit 2);
    a file named with an impossible date was told to put a date in its name."""
    site = make_site(tmp_path)
    img = tmp_path / "imagery"
    big = write_raster(
        img / "c_2019-01-03.tif", textured((512, 512), seed=2),
        transform=Affine(0.5, 0, 500000.0, 0, -0.5, 4390000.0), nodata=0,
        tiled=True, compress="deflate",
    )  # fmt: skip
    import rasterio

    with rasterio.open(big) as ds:  # the first tile, which the AOI's read decodes
        at = int(ds.get_tag_item("BLOCK_OFFSET_0_0", "TIFF", bidx=1))
    data = bytearray(big.read_bytes())
    data[at : at + 4096] = b"\xff" * 4096
    big.write_bytes(bytes(data))
    write_raster(img / "d_2019-13-45.tif", textured((100, 100)), nodata=0)
    res = CliRunner().invoke(cli, ["ingest", "--site", str(site), "--format", "json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output[res.output.index("{") :])
    assert [r["date"] for r in doc["acquisitions"]] == ["2019-01-01", "2019-01-02"]
    reasons = {Path(s["file"]).name: s["reason"] for s in doc["skipped"]}
    assert "pixels cannot be decoded" in reasons["c_2019-01-03.tif"]
    assert "See previous exception" not in reasons["c_2019-01-03.tif"]
    assert "2019-13-45 in its name is not a valid date" in reasons["d_2019-13-45.tif"]
