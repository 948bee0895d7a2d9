"""Deterministic synthetic sample scenes with exact ground truth.

``generate_sohae_samples`` renders the Sohae 2018-2019 story (five dates, every archive nuisance the
contract names); ``generate_scene`` renders a further random scene with its own site file. Both write
``truth.json`` (true states, statuses, events, shifts and per-pair change masks).

The Sohae layout below (:data:`SOHAE_LAYOUT`, UTM 51N metres from :data:`SOHAE_ORIGIN`) is the one
definition of the site: ``configs/sohae.yaml`` is written from it (:func:`write_sohae_site`) and a
test checks that they agree.

Command line: ``python -m sohae_watch.samples OUT_DIR [--seed N] [--scene] [--site-file PATH]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml
from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import transform_bounds
from shapely import affinity
from shapely.geometry import LineString, Point, Polygon

from sohae_watch.grid import Grid
from sohae_watch.samples_model import (
    Cloud,
    DateSpec,
    Delivery,
    Element,
    GroundPatch,
    SceneModel,
    StructureDef,
    rect,
    utm_delivery,
)
from sohae_watch.samples_render import stable_rng
from sohae_watch.samples_write import render_model

SOHAE_CRS = CRS.from_epsg(32651)
SOHAE_ORIGIN = (646010.0, 4391210.0)  # UTM 51N easting, northing of the AOI's south-west corner
SOHAE_SIZE = (500.0, 400.0)  # metres east, north
RESOLUTION = 0.5
DELIVERY_MARGIN = 15.0  # metres of imagery beyond the AOI on every side

# Structure id -> (name, local footprint (x0, y0, x1, y1) in metres east/north of SOHAE_ORIGIN).
SOHAE_LAYOUT: dict[str, tuple[str, tuple[float, float, float, float]]] = {
    "launch-pad": ("launch pad structures", (150.0, 190.0, 176.0, 220.0)),
    "pad-shields": ("launch pad environmental shields", (60.0, 225.0, 84.0, 255.0)),
    "gantry-tower": ("gantry tower", (110.0, 198.0, 124.0, 212.0)),
    "test-stand": ("vertical engine test stand", (420.0, 70.0, 444.0, 94.0)),
    "processing-building": ("rail-mounted processing building", (250.0, 193.0, 310.0, 217.0)),
    "main-processing": ("main processing building", (340.0, 250.0, 430.0, 310.0)),
}
SOHAE_BASELINE = {"launch-pad": "present"}

# Date -> state of each structure (the 2018-2019 story).
SOHAE_DATES = ("2018-07-20", "2018-08-03", "2019-02-16", "2019-03-02", "2019-03-06")
SOHAE_STATES: dict[str, tuple[str, ...]] = {
    "launch-pad": ("intact", "absent", "absent", "intact", "intact"),
    "pad-shields": ("intact", "intact", "intact", "absent", "absent"),
    "gantry-tower": ("intact",) * 5,
    "test-stand": (
        "intact",
        "partly-dismantled",
        "partly-dismantled",
        "partly-dismantled",
        "new-element",
    ),
    "processing-building": ("intact",) * 5,
    "main-processing": ("intact",) * 5,
}
SOHAE_PAIRS = [
    *itertools.pairwise(SOHAE_DATES),
    ("2018-07-20", "2019-03-02"),
]


def _utm(geom: Polygon) -> Polygon:
    """A local-metre geometry moved to UTM."""
    return affinity.translate(geom, *SOHAE_ORIGIN)


def sohae_grid() -> Grid:
    """The Sohae working grid (EPSG:32651, 0.5 m, 1000 x 800)."""
    x0, y0 = SOHAE_ORIGIN
    return Grid.from_bounds(SOHAE_CRS, (x0, y0, x0 + SOHAE_SIZE[0], y0 + SOHAE_SIZE[1]), RESOLUTION)


def sohae_footprints() -> dict[str, Polygon]:
    """The named structures' footprints in UTM metres."""
    return {sid: _utm(rect(*box)) for sid, (_, box) in SOHAE_LAYOUT.items()}


