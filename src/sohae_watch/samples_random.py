"""Random sample scenes: a layout, state changes and nuisances the classifier was not tuned on.

Everything follows from the seed. Footprints in the site file are the rendered ones jittered by up
to 3 m (footprints from another source); clouds either cover a structure fully or miss every
structure, so ``obscured`` is never a coin toss.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
from dataclasses import replace

import numpy as np
from affine import Affine
from pyproj import Transformer
from rasterio.crs import CRS
from shapely import affinity
from shapely.geometry import LineString, Polygon
from shapely.geometry.base import BaseGeometry

from sohae_watch.grid import Grid, utm_crs_for
from sohae_watch.samples_model import (
    ABSENT,
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

RES = 0.5
ROOFS = ("roof_blue", "roof_green", "roof_gray", "roof_red", "roof_white", "steel", "rust")
PATTERNS = ("ridge", "panels", "skylights", "flat", "units")
NAMES = ("hangar", "assembly hall", "fuel store", "radar tower", "control bunker", "workshop")


def _geographic(name: str, grid: Grid, bounds: tuple[float, ...], metres: float) -> Delivery:
    """An EPSG:4326 delivery covering ``bounds`` (grid CRS) at about ``metres`` per pixel."""
    tr = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True)
    x0, y0, x1, y1 = bounds
    lons, lats = tr.transform([x0, x1, x0, x1], [y0, y0, y1, y1])
    lat = float(np.mean(lats))
    dlat, dlon = metres / 111_030.0, metres / (111_320.0 * math.cos(math.radians(lat)))
    w = math.ceil((max(lons) - min(lons)) / dlon)
    h = math.ceil((max(lats) - min(lats)) / dlat)
    t = Affine(dlon, 0.0, min(lons), 0.0, -dlat, max(lats))
    return Delivery(name, CRS.from_epsg(4326), t, w, h)


class _Builder:
    """Draws one random scene from a seed."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.rng = np.random.default_rng([seed, 20190302])
        r = self.rng
        lon, lat = float(r.uniform(123.2, 125.8)), float(r.uniform(38.5, 41.0))
        crs = utm_crs_for(lon, lat)
        x, y = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(lon, lat)
        self.size = (float(r.choice([260, 300, 340])), float(r.choice([240, 280, 300])))
        self.x0, self.y0 = round(x / 10) * 10.0, round(y / 10) * 10.0
        w, h = self.size
        self.grid = Grid.from_bounds(crs, (self.x0, self.y0, self.x0 + w, self.y0 + h), RES)
        self.taken: list[BaseGeometry] = []

    def at(self, g: BaseGeometry) -> BaseGeometry:
        return affinity.translate(g, self.x0, self.y0)

    def place(self, w: float, h: float, gap: float) -> Polygon | None:
        """A free spot for a w x h rectangle (local metres), or None."""
        sw, sh = self.size
        for _ in range(200):
            x = float(self.rng.uniform(18, sw - 18 - w))
            y = float(self.rng.uniform(18, sh - 18 - h))
            cand = rect(x, y, x + w, y + h)
            if all(cand.distance(t) > gap for t in self.taken):
                self.taken.append(cand)
                return cand
        return None

    def ground(self, road_y: float) -> list[GroundPatch]:
        r, (sw, sh) = self.rng, self.size
        out: list[GroundPatch] = []
        for _ in range(int(r.integers(2, 5))):
            fw, fh = r.uniform(40, 120), r.uniform(40, 110)
            fx, fy = r.uniform(-20, sw - fw + 20), r.uniform(-20, sh - fh + 20)
            cls = str(r.choice(["crop_a", "crop_b"]))
            out.append(GroundPatch(cls, rect(fx, fy, fx + fw, fy + fh), float(r.uniform(1, 179))))
        if r.random() < 0.7:
            cx, cy = r.uniform(0, sw), r.uniform(0, sh)
            pts = [(cx + r.uniform(-70, 70), cy + r.uniform(-60, 60)) for _ in range(8)]
            out.append(GroundPatch("forest", Polygon(pts).convex_hull))
        out.append(GroundPatch("asphalt", LineString([(-30, road_y), (sw + 30, road_y)]).buffer(4)))
        return out

    def structure(self, sid: str, name: str, fp: Polygon) -> StructureDef:
        """Elements of the intact and two modified states of a structure on footprint ``fp``."""
        r = self.rng
        x0, y0, x1, y1 = fp.bounds
        frame = self.at(fp).bounds
        along_x = (x1 - x0) >= (y1 - y0)
        cut = float(r.uniform(0.3, 0.6))
        if along_x:
            xm = x0 + cut * (x1 - x0)
            a, b = rect(x0, y0, xm, y1), rect(xm, y0, x1, y1)
        else:
            ym = y0 + cut * (y1 - y0)
            a, b = rect(x0, y0, x1, ym), rect(x0, ym, x1, y1)
        tall = (x1 - x0) * (y1 - y0) < 300
        h = float(r.uniform(25, 50) if tall else r.uniform(7, 22))
        mat = str(r.choice(ROOFS))
        pat = "lattice" if tall and r.random() < 0.6 else str(r.choice(PATTERNS))

        def el(key: str, g: Polygon, hh: float, m: str, p: str) -> Element:
            return Element(f"{sid}/{key}", self.at(g), hh, m, p, frame)

        split = r.random() < 0.5  # two parts of different heights from the start
        h_b = float(h * r.uniform(0.45, 0.8)) if split else h
        mat_b = str(r.choice(ROOFS)) if split else mat
        intact = (el("a", a, h, mat, pat), el("b", b, h_b, mat_b, pat))
        new_mat = str(r.choice([m for m in ROOFS if m not in (mat, mat_b)]))
        # modified-1: part b gone (plinth left); modified-2: a new element on part b
        plinth = el("plinth", b, 1.0, "concrete_dark", "flat")
        mod1 = (intact[0], plinth)
        mod2 = (intact[0], el("new", b, float(r.uniform(6, 18)), new_mat, "flat"))
        variants = {"intact": intact, "modified-1": mod1, "modified-2": mod2}
        return StructureDef(sid, name, self.at(fp), variants)

    def states(self, dates: list[str], baseline: str) -> dict[str, str]:
        r = self.rng
        cur = "intact" if baseline == "present" else ABSENT
        if r.random() < 0.3:
            cur = "intact" if cur == ABSENT else ABSENT
        out: dict[str, str] = {}
        for d in dates:
            if out and r.random() < 0.4:
                if cur == ABSENT:
                    cur = "intact"
                else:
                    opts = [
                        ABSENT,
                        *(v for v in ("intact", "modified-1", "modified-2") if v != cur),
                    ]
                    cur = str(r.choice(opts))
            out[d] = cur
        return out

    def sun(self, date: dt.date) -> tuple[float, float]:
        doy = date.timetuple().tm_yday
        el = 47 + 23 * math.cos(2 * math.pi * (doy - 172) / 365.25) + self.rng.uniform(-3, 3)
        return round(float(self.rng.uniform(132, 162)), 1), round(float(el), 1)

    def cloud(self, fps: list[Polygon]) -> Cloud | None:
        """A cloud over one structure (fully) or over open ground (missing all structures)."""
        r = self.rng
        target = fps[int(r.integers(len(fps)))] if r.random() < 0.6 else None
        sw, sh = self.size
        for _ in range(200):
            if target is not None:
                c = target.centroid
                cx, cy = c.x + r.uniform(-5, 5), c.y + r.uniform(-5, 5)
            else:
                cx, cy = self.x0 + r.uniform(0, sw), self.y0 + r.uniform(0, sh)
            cl = Cloud(float(cx), float(cy), float(r.uniform(25, 50)), float(r.uniform(18, 35)))
            cl = Cloud(cl.x, cl.y, cl.rx, cl.ry, float(r.uniform(0, 180)))

            def d(p: Polygon, cl: Cloud = cl) -> list[float]:
                a = math.radians(cl.angle)
                out = []
                for x, y in p.exterior.coords:
                    u = (x - cl.x) * math.cos(a) + (y - cl.y) * math.sin(a)
                    v = -(x - cl.x) * math.sin(a) + (y - cl.y) * math.cos(a)
                    out.append(math.hypot(u / cl.rx, v / cl.ry))
                return out

            ok = all((max(d(p)) <= 0.5 if p is target else min(d(p)) >= 1.5) for p in fps)
            if ok:
                return cl
        return None


