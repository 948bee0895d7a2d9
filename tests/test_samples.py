"""The synthetic sample generator: determinism, truth consistency, site file, nuisances, masks."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import rasterio
import yaml
from rasterio.crs import CRS
from rasterio.warp import transform_bounds
from shapely.geometry import box as rect
from shapely.geometry import shape

from sohae_watch.grid import Grid
from sohae_watch.samples import (
    SOHAE_LAYOUT,
    generate_scene,
    generate_sohae_samples,
    main,
    sohae_footprints,
    sohae_grid,
    sohae_model,
    sohae_site,
)
from sohae_watch.samples_model import ABSENT, Element, event_of, status_of
from sohae_watch.samples_render import SHADE, burn, shade_lower_roofs
from sohae_watch.samples_write import render_model

ROOT = Path(__file__).resolve().parents[1]
STRUCTURES = {
    "launch-pad",
    "pad-shields",
    "gantry-tower",
    "test-stand",
    "processing-building",
    "main-processing",
}
DATE_IN_NAME = re.compile(r"\d{4}-\d{2}-\d{2}|\d{8}")


@pytest.fixture(scope="session")
def sohae(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("samples") / "sohae"
    path = generate_sohae_samples(out, seed=0)
    return out, json.loads(path.read_text())


@pytest.fixture(scope="session")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> dict[int, tuple[Path, dict[str, Any]]]:
    out = {}
    for seed in (1, 2):
        d = tmp_path_factory.mktemp(f"scene{seed}")
        out[seed] = (d, json.loads(generate_scene(d, seed).read_text()))
    return out


def _acq(truth: dict[str, Any], date: str) -> dict[str, Any]:
    return next(a for a in truth["acquisitions"] if a["date"] == date)


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read()


def check_truth(root: Path, truth: dict[str, Any]) -> None:
    """Invariants every truth.json must satisfy."""
    assert truth["schema_version"] == 1
    g = truth["grid"]
    dates = [a["date"] for a in truth["acquisitions"]]
    assert dates == sorted(dates) and len(set(dates)) == len(dates)
    for a in truth["acquisitions"]:
        assert all((root / f).is_file() for f in a["files"])
        assert a["date_source"] in {"tag", "filename", "stac"}
    for sid, states in truth["states"].items():
        assert list(states) == dates, sid
    for p in truth["pairs"]:
        b, a = p["before"], p["after"]
        ab, aa = _acq(truth, b), _acq(truth, a)
        assert p["shift_x_px"] == pytest.approx(aa["shift_x_px"] - ab["shift_x_px"], abs=1e-3)
        assert p["shift_y_px"] == pytest.approx(aa["shift_y_px"] - ab["shift_y_px"], abs=1e-3)
        assert set(p["structures"]) == set(truth["states"])
        for sid, rec in p["structures"].items():
            st = truth["states"][sid]
            if rec["observed_fraction"] < 0.5:
                assert rec["status"] == "obscured" and rec["event"] is None
                continue
            assert rec["status"] == status_of(st[b], st[a])
            stood = truth["baseline"][sid] == "present" or any(
                st[d] != ABSENT for d in dates if d < b
            )
            assert rec["event"] == event_of(rec["status"], stood)
            if rec["status"] == "modified":
                assert rec["changed_fraction"] >= 0.2, (sid, b, a)
            if rec["status"] == "unchanged":
                assert rec["changed_fraction"] == 0.0, (sid, b, a)
        with rasterio.open(root / p["change_mask"]) as ds:
            assert ds.dtypes[0] == "uint8" and (ds.width, ds.height) == (g["width"], g["height"])
            assert list(ds.transform)[:6] == pytest.approx(g["transform"])
            assert ds.crs == CRS.from_user_input(g["crs"])
            mask = ds.read(1)
        assert set(np.unique(mask)) <= {0, 1, 255}
        changed = any(
            r["status"] in {"appeared", "removed", "modified"} for r in p["structures"].values()
        )
        if changed or p["new_activity"]:
            assert (mask == 1).sum() > 50
        elif not any(r["status"] == "obscured" for r in p["structures"].values()):
            assert (mask == 1).sum() == 0


# --- Sohae ----------------------------------------------------------------------------------


def test_sohae_truth_is_consistent(sohae: tuple[Path, dict[str, Any]]) -> None:
    root, truth = sohae
    check_truth(root, truth)
    assert truth["site"] == "sohae" and truth["seed"] == 0
    assert truth["grid"] == {
        "crs": "EPSG:32651",
        "resolution": 0.5,
        "transform": [0.5, 0.0, 646010.0, 0.0, -0.5, 4391610.0],
        "width": 1000,
        "height": 800,
    }
    assert set(truth["states"]) == STRUCTURES


def test_sohae_story(sohae: tuple[Path, dict[str, Any]]) -> None:
    _, truth = sohae
    pairs = {(p["before"], p["after"]): p["structures"] for p in truth["pairs"]}
    expected = {
        ("2018-07-20", "2018-08-03"): {"launch-pad": "removed", "test-stand": "modified"},
        ("2018-08-03", "2019-02-16"): {},
        ("2019-02-16", "2019-03-02"): {"launch-pad": "appeared", "pad-shields": "removed"},
        ("2019-03-02", "2019-03-06"): {
            "test-stand": "modified",
            "processing-building": "obscured",
        },
        ("2018-07-20", "2019-03-02"): {"pad-shields": "removed", "test-stand": "modified"},
    }
    assert set(pairs) == set(expected)
    for key, changes in expected.items():
        got = {sid: r["status"] for sid, r in pairs[key].items()}
        assert got == {sid: changes.get(sid, "unchanged") for sid in STRUCTURES}, key
    assert pairs[("2019-02-16", "2019-03-02")]["launch-pad"]["event"] == "rebuilt"
    assert pairs[("2019-02-16", "2019-03-02")]["pad-shields"]["event"] == "dismantled"
    assert pairs[("2018-07-20", "2018-08-03")]["launch-pad"]["event"] == "dismantled"
    assert pairs[("2019-03-02", "2019-03-06")]["processing-building"]["observed_fraction"] < 0.2
    assert _acq(truth, "2019-03-06")["cloud_over"] == ["processing-building"]


def test_sohae_is_deterministic(sohae: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    root, truth = sohae
    model = sohae_model(0)
    first = dataclasses.replace(model, dates=model.dates[:1], pairs=[])
    again = json.loads(render_model(first, tmp_path).read_text())
    assert again["acquisitions"][0] == truth["acquisitions"][0]
    name = truth["acquisitions"][0]["files"][0]
    assert np.array_equal(_read(tmp_path / name), _read(root / name))


def test_site_file_agrees_with_layout() -> None:
    site = yaml.safe_load((ROOT / "configs" / "sohae.yaml").read_text())
    assert site == sohae_site(), "configs/sohae.yaml drifted: regenerate it with --site-file"
    grid = sohae_grid()
    fps = sohae_footprints()
    assert [s["id"] for s in site["structures"]] == list(SOHAE_LAYOUT)
    for s in site["structures"]:
        assert s["name"] == SOHAE_LAYOUT[s["id"]][0]
        geom = grid.geometry_from_lonlat(s["geometry"])
        assert geom.symmetric_difference(fps[s["id"]]).area < 0.05  # m²
    aoi = grid.geometry_from_lonlat(site["aoi"])
    assert Grid.from_bounds(grid.crs, aoi.bounds, site["grid"]["resolution"]) == grid
    assert site["grid"] == {"crs": "EPSG:32651", "resolution": 0.5}
    assert site["imagery"] == "../data/samples/sohae/imagery"


def test_rasters_follow_the_delivery_format(sohae: tuple[Path, dict[str, Any]]) -> None:
    root, truth = sohae
    grid = sohae_grid()
    for a in truth["acquisitions"]:
        for f in a["files"]:
            with rasterio.open(root / f) as ds:
                assert ds.count == 4 and ds.dtypes == ("uint16",) * 4 and ds.nodata == 0
                assert ds.descriptions == ("red", "green", "blue", "nir")
                assert ds.profile["compress"].lower() == "deflate"
                assert ds.block_shapes[0] == (256, 256)
                assert (ds.read() > 0).all()  # no nodata anywhere in a delivery
    # every acquisition covers the AOI (tiles together)
    for a in truth["acquisitions"]:
        covered = None
        for f in a["files"]:
            with rasterio.open(root / f) as ds:
                b = shape(
                    {
                        "type": "Polygon",
                        "coordinates": [_box_ring(transform_bounds(ds.crs, grid.crs, *ds.bounds))],
                    }
                )
            covered = b if covered is None else covered.union(b)
        assert covered is not None and covered.buffer(1e-6).contains(grid.footprint()), a["date"]


def _box_ring(b: tuple[float, float, float, float]) -> list[tuple[float, float]]:
    x0, y0, x1, y1 = b
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]


def test_sohae_nuisances(sohae: tuple[Path, dict[str, Any]]) -> None:
    root, truth = sohae
    acq = {a["date"]: a for a in truth["acquisitions"]}

    def tags(f: str) -> dict[str, str]:
        with rasterio.open(root / f) as ds:
            return dict(ds.tags())

    # date by ACQUISITION_DATE tag, nothing in the name
    (f,) = acq["2018-07-20"]["files"]
    assert tags(f)["ACQUISITION_DATE"] == "2018-07-20" and not DATE_IN_NAME.search(f)
    assert float(tags(f)["SUN_ELEVATION"]) == 65.0
    # two tiles, date only in the file name, overlapping about 20 m
    west, east = acq["2018-08-03"]["files"]
    assert "20180803" in west and "20180803" in east
    for f in (west, east):
        assert not {"ACQUISITION_DATE", "TIFFTAG_DATETIME"} & set(tags(f))
    with rasterio.open(root / west) as w, rasterio.open(root / east) as e:
        assert w.bounds.right - e.bounds.left == pytest.approx(20.0, abs=1.0)
    # another CRS and resolution, date in a STAC sidecar only
    (f,) = acq["2019-02-16"]["files"]
    with rasterio.open(root / f) as ds:
        assert ds.crs != CRS.from_epsg(32651)
    assert not DATE_IN_NAME.search(f) and not {"ACQUISITION_DATE", "TIFFTAG_DATETIME"} & set(
        tags(f)
    )
    stac = json.loads((root / f).with_suffix(".json").read_text())
    assert stac["type"] == "Feature"
    assert stac["properties"]["datetime"].startswith("2019-02-16T")
    assert {"view:sun_azimuth", "view:sun_elevation"} <= set(stac["properties"])
    assert acq["2019-02-16"]["snow"] and acq["2019-02-16"]["sun_elevation"] < 35
    # TIFFTAG_DATETIME, a few pixels of misregistration
    (f,) = acq["2019-03-02"]["files"]
    assert tags(f)["TIFFTAG_DATETIME"] == "2019:03:02 02:29:00"
    assert abs(acq["2019-03-02"]["shift_x_px"]) >= 2 and abs(acq["2019-03-02"]["shift_y_px"]) >= 1
    # YYYYMMDDTHHMMSS in the name; a saturating cloud over the processing building
    (f,) = acq["2019-03-06"]["files"]
    assert re.search(r"20190306T\d{6}", f)
    assert (_read(root / f) == 16383).all(axis=0).sum() > 2000
    assert len({(a["sun_azimuth"], a["sun_elevation"]) for a in acq.values()}) == 5
    assert len({tuple(a["gain"]) for a in acq.values()}) == 5


def _window(truth: dict[str, Any], sid: str) -> tuple[slice, slice]:
    fp = sohae_footprints()[sid]
    t = truth["grid"]["transform"]
    x0, y0, x1, y1 = fp.bounds
    return slice(int((t[5] - y1) / 0.5) + 30, int((t[5] - y0) / 0.5) + 30), slice(
        int((x0 - t[2]) / 0.5) + 30, int((x1 - t[2]) / 0.5) + 30
    )


def test_changes_are_visible(sohae: tuple[Path, dict[str, Any]]) -> None:
    """A dismantled structure leaves a different surface; the modified test stand really differs."""
    root, truth = sohae
    acq = {x["date"]: x for x in truth["acquisitions"]}

    def refl(name: str, date: str) -> np.ndarray:  # back to reflectance with the true sensor
        x = acq[date]
        dn = _read(root / name).astype(float)
        gain, offset = np.array(x["gain"])[:, None, None], np.array(x["offset"])[:, None, None]
        return (dn - offset) / gain / 10000 / (0.55 + 0.45 * np.sin(np.radians(x["sun_elevation"])))

    a = refl("imagery/sohae_a.tif", "2018-07-20")  # delivery origin is 15 m (30 px) out
    c = refl("imagery/sohae_c.tif", "2019-03-02")
    e = refl("imagery/sohae_20190306T023000.tif", "2019-03-06")
    rows, cols = _window(truth, "pad-shields")
    diff = np.abs(a[:, rows, cols] - c[:, rows, cols]).mean()
    rows_g, cols_g = _window(truth, "main-processing")
    same = np.abs(a[:, rows_g, cols_g] - c[:, rows_g, cols_g]).mean()
    assert diff > 3 * same
    rows, cols = _window(truth, "test-stand")
    d = np.abs(c[:3, rows, cols] - e[:3, rows, cols]).mean(axis=0)
    assert (d > 0.1).mean() >= 0.2


def test_change_masks(sohae: tuple[Path, dict[str, Any]]) -> None:
    root, truth = sohae
    masks = {(p["before"], p["after"]): _read(root / p["change_mask"])[0] for p in truth["pairs"]}
    assert (masks[("2018-08-03", "2019-02-16")] == 0).all()  # snow, sun, gain are not change
    cloud = masks[("2019-03-02", "2019-03-06")]
    rows, cols = _window(truth, "processing-building")
    rows, cols = slice(rows.start - 30, rows.stop - 30), slice(cols.start - 30, cols.stop - 30)
    assert (cloud[rows, cols] == 255).mean() > 0.8
    # 1 m² = 4 px: launch pad 26 x 30 m comes back on Mar 2
    assert (masks[("2019-02-16", "2019-03-02")] == 1).sum() == pytest.approx(
        4 * (780 + 720), rel=0.02
    )


# --- random scenes ----------------------------------------------------------------------------


def test_random_scenes_are_valid(scenes: dict[int, tuple[Path, dict[str, Any]]]) -> None:
    for root, truth in scenes.values():
        check_truth(root, truth)
        site = yaml.safe_load((root / "site.yaml").read_text())
        assert site["imagery"] == "imagery"
        assert [s["id"] for s in site["structures"]] == list(truth["states"])
        for dx, dy in truth["footprint_jitter_m"].values():
            assert np.hypot(dx, dy) <= 3.0 + 1e-9
        assert 3 <= len(truth["acquisitions"]) <= 4


def test_random_scenes_differ_and_repeat(
    scenes: dict[int, tuple[Path, dict[str, Any]]], tmp_path: Path
) -> None:
    (r1, t1), (_, t2) = scenes[1], scenes[2]
    assert t1["grid"] != t2["grid"] and t1["states"] != t2["states"]
    again = json.loads(generate_scene(tmp_path, 1).read_text())
    assert again == t1
    for f in t1["acquisitions"][0]["files"]:
        assert np.array_equal(_read(tmp_path / f), _read(r1 / f))


def test_main_writes_site_file(tmp_path: Path) -> None:
    assert main(["--site-file", str(tmp_path / "s.yaml")]) == 0
    assert yaml.safe_load((tmp_path / "s.yaml").read_text()) == sohae_site()


def test_taller_elements_shade_lower_roofs_when_asked() -> None:
    """A 20 m block east of a 5 m one, the sun in the south-east at 45 degrees: its shadow, 15 m
    long on the lower roof's plane, darkens the lower roof's eastern part by the shade's share in
    every band, and nothing else; with the sun overhead, nothing."""
    canvas = Grid.from_bounds(CRS.from_epsg(32651), (0.0, 0.0, 80.0, 40.0), 0.5)
    low = Element("low", rect(0, 10, 50, 30), 5.0, "concrete")
    tall = Element("tall", rect(50, 10, 70, 30), 20.0, "concrete")
    refl = np.ones((4, *canvas.shape), np.float32)
    shade_lower_roofs(
        refl,
        canvas,
        [low, tall],
        SimpleNamespace(sun_azimuth=135.0, sun_elevation=45.0, off_nadir=0.0),
    )
    dark = refl[0] < 1
    assert np.allclose(refl[:, dark], np.asarray(SHADE, np.float32)[:, None])
    on_low, on_tall = burn(canvas, low.geom), burn(canvas, tall.geom)
    assert dark.any() and not (dark & ~on_low).any() and not (dark & on_tall).any()
    cols = np.nonzero(dark)[1]
    assert cols.min() * 0.5 >= 50 - 15 * math.sin(math.radians(45)) - 1  # within its reach
    refl[:] = 1
    shade_lower_roofs(
        refl,
        canvas,
        [low, tall],
        SimpleNamespace(sun_azimuth=135.0, sun_elevation=89.9, off_nadir=0.0),
    )
    assert (refl[0] < 1).sum() <= on_low.sum() * 0.01


def test_a_scene_replaces_its_own_files_and_refuses_anothers(tmp_path: Path) -> None:
    """Another seed's scene rendered over a first one left the first one's rasters and masks
    beside its own (6 acquisitions where 3 were meant); now that is refused with nothing
    changed, while the same set rendered again replaces its files."""
    from sohae_watch.errors import InputError
    from sohae_watch.samples import generate_scene

    out = tmp_path / "scene"
    generate_scene(out, 7)
    before = sorted(p.name for p in (out / "imagery").iterdir())
    with pytest.raises(InputError, match="holds files this set does not write"):
        generate_scene(out, 8)
    assert sorted(p.name for p in (out / "imagery").iterdir()) == before
    assert json.loads((out / "truth.json").read_text())["seed"] == 7
    generate_scene(out, 7)
    assert sorted(p.name for p in (out / "imagery").iterdir()) == before
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []


def test_off_nadir_leans_roofs_by_height_and_nadir_draws_footprints() -> None:
    """Seen 20 degrees off nadir from the west (view azimuth 270), a 40 m block's roof is drawn
    40 tan 20 = 14.6 m (29 px) east of its footprint, its west wall in the band between; a
    0 m slab stays put; the keys (truth) stay on the footprints. At nadir, whatever the view
    azimuth, every roof is drawn exactly on its footprint and nothing else is touched."""
    from sohae_watch.samples_model import DateSpec
    from sohae_watch.samples_render import draw_elements

    canvas = Grid.from_bounds(CRS.from_epsg(32651), (0.0, 0.0, 100.0, 60.0), 0.5)
    tall = Element("tall", rect(10, 20, 26, 36), 40.0, "roof_red")
    slab = Element("slab", rect(60, 5, 80, 15), 0.0, "roof_blue")
    spec = DateSpec(
        dt.date(2020, 6, 1), dt.time(2, 30), 135.0, 60.0, (1.0,) * 4, (0.0,) * 4, 0.0,  # type: ignore[arg-type]
        (0.0, 0.0), (), "tag", "none", off_nadir=20.0, view_azimuth=270.0,
    )  # fmt: skip

    def draw(s: DateSpec) -> tuple[np.ndarray, np.ndarray]:
        refl = np.zeros((4, *canvas.shape), np.float32)
        idmap = np.zeros(canvas.shape, np.int32)
        grain = np.zeros(canvas.shape, np.float32)
        draw_elements(refl, idmap, canvas, [tall, slab], s, {}, grain)
        return refl, idmap

    refl, idmap = draw(spec)
    red, blue = (np.isclose(refl[0], v) | np.isclose(refl[0], 0.8 * v) for v in (0.31, 0.13))
    base = burn(canvas, tall.geom)
    cols = np.nonzero(red)[1].mean() - np.nonzero(base)[1].mean()
    assert abs(cols - 40 * math.tan(math.radians(20)) / 0.5) < 0.6
    assert np.array_equal(np.nonzero(red)[0].mean(), np.nonzero(base)[0].mean())  # not north
    wall = (refl[0] > 0) & ~red & ~blue
    assert wall.sum() > 0.9 * 29 * 32 and (wall & base).sum() > 0.9 * 29 * 32
    assert np.array_equal(blue, burn(canvas, slab.geom))
    assert np.array_equal(idmap > 0, base | burn(canvas, slab.geom))
    # two parts of one block: no wall between them, one continuous roof 29 px east
    west, east = (
        Element(k, g, 40.0, "roof_red")
        for k, g in (("w", rect(10, 20, 26, 36)), ("e", rect(26, 20, 42, 36)))
    )
    refl = np.zeros((4, *canvas.shape), np.float32)
    draw_elements(
        refl,
        np.zeros(canvas.shape, np.int32),
        canvas,
        [west, east],
        spec,
        {},
        np.zeros(canvas.shape, np.float32),
    )
    red = np.isclose(refl[0], 0.31) | np.isclose(refl[0], 0.8 * 0.31)
    both = burn(canvas, rect(10, 20, 42, 36))
    assert abs(red.sum() - both.sum()) <= 32 and ((refl[0] > 0) & ~red).sum() < 32 * 31
    for az in (0.0, 123.0):
        nadir, ids = draw(dataclasses.replace(spec, off_nadir=0.0, view_azimuth=az))
        red = np.isclose(nadir[0], 0.31) | np.isclose(nadir[0], 0.8 * 0.31)
        assert np.array_equal(red, base) and np.array_equal(ids, idmap)
        assert np.array_equal(nadir[0] > 0, base | burn(canvas, slab.geom))
