"""Every bad-input class: exit 2, one line naming the file and the fix, and no output left behind."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from click.testing import CliRunner
from rasterio.errors import NotGeoreferencedWarning

from conftest import textured, write_raster
from sohae_watch.cli.main import cli

T0 = Affine(0.5, 0, 500000.0, 0, -0.5, 4390000.0)


def good(tmp_path: Path, name: str = "before_2019-01-01.tif", seed: int = 0) -> Path:
    return write_raster(tmp_path / name, textured((64, 64), seed=seed), transform=T0, nodata=0)


def run(runner: CliRunner, args: list[str]) -> tuple[int, str]:
    res = runner.invoke(cli, args)
    return res.exit_code, res.output


def missing(tmp: Path) -> list[str]:
    return [str(tmp / "nope_2019-01-01.tif"), str(good(tmp))]


def empty(tmp: Path) -> list[str]:
    (tmp / "empty_2019-01-01.tif").write_bytes(b"")
    return [str(good(tmp)), str(tmp / "empty_2019-01-01.tif")]


def non_raster(tmp: Path) -> list[str]:
    (tmp / "notes_2019-01-02.tif").write_text("these are my notes")
    return [str(good(tmp)), str(tmp / "notes_2019-01-02.tif")]


def truncated(tmp: Path) -> list[str]:
    p = write_raster(
        tmp / "cut_2019-01-02.tif",
        textured((512, 512), seed=1),
        transform=T0,
        nodata=0,
        compress="deflate",
        tiled=True,
    )
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    before = write_raster(
        tmp / "before_2019-01-01.tif", textured((512, 512), seed=2), transform=T0, nodata=0
    )
    return [str(before), str(p)]


def no_georef(tmp: Path) -> list[str]:
    p = tmp / "plain_2019-01-02.tif"
    with warnings.catch_warnings():  # writing the bad input is not what is tested
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(p, "w", driver="GTiff", width=8, height=8, count=1, dtype="uint8") as f:
            f.write(np.ones((1, 8, 8), np.uint8))
    return [str(good(tmp)), str(p)]


def no_date(tmp: Path) -> list[str]:
    return [
        str(good(tmp)),
        str(write_raster(tmp / "undated.tif", textured((64, 64)), transform=T0)),
    ]


def bad_tag_date(tmp: Path) -> list[str]:
    p = write_raster(
        tmp / "tagged.tif",
        textured((64, 64)),
        transform=T0,
        tags={"ACQUISITION_DATE": "2019-13-45"},
    )
    return [str(good(tmp)), str(p)]


def no_overlap(tmp: Path) -> list[str]:
    far = write_raster(
        tmp / "far_2019-01-02.tif",
        textured((64, 64)),
        transform=Affine(0.5, 0, 600000.0, 0, -0.5, 4390000.0),
    )
    return [str(good(tmp)), str(far)]


def all_nodata(tmp: Path) -> list[str]:
    p = write_raster(
        tmp / "void_2019-01-02.tif", np.zeros((4, 64, 64), np.uint16), transform=T0, nodata=0
    )
    return [str(good(tmp)), str(p)]


def all_nan(tmp: Path) -> list[str]:
    p = write_raster(
        tmp / "nan_2019-01-02.tif", np.full((4, 64, 64), np.nan, np.float32), transform=T0
    )
    return [str(good(tmp)), str(p)]


def bad_aoi(tmp: Path) -> list[str]:
    return [str(good(tmp)), str(good(tmp, "after_2019-01-02.tif", 1)), "--aoi", "1,2,three"]


def aoi_outside(tmp: Path) -> list[str]:
    return [str(good(tmp)), str(good(tmp, "after_2019-01-02.tif", 1)), "--aoi", "10,10,10.1,10.1"]


def bad_date_arg(tmp: Path) -> list[str]:
    good(tmp)
    return ["2019-02-30", "2019-01-01", "--imagery", str(tmp)]


def blank(tmp: Path) -> list[str]:
    flat = np.full((3, 64, 64), 1200.0, np.float32)  # a failed product: one value everywhere
    return [str(good(tmp)), str(write_raster(tmp / "flat_2019-01-02.tif", flat, transform=T0))]


def corner_overlap(tmp: Path) -> list[str]:
    t = Affine(0.5, 0, 500000.0 + 61 * 0.5, 0, -0.5, 4390000.0 - 61 * 0.5)  # 3 x 3 px shared
    after = write_raster(tmp / "corner_2019-01-02.tif", textured((64, 64), seed=1), transform=t)
    return [str(good(tmp)), str(after)]


def complex_pixels(tmp: Path) -> list[str]:
    data = textured((64, 64), bands=1).astype(np.complex64)
    return [str(good(tmp)), str(write_raster(tmp / "slc_2019-01-02.tif", data, transform=T0))]


def local_crs(tmp: Path) -> list[str]:
    wkt = 'LOCAL_CS["site grid",UNIT["metre",1],AXIS["Easting",EAST],AXIS["Northing",NORTH]]'
    local = write_raster(tmp / "local_2019-01-02.tif", textured((64, 64)), transform=T0, crs=wkt)
    return [str(good(tmp)), str(local)]


def same_twice(tmp: Path) -> list[str]:
    p = good(tmp, "scene_2019-01-01.tif")
    return [str(p), str(tmp / "." / p.name)]


def unknown_date(tmp: Path) -> list[str]:
    good(tmp)
    return ["2019-01-01", "2019-05-05", "--imagery", str(tmp)]


CASES: dict[str, tuple[Callable[[Path], list[str]], str]] = {
    "missing file": (missing, "nope_2019-01-01.tif"),
    "empty file": (empty, "empty_2019-01-01.tif"),
    "non-raster file": (non_raster, "notes_2019-01-02.tif"),
    "truncated file": (truncated, "cut_2019-01-02.tif"),
    "no georeference": (no_georef, "plain_2019-01-02.tif"),
    "no date": (no_date, "undated.tif"),
    "malformed date tag": (bad_tag_date, "tagged.tif"),
    "no overlap": (no_overlap, "overlap"),
    "all nodata over the area": (all_nodata, "void_2019-01-02.tif"),
    "all NaN over the area": (all_nan, "nan_2019-01-02.tif"),
    "bad --aoi": (bad_aoi, "--aoi"),
    "--aoi outside the images": (aoi_outside, "--aoi"),
    "malformed date argument": (bad_date_arg, "2019-02-30"),
    "unknown date": (unknown_date, "2019-05-05"),
    "the same file twice": (same_twice, "scene_2019-01-01.tif"),
    "an overlap of a few pixels": (corner_overlap, "corner_2019-01-02.tif: the area compared"),
    "complex pixels": (complex_pixels, "slc_2019-01-02.tif: its pixels are complex"),
    "a local (engineering) CRS": (local_crs, "local_2019-01-02.tif: its CRS ('site grid')"),
    "a blank image": (blank, "flat_2019-01-02.tif"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_exit_2_one_line_no_output(tmp_path: Path, runner: CliRunner, case: str) -> None:
    make, names = CASES[case]
    args = make(tmp_path)
    out = tmp_path / "out"
    code, text = run(runner, ["diff", *args, "--out", str(out)])
    assert code == 2, text
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, text
    assert lines[0].startswith("Error:") and names in lines[0], text
    assert "Traceback" not in text
    assert not out.exists()


def test_no_georeference_is_one_line_on_a_terminal(tmp_path: Path) -> None:
    """Run as a user runs it (outside the test runner's warning capture): rasterio's own warning
    about the file stays off the terminal, which shows the one line naming the fix."""
    args = no_georef(tmp_path)
    res = subprocess.run(
        [sys.executable, "-m", "sohae_watch", "diff", *args, "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2, res.stderr
    lines = [ln for ln in (res.stdout + res.stderr).splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("Error:") and "plain_2019-01-02.tif" in lines[0]
    assert "georeference it first" in lines[0]


def test_existing_out_dir_keeps_its_files_on_failure(tmp_path: Path, runner: CliRunner) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.json").write_text("{}")
    code, _ = run(runner, ["diff", *no_date(tmp_path), "--out", str(out)])
    assert code == 2
    assert (out / "report.json").read_text() == "{}"
    assert sorted(p.name for p in out.iterdir()) == ["report.json"]


SITE_CASES = {
    "unknown site name": ("atlantis", "atlantis"),
    "not YAML": ("id: [1, 2\n: - :", "site.yaml"),
    "missing field": ("name: x\n", "missing field 'id'; add a short name"),
    "missing area": ("id: x\n", "missing field 'aoi'; add the area of interest"),
    "invalid field": (
        "id: x\naoi: {type: Polygon, coordinates: [[[0,0],[1,0],[1,1],[0,0]]]}\ngrid: {resolution: fast}\n",
        "'grid.resolution'",
    ),
}


@pytest.mark.parametrize("case", list(SITE_CASES))
def test_bad_site(
    tmp_path: Path, runner: CliRunner, case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    text, needle = SITE_CASES[case]
    spec = text
    if case != "unknown site name":
        (tmp_path / "site.yaml").write_text(text)
        spec = str(tmp_path / "site.yaml")
    code, out = run(
        runner, ["diff", "2019-01-01", "2019-01-02", "--site", spec, "--out", str(tmp_path / "o")]
    )
    assert code == 2, out
    assert needle in out and len(out.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_usage_error_is_exit_2(runner: CliRunner) -> None:
    res = runner.invoke(cli, ["diff", "a.tif"])
    assert res.exit_code == 2


def test_version(runner: CliRunner) -> None:
    res = runner.invoke(cli, ["--version"])
    assert res.exit_code == 0 and "sohae-watch" in res.output


def test_python_dash_m_runs_the_same_cli(tmp_path: Path) -> None:
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "sohae_watch",
            "diff",
            str(tmp_path / "nope.tif"),
            "x",
            "--out",
            "o",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert res.returncode == 2
    assert "nope.tif" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_a_closed_stdout_stops_quietly(tmp_path: Path) -> None:
    """`sohae-watch diff ... | head` after head has gone: the outputs are written, and no
    "unexpected failure: BrokenPipeError" (nor Python's own complaint at exit) is printed."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first sentence
    before, after = good(tmp_path), good(tmp_path, "after_2019-06-01.tif", seed=1)
    cmd = [sys.executable, "-m", "sohae_watch", "diff", str(before), str(after), "--out", "o"]
    try:
        res = subprocess.run(cmd, stdout=write_end, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    finally:
        os.close(write_end)
    assert "Error" not in res.stderr and "BrokenPipe" not in res.stderr, res.stderr
    assert res.returncode == 1
    assert (tmp_path / "o" / "report.json").is_file()


def test_out_in_an_imagery_folder_read_from_is_refused(tmp_path: Path, runner: CliRunner) -> None:
    """Outputs written among the tiles or the catalog would be read as imagery (and fail for want
    of a date) by the next run; an empty --out would write into the current folder."""
    tiles = [tmp_path / "a", tmp_path / "b"]
    for k, folder in enumerate(tiles):
        folder.mkdir()
        good(folder, f"scene_2019-01-0{k + 1}.tif", seed=k)
    code, text = run(runner, ["diff", *map(str, tiles), "--out", str(tiles[1])])
    assert code == 2 and "lies in the imagery folder" in text and str(tiles[1]) in text, text
    code, text = run(
        runner,
        [
            "diff",
            "2019-01-01",
            "2019-01-02",
            "--imagery",
            str(tmp_path),
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert code == 2 and "lies in the imagery folder" in text, text
    assert not (tmp_path / "o").exists()
    code, text = run(runner, ["diff", *map(str, tiles), "--out", ""])
    assert code == 2 and "'--out': is empty" in text, text
    code, text = run(runner, ["diff", *map(str, tiles), "--out", str(tmp_path / "o")])
    assert code == 0, text


def test_messages_name_what_is_wrong_with_the_path(tmp_path: Path, runner: CliRunner) -> None:
    """A folder given for a file, a missing --aoi file, a site whose imagery: folder is gone and
    a raster given as the imagery folder: each says that, not just 'not found'."""
    site = tmp_path / "site.yaml"
    site.write_text(
        "id: x\naoi: {type: Polygon, coordinates: [[[124.70, 39.66], [124.71, 39.66], "
        "[124.71, 39.665], [124.70, 39.66]]]}\nimagery: gone\n"
    )
    raster = good(tmp_path)
    out = str(tmp_path / "o")
    cases = [
        (
            ["diff", "a", "b", "--site", str(tmp_path), "--out", out],
            "is a folder; give a site YAML",
        ),
        (
            ["diff", str(raster), str(raster), "--aoi", "nosuch.geojson", "--out", out],
            "nosuch.geojson: --aoi file not found",
        ),
        (
            ["diff", "2019-01-01", "2019-01-02", "--site", str(site), "--out", out],
            f"site.yaml: its imagery: {tmp_path / 'gone'} does not exist; fix the field",
        ),
        (
            ["watch", "--site", str(site), "--imagery", str(raster), "--state", out + ".db"],
            "before_2019-01-01.tif: is a file; give --imagery the folder",
        ),
        (["eval", str(tmp_path), str(tmp_path)], "is a folder; give a truth mask GeoTIFF"),
    ]
    for args, says in cases:
        code, text = run(runner, args)
        assert code == 2 and says in text, (args, text)