def _el(key: str, box: tuple[float, float, float, float], h: float, mat: str, pat: str) -> Element:
    return Element(key, _utm(rect(*box)), h, mat, pat)


def _sohae_structures() -> list[StructureDef]:
    fp = sohae_footprints()
    b = {sid: box for sid, (_, box) in SOHAE_LAYOUT.items()}
    x0, y0, x1, y1 = b["test-stand"]
    plinth = _el("test-stand/plinth", b["test-stand"], 1.5, "concrete_dark", "flat")
    core = (x0 + 6, y0 + 6, x1 - 6, y1 - 6)
    west = _el("test-stand/west-wing", (x0, y0, x0 + 6, y1), 20.0, "roof_blue", "panels")
    east_box = (x1 - 6, y0, x1, y1)
    lx0, ly0, lx1, ly1 = b["launch-pad"]
    variants: dict[str, dict[str, tuple[Element, ...]]] = {
        "launch-pad": {
            "intact": (
                _el("launch-pad/body", b["launch-pad"], 30.0, "steel", "panels"),
                _el("launch-pad/top", (lx0 + 6, ly0 + 8, lx1 - 6, ly1 - 8), 32.0, "roof_white", ""),
            )
        },
        "pad-shields": {
            "intact": (_el("pad-shields/hall", b["pad-shields"], 16.0, "roof_green", "ridge"),)
        },
        "gantry-tower": {
            "intact": (_el("gantry-tower/frame", b["gantry-tower"], 55.0, "steel", "lattice"),)
        },
        "test-stand": {
            "intact": (
                plinth,
                _el("test-stand/core/v1", core, 35.0, "steel", "lattice"),
                west,
                _el("test-stand/east-wing", east_box, 20.0, "roof_blue", "panels"),
            ),
            "partly-dismantled": (plinth, _el("test-stand/core/v2", core, 24.0, "rust", ""), west),
            "new-element": (
                plinth,
                _el("test-stand/core/v2", core, 24.0, "rust", ""),
                west,
                _el("test-stand/new-frame", east_box, 12.0, "roof_white", ""),
            ),
        },
        "processing-building": {
            "intact": (
                _el("processing-building/hall", b["processing-building"], 20, "roof_blue", "ridge"),
            )
        },
        "main-processing": {
            "intact": (
                _el("main-processing/hall", b["main-processing"], 18, "roof_gray", "skylights"),
            )
        },
    }
    return [
        StructureDef(sid, name, fp[sid], variants[sid], SOHAE_BASELINE.get(sid))
        for sid, (name, _) in SOHAE_LAYOUT.items()
    ]


def _sohae_others() -> list[StructureDef]:
    """Buildings the site file does not list (all unchanged)."""
    specs: list[tuple[Polygon, float, str, str]] = [
        (rect(300, 110, 316, 120), 6, "roof_red", "ridge"),
        (rect(322, 110, 338, 120), 6, "roof_red", "ridge"),
        (rect(225, 300, 255, 314), 8, "roof_gray", "panels"),
        (rect(455, 330, 480, 352), 10, "roof_green", ""),
        (rect(200, 45, 212, 53), 5, "roof_gray", "units"),
        (rect(130, 330, 148, 342), 7, "roof_blue", ""),
        (Point(470, 200).buffer(6, 16), 10, "roof_white", ""),
    ]
    out = []
    for i, (g, h, mat, pat) in enumerate(specs, start=1):
        el = Element(f"other-{i}", _utm(g), h, mat, pat)
        out.append(StructureDef(f"other-{i}", f"building {i}", el.geom, {"intact": (el,)}))
    return out


def _road(points: list[tuple[float, float]], width: float) -> Polygon:
    return LineString(points).buffer(width / 2, cap_style="flat", join_style="round")


