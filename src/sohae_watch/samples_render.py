"""Rendering of a :class:`~sohae_watch.samples_model.SceneModel` into surface reflectance.

The ground truth is rendered once per date on a *canvas*: the working grid plus a margin, in true
ground coordinates. Deliveries are resampled from it with the date's content shift, so every raster,
whatever its CRS, resolution or tiling, shows the same ground; truth is computed on the canvas.
"""

from __future__ import annotations

import datetime as dt
import math
import zlib
from dataclasses import dataclass

import numpy as np
from rasterio.features import rasterize
from scipy import ndimage
from shapely import affinity
from shapely.geometry import MultiPolygon, Polygon, mapping
from shapely.geometry.base import BaseGeometry
from shapely.ops import unary_union

from sohae_watch.grid import Grid
from sohae_watch.samples_model import Cloud, DateSpec, Element, GroundPatch

Spectrum = tuple[float, float, float, float]

# Surface reflectance (red, green, blue, nir) of the materials.
MATERIALS: dict[str, Spectrum] = {
    "concrete": (0.30, 0.30, 0.28, 0.33),
    "concrete_dark": (0.21, 0.21, 0.20, 0.24),
    "asphalt": (0.08, 0.08, 0.085, 0.10),
    "ballast": (0.17, 0.16, 0.15, 0.19),
    "rail": (0.05, 0.05, 0.05, 0.06),
    "trench": (0.035, 0.035, 0.04, 0.045),
    "soil": (0.19, 0.16, 0.12, 0.25),
    "soil_wet": (0.11, 0.09, 0.07, 0.15),
    "gravel": (0.25, 0.23, 0.20, 0.29),
    "veg_green": (0.04, 0.085, 0.035, 0.42),
    "veg_brown": (0.15, 0.125, 0.085, 0.21),
    "pine_summer": (0.03, 0.06, 0.03, 0.30),
    "pine_winter": (0.04, 0.055, 0.035, 0.19),
    "snow": (0.84, 0.86, 0.89, 0.70),
    "roof_blue": (0.13, 0.21, 0.32, 0.29),
    "roof_green": (0.11, 0.25, 0.19, 0.26),
    "roof_gray": (0.27, 0.28, 0.29, 0.31),
    "roof_red": (0.31, 0.14, 0.10, 0.33),
    "roof_white": (0.55, 0.56, 0.57, 0.54),
    "steel": (0.38, 0.39, 0.41, 0.40),
    "steel_dark": (0.13, 0.13, 0.14, 0.15),
    "rust": (0.25, 0.14, 0.09, 0.29),
    "cloud": (1.9, 1.9, 1.95, 1.8),
}
SHADE: Spectrum = (0.20, 0.23, 0.32, 0.16)  # diffuse skylight share left in a cast shadow
CLASSES = (
    "grass",
    "crop_a",
    "crop_b",
    "forest",
    "soil",
    "gravel",
    "concrete",
    "concrete_dark",
    "asphalt",
    "ballast",
    "rail",
    "trench",
)
SNOWABLE = ("grass", "crop_a", "crop_b", "forest", "soil", "gravel")
TREE_HEIGHT = 8.0


def stable_rng(seed: int, *parts: object) -> np.random.Generator:
    """A generator seeded from ``seed`` and a stable hash of ``parts`` (not Python's ``hash``)."""
    key = zlib.crc32("/".join(map(str, parts)).encode())
    return np.random.default_rng([seed, key])


def fractal(shape: tuple[int, int], rng: np.random.Generator, beta: float = 2.0) -> np.ndarray:
    """Zero-mean, unit-variance 1/f^beta noise (float32)."""
    h, w = shape
    white = rng.standard_normal(shape)
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    f = np.sqrt(fx * fx + fy * fy)
    f[0, 0] = 1.0
    spec = np.fft.rfft2(white) / f ** (beta / 2.0)
    spec[0, 0] = 0.0
    out = np.fft.irfft2(spec, s=shape)
    out /= out.std() + 1e-12
    return out.astype(np.float32)


def greenness(date: dt.date) -> float:
    """Phenology: 1 in high summer, 0 from late autumn to early spring."""
    doy = date.timetuple().tm_yday
    return float(np.clip(0.45 + 0.6 * math.cos(2 * math.pi * (doy - 205) / 365.25), 0.0, 1.0))