def random_model(seed: int) -> SceneModel:
    """A random scene: 4-6 named structures, unlisted buildings, 3-4 dates, random nuisances."""
    b = _Builder(seed)
    r = b.rng
    sw, sh = b.size
    road_y = float(r.uniform(0.35, 0.65) * sh)
    b.taken.append(LineString([(0, road_y), (sw, road_y)]).buffer(10))
    ground = b.ground(road_y)
    structures: list[StructureDef] = []
    aprons: list[GroundPatch] = []
    for i in range(int(r.integers(4, 7))):
        tall = r.random() < 0.3
        w, h = (
            (r.uniform(8, 16), r.uniform(8, 16)) if tall else (r.uniform(18, 55), r.uniform(12, 30))
        )
        fp = b.place(float(w), float(h), 14.0)
        if fp is None:
            continue
        name = f"{NAMES[i % len(NAMES)]} {i + 1}"
        structures.append(b.structure(f"structure-{i + 1}", name, fp))
        apron = fp.buffer(float(r.uniform(5, 12)), join_style="mitre")
        aprons.append(GroundPatch(str(r.choice(["concrete", "gravel", "soil"])), apron))
        cx = fp.centroid.x
        access = LineString([(cx, fp.centroid.y), (cx, road_y)]).buffer(3)
        aprons.insert(0, GroundPatch("asphalt", access))
    others: list[StructureDef] = []
    for j in range(int(r.integers(3, 7))):
        fp = b.place(float(r.uniform(8, 22)), float(r.uniform(6, 14)), 8.0)
        if fp is None:
            continue
        el = Element(f"other-{j + 1}", b.at(fp), float(r.uniform(4, 9)), str(r.choice(ROOFS)))
        others.append(
            StructureDef(f"other-{j + 1}", f"building {j + 1}", el.geom, {"intact": (el,)})
        )
    # dates
    n = int(r.integers(3, 5))
    start = dt.date(int(r.integers(2019, 2024)), 1, 1) + dt.timedelta(days=int(r.integers(0, 365)))
    dates = [start]
    for _ in range(n - 1):
        dates.append(dates[-1] + dt.timedelta(days=int(r.integers(4, 150))))
    isos = [d.isoformat() for d in dates]
    states: dict[str, dict[str, str]] = {}
    for k, s in enumerate(structures):
        baseline = "present" if r.random() < 0.8 else "absent"
        structures[k] = replace(s, baseline=baseline)
        states[s.id] = b.states(isos, baseline)
    if structures and r.random() < 0.5:  # a footprint with nothing on it at any date
        structures[-1] = replace(structures[-1], baseline="absent")
        states[structures[-1].id] = dict.fromkeys(isos, ABSENT)
    first = structures[0].id if structures else ""
    if first and all(len(set(v.values())) == 1 for v in states.values()):
        states[first][isos[-1]] = ABSENT if states[first][isos[0]] != ABSENT else "intact"
    for o in others:
        st = dict.fromkeys(isos, "intact")
        if r.random() < 0.3:  # new activity: an unlisted building appears
            k = int(r.integers(1, n))
            st.update(dict.fromkeys(isos[:k], ABSENT))
        states[o.id] = st
    fps = [s.footprint for s in structures]
    specs = [_date(b, d, i, fps) for i, d in enumerate(dates)]
    jitter = {}
    site_fps: dict[str, Polygon] = {}
    for s in structures:
        dx, dy = r.uniform(-1, 1, 2) * 3.0 / math.sqrt(2)
        site_fps[s.id] = affinity.translate(s.footprint, float(dx), float(dy))
        jitter[s.id] = [round(float(dx), 3), round(float(dy), 3)]
    pairs = [*itertools.pairwise(isos), (isos[0], isos[-1])]
    return SceneModel(
        site_id=f"scene-{seed}",
        site_name=f"Random sample scene {seed}",
        seed=seed,
        grid=b.grid,
        ground=[GroundPatch(p.cls, b.at(p.geom), p.angle) for p in ground + aprons],
        structures=structures,
        others=others,
        states=states,
        dates=specs,
        pairs=pairs,
        site_footprints=site_fps,
        extra_truth={"footprint_jitter_m": jitter},
    )