def _sohae_ground() -> list[GroundPatch]:
    p: list[tuple[str, Any, float]] = [
        ("crop_a", rect(0, 0, 95, 110), 20.0),
        ("crop_b", rect(100, 0, 190, 110), 110.0),
        ("crop_b", rect(445, 160, 500, 320), 1.0),
        ("crop_a", rect(445, 320, 500, 400), 90.0),
        ("forest", Polygon([(0, 290), (200, 290), (230, 400), (0, 400)]), 0.0),
        ("gravel", rect(125, 325, 153, 347), 0.0),
        ("gravel", rect(450, 325, 485, 357), 0.0),
        ("gravel", rect(325, 235, 445, 325), 0.0),
        ("soil", rect(210, 180, 330, 230), 0.0),
        ("soil", rect(280, 100, 345, 128), 0.0),
        ("concrete", rect(400, 50, 470, 115), 0.0),
        ("concrete", rect(40, 130, 210, 280), 0.0),
        ("trench", rect(100, 172, 134, 184), 0.0),
        ("asphalt", _road([(330, 0), (330, 140), (320, 185), (320, 240)], 8), 0.0),
        ("asphalt", _road([(210, 150), (470, 150)], 7), 0.0),
        ("asphalt", _road([(435, 115), (435, 150)], 6), 0.0),
        ("asphalt", _road([(385, 150), (385, 250)], 6), 0.0),
        ("asphalt", _road([(240, 230), (240, 300)], 5), 0.0),
        ("ballast", _road([(140, 205), (500, 205)], 5), 0.0),
        ("rail", _road([(140, 204.25), (500, 204.25)], 0.7), 0.0),
        ("rail", _road([(140, 205.75), (500, 205.75)], 0.7), 0.0),
    ]
    return [GroundPatch(c, _utm(g), a) for c, g, a in p]


def _utm_box(x0: float, y0: float, x1: float, y1: float) -> tuple[float, float, float, float]:
    ox, oy = SOHAE_ORIGIN
    return (ox + x0, oy + y0, ox + x1, oy + y1)


def _geographic_delivery(name: str, grid: Grid, metres: float, margin: float) -> Delivery:
    """A delivery in EPSG:4326 covering the grid plus ``margin`` at about ``metres`` per pixel."""
    left, bottom, right, top = grid.bounds
    lon0, lat0, lon1, lat1 = transform_bounds(
        grid.crs, "EPSG:4326", left - margin, bottom - margin, right + margin, top + margin
    )
    lat_mid = (lat0 + lat1) / 2
    dlat = metres / 111_030.0
    dlon = metres / (111_320.0 * math.cos(math.radians(lat_mid)))
    width = math.ceil((lon1 - lon0) / dlon)
    height = math.ceil((lat1 - lat0) / dlat)
    t = Affine(dlon, 0.0, lon0, 0.0, -dlat, lat1)
    return Delivery(name, CRS.from_epsg(4326), t, width, height, {}, stac=True)


def _sun_tags(az: float, el: float) -> dict[str, str]:
    return {"SUN_AZIMUTH": f"{az:.1f}", "SUN_ELEVATION": f"{el:.1f}"}