def sun_vector(azimuth: float) -> tuple[float, float]:
    """Unit vector towards the sun in map axes (east, north)."""
    a = math.radians(azimuth)
    return math.sin(a), math.cos(a)


def shadow_geom(geom: Polygon, height: float, azimuth: float, elevation: float) -> BaseGeometry:
    """The ground shadow of a prism of ``height`` (including its own footprint)."""
    length = height / math.tan(math.radians(elevation))
    sx, sy = sun_vector(azimuth)
    moved = affinity.translate(geom, -sx * length, -sy * length)
    return unary_union([geom, moved]).convex_hull


def lean(height: float, spec: DateSpec) -> tuple[float, float]:
    """Map offset (east, north) in metres at which a point ``height`` m up is drawn on a date:
    ``height * tan(off_nadir)`` away from the satellite (opposite ``view_azimuth``)."""
    if spec.off_nadir == 0 or height <= 0:
        return 0.0, 0.0
    d = height * math.tan(math.radians(spec.off_nadir))
    vx, vy = sun_vector(spec.view_azimuth)  # the bearing toward the satellite, as a vector
    return -vx * d, -vy * d


def burn(canvas: Grid, geom: BaseGeometry) -> np.ndarray:
    """Boolean mask of ``geom`` on ``canvas`` (pixel centres)."""
    if geom.is_empty:
        return np.zeros(canvas.shape, dtype=bool)
    return canvas.rasterize(geom)


@dataclass
class GroundLayers:
    """The static ground: land-cover classes, crop-row angles and texture fields."""

    cls: np.ndarray  # int8 class index into CLASSES
    angle: np.ndarray  # float32 degrees
    x: np.ndarray  # map x of pixel centres (1, W)
    y: np.ndarray  # map y of pixel centres (H, 1)
    tex: np.ndarray  # (4, H, W) fractal textures
    crowns: np.ndarray  # float32 tree-crown field
    snow_rank: np.ndarray  # float32 in [0, 1): where snow lies first / melts last


def make_ground(canvas: Grid, patches: list[GroundPatch], seed: int) -> GroundLayers:
    """Paint the ground patches and draw the static textures."""
    shapes = [(mapping(p.geom), CLASSES.index(p.cls)) for p in patches]
    cls = rasterize(
        shapes, out_shape=canvas.shape, transform=canvas.transform, fill=0, dtype="int16"
    )
    ang_shapes = [(mapping(p.geom), float(p.angle)) for p in patches if p.angle]
    angle = (
        rasterize(ang_shapes, out_shape=canvas.shape, transform=canvas.transform, dtype="float32")
        if ang_shapes
        else np.zeros(canvas.shape, dtype=np.float32)
    )
    t = canvas.transform
    x = (t.c + (np.arange(canvas.width) + 0.5) * t.a)[None, :]
    y = (t.f + (np.arange(canvas.height) + 0.5) * t.e)[:, None]
    rng = stable_rng(seed, "ground")
    tex = np.stack([fractal(canvas.shape, rng, b) for b in (2.2, 1.2, 3.0, 2.6)])
    pts = (rng.random(canvas.shape) < 0.012).astype(np.float32)
    crowns = ndimage.gaussian_filter(pts, 3.0) * 60.0
    snow = tex[3] + 0.35 * tex[1]
    snow_rank = (np.argsort(np.argsort(snow, axis=None)) / snow.size).reshape(canvas.shape)
    return GroundLayers(cls.astype(np.int8), angle, x, y, tex, crowns, snow_rank.astype(np.float32))


def _spec(name: str) -> np.ndarray:
    return np.asarray(MATERIALS[name], dtype=np.float32)[:, None, None]


def _mix(a: str, b: str, w: float | np.ndarray) -> np.ndarray:
    return _spec(a) * (1 - w) + _spec(b) * w