def _date(b: _Builder, date: dt.date, i: int, fps: list[Polygon]) -> DateSpec:
    """A date's nuisances and delivery, drawn at random."""
    r = b.rng
    az, el = b.sun(date)
    base = float(r.uniform(0.85, 1.2))
    gain = tuple(round(base * float(r.uniform(0.95, 1.05)), 3) for _ in range(4))
    offset = tuple(float(r.integers(40, 350)) for _ in range(4))
    shift = (round(float(r.uniform(-3, 3)), 2), round(float(r.uniform(-3, 3)), 2))
    snow = (
        round(float(r.uniform(0.3, 1.0)), 2)
        if date.month in (12, 1, 2, 3) and r.random() < 0.6
        else 0.0
    )
    cloud = b.cloud(fps) if fps and r.random() < 0.35 else None
    left, bottom, right, top = b.grid.bounds
    m = 15.0
    full = (left - m, bottom - m, right + m, top + m)
    letter = "abcd"[i]
    source = str(r.choice(["tag", "filename", "stac"]))
    sun_src = str(r.choice(["tag", "none"])) if source != "stac" else "stac"
    tags: dict[str, str] = {}
    if sun_src == "tag":
        tags.update(SUN_AZIMUTH=f"{az}", SUN_ELEVATION=f"{el}")
    if source == "tag":
        if r.random() < 0.5:
            tags["ACQUISITION_DATE"] = date.isoformat()
        else:
            tags["TIFFTAG_DATETIME"] = f"{date:%Y:%m:%d} 02:30:00"
        stem = f"scene_{letter}"
    elif source == "filename":
        stem = str(
            r.choice([f"img_{date:%Y%m%d}", f"img_{date.isoformat()}", f"img_{date:%Y%m%d}T023000"])
        )
    else:
        stem = f"scene_{letter}"
    stac = source == "stac"
    kind = str(r.choice(["single", "single", "tiles", "geographic", "coarse"]))
    if kind == "tiles":
        mid = (left + right) / 2
        deliveries: tuple[Delivery, ...] = (
            utm_delivery(
                f"{stem}_1.tif", b.grid, (full[0], full[1], mid + 10, full[3]), RES, tags, stac
            ),
            utm_delivery(
                f"{stem}_2.tif", b.grid, (mid - 10, full[1], full[2], full[3]), RES, tags, stac
            ),
        )
    elif kind == "geographic":
        g = _geographic(f"{stem}.tif", b.grid, full, float(r.uniform(0.5, 0.7)))
        deliveries = (Delivery(g.name, g.crs, g.transform, g.width, g.height, tags, stac),)
    else:
        res = 0.7 if kind == "coarse" else RES
        deliveries = (utm_delivery(f"{stem}.tif", b.grid, full, res, tags, stac),)
    return DateSpec(
        date, dt.time(2, 30), az, el, gain, offset, float(r.uniform(20, 50)), shift,  # type: ignore[arg-type]
        deliveries, source, sun_src, snow=snow, cloud=cloud,
    )  # fmt: skip