def _sohae_dates(grid: Grid) -> list[DateSpec]:
    m = DELIVERY_MARGIN
    w, h = SOHAE_SIZE
    full = _utm_box(-m, -m, w + m, h + m)
    west = _utm_box(-m, -m, w / 2 + 10, h + m)
    east = _utm_box(w / 2 - 10, -m, w + m, h + m)
    d = dt.date.fromisoformat
    return [
        DateSpec(
            d("2018-07-20"), dt.time(2, 30), 140.0, 65.0, (1.0, 1.0, 1.0, 1.0),
            (120, 140, 160, 90), 25.0, (0.3, -0.2),
            (utm_delivery("sohae_a.tif", grid, full, RESOLUTION,
                          {"ACQUISITION_DATE": "2018-07-20", **_sun_tags(140.0, 65.0)}),),
            "tag", "tag",
        ),
        DateSpec(
            d("2018-08-03"), dt.time(2, 25), 145.0, 62.0, (1.18, 1.12, 1.08, 1.25),
            (300, 280, 260, 200), 35.0, (-0.6, 0.8),
            (utm_delivery("sohae_20180803_west.tif", grid, west, RESOLUTION),
             utm_delivery("sohae_20180803_east.tif", grid, east, RESOLUTION)),
            "filename", "none",
        ),
        DateSpec(
            d("2019-02-16"), dt.time(2, 31), 155.0, 31.0, (0.92, 0.95, 0.97, 0.9),
            (180, 200, 240, 140), 30.0, (1.1, 0.4),
            (_geographic_delivery("sohae_wgs84.tif", grid, 0.6, m),),
            "stac", "stac", snow=0.95,
        ),
        DateSpec(
            d("2019-03-02"), dt.time(2, 29), 152.0, 38.0, (1.08, 1.05, 1.02, 1.12),
            (220, 230, 250, 160), 45.0, (2.3, -1.6),
            (utm_delivery("sohae_c.tif", grid, full, RESOLUTION,
                          {"TIFFTAG_DATETIME": "2019:03:02 02:29:00", **_sun_tags(152.0, 38.0)}),),
            "tag", "tag", snow=0.45,
        ),
        DateSpec(
            d("2019-03-06"), dt.time(2, 30), 150.0, 40.0, (0.97, 1.0, 1.03, 0.95),
            (150, 160, 190, 120), 30.0, (-0.4, 0.9),
            (utm_delivery("sohae_20190306T023000.tif", grid, full, RESOLUTION,
                          _sun_tags(150.0, 40.0)),),
            "filename", "tag",
            cloud=Cloud(SOHAE_ORIGIN[0] + 280, SOHAE_ORIGIN[1] + 205, 48.0, 30.0, 10.0),
        ),
    ]  # fmt: skip


def sohae_model(seed: int = 0) -> SceneModel:
    """The Sohae sample scene as a model (nothing rendered yet)."""
    grid = sohae_grid()
    structures = _sohae_structures()
    others = _sohae_others()
    states = {sid: dict(zip(SOHAE_DATES, v, strict=True)) for sid, v in SOHAE_STATES.items()}
    for o in others:
        states[o.id] = dict.fromkeys(SOHAE_DATES, "intact")
    return SceneModel(
        site_id="sohae",
        site_name="Sohae Satellite Launching Station",
        seed=seed,
        grid=grid,
        ground=_sohae_ground(),
        structures=structures,
        others=others,
        states=states,
        dates=_sohae_dates(grid),
        pairs=list(SOHAE_PAIRS),
        site_footprints=sohae_footprints(),
    )


def _ring(grid: Grid, poly: Polygon, digits: int = 9) -> list[list[float]]:
    geo = grid.geometry_to_lonlat(poly)
    return [[round(x, digits), round(y, digits)] for x, y in geo["coordinates"][0]]


def site_dict(model: SceneModel, imagery: str) -> dict[str, Any]:
    """The site file (contract schema) of a model: AOI, grid, structures with lon/lat footprints.

    The AOI is the working grid's extent shrunk by 1 cm, so that snapping its projected bounds
    outwards to the 0.5 m grid gives exactly the working grid back.
    """
    g = model.grid
    left, bottom, right, top = g.bounds
    aoi = rect(left + 0.01, bottom + 0.01, right - 0.01, top - 0.01)
    structures = []
    for s in model.structures:
        item: dict[str, Any] = {
            "id": s.id,
            "name": s.name,
            "geometry": {"type": "Polygon", "coordinates": [_ring(g, model.site_footprints[s.id])]},
        }
        if s.baseline:
            item["baseline"] = s.baseline
        structures.append(item)
    return {
        "id": model.site_id,
        "name": model.site_name,
        "grid": {"crs": f"EPSG:{g.crs.to_epsg()}", "resolution": g.resolution},
        "aoi": {"type": "Polygon", "coordinates": [_ring(g, aoi)]},
        "imagery": imagery,
        "thresholds": {"min_observed_fraction": 0.5, "min_usable_fraction": 0.3},
        "structures": structures,
    }


def site_yaml(site: dict[str, Any], header: str) -> str:
    """The site file text."""
    body = yaml.safe_dump(site, sort_keys=False, default_flow_style=None, width=100)
    return "".join(f"# {line}\n" for line in header.splitlines()) + body