def ground_reflectance(g: GroundLayers, spec: DateSpec) -> tuple[np.ndarray, np.ndarray]:
    """Reflectance of the bare ground on a date, and the tree-crown mask (4, H, W), (H, W)."""
    green = greenness(spec.date)
    cls = g.cls
    t0, t1, t2 = g.tex[0], g.tex[1], g.tex[2]
    shape = cls.shape
    out = np.zeros((4, *shape), dtype=np.float32)

    def put(name: str, value: np.ndarray) -> None:
        m = cls == CLASSES.index(name)
        if m.any():
            out[:, m] = np.broadcast_to(value, (4, *shape))[:, m]

    local_green = np.clip(green * (1.0 + 0.25 * t1) - 0.15 * np.maximum(t2 - 1.0, 0), 0, 1)
    put("grass", _mix("veg_brown", "veg_green", local_green) * (1 + 0.10 * t0))
    theta = np.radians(g.angle)
    rows = 0.5 + 0.5 * np.sin(2 * np.pi * (g.x * np.cos(theta) + g.y * np.sin(theta)) / 2.5)
    put("crop_a", _mix("soil_wet", "veg_green", green * (0.75 + 0.25 * rows)) * (1 + 0.06 * t0))
    crop_b = _mix("soil", "veg_green", green * (0.55 + 0.45 * rows)) * (1 + 0.05 * t0)
    put("crop_b", crop_b * (1 - 0.08 * (1 - green) * rows))
    for name, amp in (("soil", 0.10), ("gravel", 0.07), ("asphalt", 0.05), ("ballast", 0.06)):
        put(name, _spec(name) * (1 + amp * t0))
    for name in ("rail", "trench", "concrete_dark"):
        put(name, _spec(name) * (1 + 0.03 * t0))
    joints = (np.mod(g.x, 10.0) < 0.5) | (np.mod(g.y, 10.0) < 0.5)
    put("concrete", _spec("concrete") * (1 + 0.05 * t0 - 0.12 * joints))
    # forest: sunlit / shaded tree crowns over a grassy floor
    forest = cls == CLASSES.index("forest")
    crown = forest & (g.crowns > 0.5)
    if forest.any():
        floor = _mix("veg_brown", "veg_green", 0.6 * local_green) * (1 + 0.1 * t0)
        put("forest", floor)
        sx, sy = sun_vector(spec.sun_azimuth)
        gy, gx = np.gradient(g.crowns)
        lit = np.clip(1.0 - 1.2 * (gx * sx - gy * sy), 0.45, 1.5)
        pine = _mix("pine_winter", "pine_summer", green) * lit * (1 + 0.08 * t1)
        out[:, crown] = np.broadcast_to(pine, (4, *shape))[:, crown]
    return out, crown


def apply_snow(refl: np.ndarray, g: GroundLayers, crown: np.ndarray, fraction: float) -> np.ndarray:
    """Cover ``fraction`` of the open ground with snow (soft-edged patches); the snow mask."""
    if fraction <= 0:
        return np.zeros(g.cls.shape, dtype=bool)
    open_ground = np.isin(g.cls, [CLASSES.index(c) for c in SNOWABLE]) & ~crown
    alpha = np.clip((fraction - g.snow_rank) / 0.03, 0, 1) * open_ground
    snow = _spec("snow") * (1 + 0.03 * g.tex[0])
    refl[:] = refl * (1 - alpha) + snow * alpha
    return alpha > 0.5


def tree_shadows(crown: np.ndarray, spec: DateSpec, res: float) -> np.ndarray:
    """Where the trees' shadows fall on the floor."""
    if not crown.any():
        return crown
    length = TREE_HEIGHT / math.tan(math.radians(spec.sun_elevation)) / res
    sx, sy = sun_vector(spec.sun_azimuth)
    # map (east, north) -> array (col, row): row offset is minus north
    moved = ndimage.shift(crown.astype(np.uint8), (sy * length, -sx * length), order=0)
    return (moved > 0) & ~crown


def _pattern(
    el: Element, xs: np.ndarray, ys: np.ndarray, noise: np.ndarray, spec: DateSpec
) -> np.ndarray:
    """Roof brightness factor of an element on a window of map coordinates.

    The pattern is laid on the element's ``frame`` (default: its bounds) and the roof grain is a
    static field, so a part kept from an earlier state renders identically.
    """
    minx, miny, maxx, maxy = el.frame or el.geom.bounds
    along_x = (maxx - minx) >= (maxy - miny)
    u = (xs - minx) if along_x else (ys - miny)  # along the long axis
    v = (ys - miny) if along_x else (xs - minx)  # across
    width = (maxy - miny) if along_x else (maxx - minx)
    f = 1.0 + 0.03 * noise
    if el.pattern == "panels":
        f = f * (1 + 0.07 * np.sign(np.sin(2 * np.pi * u / 2.0)))
    elif el.pattern == "skylights":
        f = f * np.where((np.mod(u, 10.0) < 2.5) & (np.abs(v - width / 2) < 0.3 * width), 1.5, 1.0)
    elif el.pattern == "lattice":
        bars = (np.mod(u, 2.0) < 0.6) | (np.mod(v, 2.0) < 0.6)
        f = f * np.where(bars, 1.25, 0.45)
    elif el.pattern == "ridge":
        sx, sy = sun_vector(spec.sun_azimuth)
        normal = (0.0, 1.0) if along_x else (1.0, 0.0)
        facing = normal[0] * sx + normal[1] * sy
        f = f * (1 + 0.12 * facing * np.sign(v - width / 2))
    elif el.pattern == "units":
        f = f * np.where((np.mod(u, 7.0) < 2.0) & (np.mod(v, 6.0) < 2.0), 0.5, 1.0)
    return np.asarray(f, dtype=np.float32)


def draw_elements(
    refl: np.ndarray,
    idmap: np.ndarray,
    canvas: Grid,
    elements: list[Element],
    spec: DateSpec,
    key_ids: dict[str, int],
    grain: np.ndarray,
) -> None:
    """Draw roofs (low to high) with their roof patterns and a darker rim; record their keys.

    Off nadir (:func:`lean`) each roof is drawn moved by its lean and the walls facing the
    satellite as the band swept between footprint and roof (the convex hull of both, less the
    roof: footprints are taken as convex), in the roof's material times
    0.65 + 0.35 cos(view azimuth - sun azimuth): as bright as the roof when the sun is behind
    the satellite, 0.3 of it facing away. No wall is drawn over a roof of its own height (parts
    of one block). The keys (truth) stay on the footprints."""
    t = canvas.transform
    tops = {e.key: affinity.translate(e.geom, *lean(e.height, spec)) for e in elements}
    for el in sorted(elements, key=lambda e: e.height):
        dx, dy = lean(el.height, spec)
        top = tops[el.key] if dx or dy else el.geom
        walls = Polygon()
        if dx or dy:
            level = unary_union([tops[e.key] for e in elements if e.height == el.height])
            walls = el.geom.union(top).convex_hull.difference(level)
        minx, miny, maxx, maxy = el.geom.union(top).bounds if dx or dy else el.geom.bounds
        c0 = max(0, int((minx - t.c) / t.a) - 1)
        c1 = min(canvas.width, int((maxx - t.c) / t.a) + 2)
        r0 = max(0, int((maxy - t.f) / t.e) - 1)
        r1 = min(canvas.height, int((miny - t.f) / t.e) + 2)
        if c1 <= c0 or r1 <= r0:
            continue
        win = canvas.crop(r0, c0, r1 - r0, c1 - c0)
        base = win.rasterize(el.geom)
        m = win.rasterize(top) if dx or dy else base
        if not (m.any() or base.any()):
            continue
        xs = (t.c + (np.arange(c0, c1) + 0.5) * t.a)[None, :]
        ys = (t.f + (np.arange(r0, r1) + 0.5) * t.e)[:, None]
        gr = np.clip(np.arange(r0, r1) - int(round(dy / t.e)), 0, grain.shape[0] - 1)
        gc = np.clip(np.arange(c0, c1) - int(round(dx / t.a)), 0, grain.shape[1] - 1)
        f = _pattern(el, xs - dx, ys - dy, grain[np.ix_(gr, gc)], spec)
        rim = m & ~ndimage.binary_erosion(m)
        f = np.where(rim, f * 0.8, f)
        roof = _spec(el.material) * f
        sub = refl[:, r0:r1, c0:c1]
        if not walls.is_empty:
            w = win.rasterize(walls)
            lit = 0.65 + 0.35 * math.cos(math.radians(spec.view_azimuth - spec.sun_azimuth))
            sub[:, w] = np.broadcast_to(_spec(el.material) * np.float32(lit), sub.shape)[:, w]
        sub[:, m] = roof[:, m]
        idmap[r0:r1, c0:c1][base] = key_ids.setdefault(el.key, len(key_ids) + 1)