SOHAE_SITE_HEADER = (
    "Sohae Satellite Launching Station (fictionalised compact layout of the sample area).\n"
    "Generated from sohae_watch.samples.SOHAE_LAYOUT by\n"
    "  python -m sohae_watch.samples --site-file configs/sohae.yaml\n"
    "tests/test_samples.py fails if this file and the layout drift apart."
)


def sohae_site() -> dict[str, Any]:
    """The Sohae site file as a dict (imagery relative to ``configs/``)."""
    return site_dict(sohae_model(), "../data/samples/sohae/imagery")


def write_sohae_site(path: Path) -> Path:
    """Write ``configs/sohae.yaml`` from the layout."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(site_yaml(sohae_site(), SOHAE_SITE_HEADER))
    return path


def with_views(model: SceneModel, off_nadir_max: float) -> SceneModel:
    """``model`` with each date seen from a random view: off nadir uniform in
    [0, ``off_nadir_max``] degrees, view azimuth uniform in [0, 360), drawn from the seed and the
    date alone (the scene's other draws stay as they were). 0 leaves the model as it is."""
    if off_nadir_max <= 0:
        return model
    dates = []
    for d in model.dates:
        rng = stable_rng(model.seed, "view", d.iso)
        off, az = rng.uniform(0.0, off_nadir_max), rng.uniform(0.0, 360.0)
        dates.append(replace(d, off_nadir=round(float(off), 2), view_azimuth=round(float(az), 1)))
    extra = {**model.extra_truth, "off_nadir_max": off_nadir_max}
    return replace(model, dates=dates, extra_truth=extra)


def generate_sohae_samples(
    out_dir: Path, *, seed: int = 0, shade_roofs: bool = False, off_nadir_max: float = 0.0
) -> Path:
    """Render the Sohae story into ``out_dir``, write truth.json; return the truth.json path.
    ``shade_roofs``: taller elements' shadows fall on lower roofs too (not by default);
    ``off_nadir_max``: each date seen from a random view (:func:`with_views`; nadir by default).

    Deterministic: the same seed gives identical pixels and truth.
    """
    model = with_views(replace(sohae_model(seed), shade_roofs=shade_roofs), off_nadir_max)
    return render_model(model, Path(out_dir))


def generate_scene(
    out_dir: Path, seed: int, *, shade_roofs: bool = False, off_nadir_max: float = 0.0
) -> Path:
    """A further random scene (layout, state changes over 3-4 dates, nuisances) with ``site.yaml``
    (``imagery: imagery``) and truth.json in ``out_dir``; return the truth.json path."""
    from sohae_watch.samples_random import random_model

    out = Path(out_dir)
    model = with_views(replace(random_model(seed), shade_roofs=shade_roofs), off_nadir_max)
    path = render_model(model, out)
    (out / "site.yaml").write_text(
        site_yaml(site_dict(model, "imagery"), f"Random sample scene, seed {seed}.")
    )
    return path


def main(argv: list[str] | None = None) -> int:
    """``python -m sohae_watch.samples OUT_DIR [--seed N] [--scene] [--site-file PATH]``."""
    ap = argparse.ArgumentParser(prog="python -m sohae_watch.samples", description=__doc__)
    ap.add_argument("out_dir", nargs="?", type=Path, help="where to write rasters and truth.json")
    ap.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    ap.add_argument("--scene", action="store_true", help="a random scene instead of Sohae")
    ap.add_argument("--site-file", type=Path, help="also write the Sohae site file here")
    ap.add_argument("--shade-roofs", action="store_true", help="shadows fall on lower roofs too")
    args = ap.parse_args(argv)
    if args.out_dir is None and args.site_file is None:
        ap.error("give OUT_DIR and/or --site-file")
    if args.site_file is not None:
        print(f"wrote {write_sohae_site(args.site_file)}")
    if args.out_dir is not None:
        t0 = time.perf_counter()
        if args.scene:
            truth = generate_scene(args.out_dir, args.seed, shade_roofs=args.shade_roofs)
        else:
            truth = generate_sohae_samples(
                args.out_dir, seed=args.seed, shade_roofs=args.shade_roofs
            )
        print(f"wrote {truth} ({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