def shade_lower_roofs(
    refl: np.ndarray, canvas: Grid, elements: list[Element], spec: DateSpec
) -> None:
    """Shade each roof where a taller element's shadow falls on it: the taller prism's shadow
    cast onto the plane of the lower roof (from its height above it), off its own footprint. As
    real roofs are; by default the renderer paints every roof over the ground's shadows. Off nadir
    the shade moves with the lower roof (:func:`lean`)."""
    for low in elements:
        parts = [
            shadow_geom(
                e.geom, e.height - low.height, spec.sun_azimuth, spec.sun_elevation
            ).difference(e.geom)
            for e in elements
            if e.height > low.height
        ]
        on_roof = unary_union(parts).intersection(low.geom) if parts else Polygon()
        if not on_roof.is_empty:
            on_roof = affinity.translate(on_roof, *lean(low.height, spec))  # where it is drawn
            refl[:, burn(canvas, on_roof)] *= np.asarray(SHADE, dtype=np.float32)[:, None]


def cloud_alpha(canvas: Grid, g: GroundLayers, cloud: Cloud | None) -> np.ndarray:
    """Cloud opacity in [0, 1]: an opaque core with a soft, ragged edge."""
    if cloud is None:
        return np.zeros(canvas.shape, dtype=np.float32)
    a = math.radians(cloud.angle)
    dx, dy = g.x - cloud.x, g.y - cloud.y
    u = dx * math.cos(a) + dy * math.sin(a)
    v = -dx * math.sin(a) + dy * math.cos(a)
    d = np.sqrt((u / cloud.rx) ** 2 + (v / cloud.ry) ** 2) + 0.12 * g.tex[2]
    return np.clip((1.0 - d) / 0.35, 0.0, 1.0).astype(np.float32)


@dataclass
class RenderedDate:
    """One date on the canvas: reflectance, element keys, cloud, structure shadows, snow."""

    refl: np.ndarray
    idmap: np.ndarray
    cloud: np.ndarray
    shadows: dict[str, BaseGeometry]
    snow: np.ndarray  # where snow lies (opacity over a half)


def render_date(
    canvas: Grid,
    g: GroundLayers,
    spec: DateSpec,
    elements: dict[str, tuple[Element, ...]],
    key_ids: dict[str, int],
    shade_roofs: bool = False,
) -> RenderedDate:
    """The surface reflectance of the whole canvas on one date, with what truth needs. Cast
    shadows fall on the ground; with ``shade_roofs`` also on lower roofs (:func:`shade_lower_roofs`)."""
    refl, crown = ground_reflectance(g, spec)
    snow = apply_snow(refl, g, crown, spec.snow)
    shadows: dict[str, BaseGeometry] = {}
    for sid, els in elements.items():
        parts = [
            shadow_geom(e.geom, e.height, spec.sun_azimuth, spec.sun_elevation)
            for e in els
            if e.height > 0
        ]
        shadows[sid] = unary_union(parts) if parts else MultiPolygon()
    shade = burn(canvas, unary_union(list(shadows.values()))) | tree_shadows(
        crown, spec, canvas.resolution
    )
    refl[:, shade] *= np.asarray(SHADE, dtype=np.float32)[:, None]
    idmap = np.zeros(canvas.shape, dtype=np.int32)
    flat = [e for els in elements.values() for e in els]
    draw_elements(refl, idmap, canvas, flat, spec, key_ids, g.tex[1])
    if shade_roofs:
        shade_lower_roofs(refl, canvas, flat, spec)
    refl *= np.float32(0.55 + 0.45 * math.sin(math.radians(spec.sun_elevation)))
    alpha = cloud_alpha(canvas, g, spec.cloud)
    if spec.cloud is not None:
        cl = _spec("cloud") * (0.92 + 0.08 * g.tex[1])
        refl[:] = refl * (1 - alpha) + cl * alpha
    for b in range(4):
        refl[b] = ndimage.gaussian_filter(refl[b], 0.55)
    return RenderedDate(refl, idmap, alpha, shadows, snow)


def footprint_union(geoms: list[Polygon]) -> BaseGeometry:
    """Union of polygons (empty MultiPolygon for none)."""
    return unary_union(geoms) if geoms else Polygon()
