"""Writing a rendered sample scene: the delivered GeoTIFFs, STAC sidecars, truth masks, truth.json."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from pyproj import Transformer
from scipy import ndimage

from sohae_watch.errors import InputError
from sohae_watch.grid import Grid
from sohae_watch.samples_model import (
    ABSENT,
    BANDS,
    CLOUD_ALPHA,
    DateSpec,
    Delivery,
    SceneModel,
    event_of,
    status_of,
)
from sohae_watch.samples_render import (
    RenderedDate,
    burn,
    make_ground,
    render_date,
    stable_rng,
)

SATURATION = 16383  # 14-bit sensor
OBSERVED_MIN = 0.5  # contract default min_observed_fraction


def canvas_of(model: SceneModel) -> tuple[Grid, int]:
    """The canvas (working grid plus margin) and the margin in pixels."""
    m = round(model.margin_m / model.grid.resolution)
    g = model.grid
    return Grid(
        g.crs, g.transform * Affine.translation(-m, -m), g.width + 2 * m, g.height + 2 * m
    ), m


def _sample_points(canvas: Grid, d: Delivery, shift: tuple[float, float]) -> np.ndarray:
    """Canvas (row, col) coordinates that each pixel of delivery ``d`` shows."""
    cols, rows = np.meshgrid(np.arange(d.width) + 0.5, np.arange(d.height) + 0.5)
    t = d.transform
    xs = t.c + cols * t.a + rows * t.b
    ys = t.f + cols * t.d + rows * t.e
    if d.crs != canvas.crs:
        tr = Transformer.from_crs(d.crs, canvas.crs, always_xy=True)
        xs, ys = tr.transform(xs, ys)
    res = canvas.resolution
    xs = np.asarray(xs) - shift[0] * res
    ys = np.asarray(ys) + shift[1] * res
    ct = canvas.transform
    return np.stack([(ys - ct.f) / ct.e - 0.5, (xs - ct.c) / ct.a - 0.5])


def write_delivery(
    path: Path, canvas: Grid, r: RenderedDate, spec: DateSpec, d: Delivery, seed: int
) -> None:
    """Resample the date's reflectance onto delivery ``d``, apply the sensor, write the GeoTIFF."""
    coords = _sample_points(canvas, d, spec.shift)
    rng = stable_rng(seed, "noise", spec.iso, d.name)
    data = np.empty((4, d.height, d.width), dtype=np.uint16)
    for b in range(4):
        v = ndimage.map_coordinates(r.refl[b], coords, order=1, mode="constant", cval=np.nan)
        dn = spec.offset[b] + spec.gain[b] * 10000.0 * v
        dn = dn + rng.normal(0.0, spec.noise, dn.shape)
        out = np.clip(np.rint(dn), 1, SATURATION)
        data[b] = np.where(np.isfinite(v), out, 0).astype(np.uint16)
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "dtype": "uint16",
        "count": 4,
        "width": d.width,
        "height": d.height,
        "crs": d.crs,
        "transform": d.transform,
        "nodata": 0,
        "compress": "deflate",
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        for i, name in enumerate(BANDS, start=1):
            dst.set_band_description(i, name)
        if d.tags:
            dst.update_tags(**d.tags)
        if spec.off_nadir:  # the view, as an archive's metadata gives it (none at nadir)
            dst.update_tags(OFF_NADIR=f"{spec.off_nadir:g}", VIEW_AZIMUTH=f"{spec.view_azimuth:g}")
    if d.stac:
        write_stac(path, spec, d)


def write_stac(path: Path, spec: DateSpec, d: Delivery) -> None:
    """A minimal STAC item beside the raster (``<stem>.json``)."""
    lon0, lat0 = d.transform * (0, d.height)
    lon1, lat1 = d.transform * (d.width, 0)
    stamp = f"{spec.iso}T{spec.time.strftime('%H:%M:%S')}Z"
    epsg = d.crs.to_epsg()
    item = {
        "type": "Feature",
        "stac_version": "1.0.0",
        "stac_extensions": [],
        "id": path.stem,
        "bbox": [lon0, lat0, lon1, lat1],
        "geometry": None,
        "properties": {
            "datetime": stamp,
            "view:sun_azimuth": spec.sun_azimuth,
            "view:sun_elevation": spec.sun_elevation,
            **(
                {"view:off_nadir": spec.off_nadir, "view:azimuth": spec.view_azimuth}
                if spec.off_nadir
                else {}
            ),
            "proj:epsg": epsg,
        },
        "assets": {"image": {"href": path.name, "type": "image/tiff; application=geotiff"}},
        "links": [],
    }
    path.with_suffix(".json").write_text(json.dumps(item, indent=2) + "\n")


def write_mask(path: Path, grid: Grid, mask: np.ndarray) -> None:
    """A uint8 truth mask GeoTIFF on ``grid`` (255 = not observable, declared nodata)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        dtype="uint8",
        count=1,
        width=grid.width,
        height=grid.height,
        crs=grid.crs,
        transform=grid.transform,
        nodata=255,
        compress="deflate",
        tiled=True,
        blockxsize=256,
        blockysize=256,
    ) as dst:
        dst.write(mask[None])


def _to_frame(arr: np.ndarray, grid: Grid, margin: int, shift: tuple[float, float]) -> np.ndarray:
    """A canvas array (ground coordinates) as seen on the working grid displaced by ``shift``."""
    rows, cols = np.meshgrid(np.arange(grid.height), np.arange(grid.width), indexing="ij")
    coords = np.stack([rows - shift[1] + margin, cols - shift[0] + margin])
    return ndimage.map_coordinates(arr, coords, order=0, mode="nearest")


IMAGERY_DIR = (
    "imagery"  # rasters go here, truth masks under truth/: a catalog of imagery/ sees no mask
)
TRUTH_DIR = "truth"


def render_model(model: SceneModel, out_dir: Path) -> Path:
    """Render every date of ``model`` into ``out_dir/imagery``; write truth masks and truth.json.

    The set is rendered beside, in a hidden folder, and then put in place whole: an interrupted
    run leaves the folder as it was, and a set rendered again replaces the previous one's files.
    A folder whose imagery/ or truth/ holds files this set does not write (another seed's scene,
    someone's own imagery) is refused, with nothing changed."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=".samples-", dir=out_dir))
    except OSError as exc:
        raise InputError(
            f"{out_dir}: cannot write there ({exc.strerror}); give another folder"
        ) from exc
    try:
        _render(model, stage)
        _publish(stage, out_dir)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return out_dir / "truth.json"


def _publish(stage: Path, out_dir: Path) -> None:
    """Move the rendered set from ``stage`` into ``out_dir`` (see :func:`render_model`)."""
    for name in (IMAGERY_DIR, TRUTH_DIR):
        old, new = out_dir / name, stage / name
        if old.is_dir() and new.is_dir():
            foreign = sorted(
                str(p.relative_to(old))
                for p in old.rglob("*")
                if not (new / p.relative_to(old)).exists()
            )
            if foreign:
                raise InputError(
                    f"{old}: holds files this set does not write ({', '.join(foreign[:3])}); give "
                    f"an empty or new folder, or remove {old}"
                )
    for name in (IMAGERY_DIR, TRUTH_DIR):
        old, new = out_dir / name, stage / name
        if old.exists():
            old.rename(stage / f".previous-{name}")
        if new.exists():
            new.rename(old)
    os.replace(stage / "truth.json", out_dir / "truth.json")


def _render(model: SceneModel, out_dir: Path) -> None:
    canvas, margin = canvas_of(model)
    ground = make_ground(canvas, model.ground, model.seed)
    every = model.structures + model.others
    key_ids: dict[str, int] = {}
    rendered: dict[str, RenderedDate] = {}
    acquisitions = []
    for spec in model.dates:
        elements = {s.id: s.elements(model.states[s.id][spec.iso]) for s in every}
        r = render_date(canvas, ground, spec, elements, key_ids, model.shade_roofs)
        for d in spec.deliveries:
            write_delivery(out_dir / IMAGERY_DIR / d.name, canvas, r, spec, d, model.seed)
        rendered[spec.iso] = RenderedDate(
            r.refl[:0], r.idmap, r.cloud, r.shadows, r.snow
        )  # no pixels
        acquisitions.append(_acquisition_record(model, spec, r, canvas))
    pairs = [_pair_truth(model, b, a, rendered, canvas, margin, out_dir) for b, a in model.pairs]
    truth: dict[str, Any] = {
        "schema_version": 1,
        "site": model.site_id,
        "seed": model.seed,
        "grid": {
            "crs": f"EPSG:{model.grid.crs.to_epsg()}",
            "resolution": model.grid.resolution,
            "transform": list(model.grid.transform)[:6],
            "width": model.grid.width,
            "height": model.grid.height,
        },
        "acquisitions": acquisitions,
        "states": {sid: dict(v) for sid, v in model.states.items() if sid in _named(model)},
        "baseline": {s.id: s.baseline for s in model.structures},
        "pairs": pairs,
        **model.extra_truth,
        **({"roofs_shaded": True} if model.shade_roofs else {}),
    }
    (out_dir / "truth.json").write_text(json.dumps(truth, indent=2) + "\n")


def _named(model: SceneModel) -> set[str]:
    return {s.id for s in model.structures}


def _acquisition_record(
    model: SceneModel, spec: DateSpec, r: RenderedDate, canvas: Grid
) -> dict[str, Any]:
    cloud = r.cloud > CLOUD_ALPHA
    over = [
        s.id
        for s in model.structures
        if cloud[burn(canvas, model.site_footprints[s.id])].mean() > OBSERVED_MIN
    ]
    d0 = spec.deliveries[0]
    epsg = d0.crs.to_epsg()
    return {
        "date": spec.iso,
        "files": [f"{IMAGERY_DIR}/{d.name}" for d in spec.deliveries],
        "shift_x_px": round(spec.shift[0], 4),
        "shift_y_px": round(spec.shift[1], 4),
        "sun_azimuth": spec.sun_azimuth,
        "sun_elevation": spec.sun_elevation,
        "snow": spec.snow > 0,
        "snow_fraction": spec.snow,
        "cloud_over": over,
        "date_source": spec.date_source,
        "sun_source": spec.sun_source,
        "crs": f"EPSG:{epsg}",
        "resolution": [abs(d0.transform.a), abs(d0.transform.e)],
        "gain": list(spec.gain),
        "offset": list(spec.offset),
        "noise_dn": spec.noise,
        **(
            {"off_nadir": spec.off_nadir, "view_azimuth": spec.view_azimuth}
            if spec.off_nadir
            else {}
        ),
    }


def _pair_truth(
    model: SceneModel,
    b: str,
    a: str,
    rendered: dict[str, RenderedDate],
    canvas: Grid,
    margin: int,
    out_dir: Path,
) -> dict[str, Any]:
    rb, ra = rendered[b], rendered[a]
    spec = {s.iso: s for s in model.dates}
    unobserved = (rb.cloud > CLOUD_ALPHA) | (ra.cloud > CLOUD_ALPHA)
    changed = rb.idmap != ra.idmap
    mask = np.zeros(canvas.shape, dtype=np.uint8)
    structures: dict[str, Any] = {}
    new_activity = []
    earlier = [s.iso for s in model.dates if s.iso < a]
    other_ids = {o.id for o in model.others}
    for s in model.structures + model.others:
        st = model.states[s.id]
        if st[b] != st[a]:
            mask[burn(canvas, rb.shadows[s.id].union(ra.shadows[s.id]))] = 255
        if s.id in other_ids:
            if st[b] != st[a]:
                geom = model.grid.geometry_to_lonlat(s.footprint)
                lon, lat = model.grid.to_lonlat(s.footprint.centroid.x, s.footprint.centroid.y)
                new_activity.append(
                    {
                        "id": s.id,
                        "lon": round(lon, 7),
                        "lat": round(lat, 7),
                        "area_m2": round(s.footprint.area, 1),
                        "status": status_of(st[b], st[a]),
                        "geometry": geom,
                    }
                )
            continue
        fp = burn(canvas, model.site_footprints[s.id])
        observed = float((~unobserved[fp]).mean()) if fp.any() else 0.0
        status = status_of(st[b], st[a])
        if observed < OBSERVED_MIN:
            status = "obscured"
        stood = s.baseline == "present" or any(st[d] != ABSENT for d in earlier if d < b)
        structures[s.id] = {
            "status": status,
            "event": event_of(status, stood),
            "observed_fraction": round(observed, 4),
            "changed_fraction": round(float(changed[fp].mean()) if fp.any() else 0.0, 4),
        }
    mask[changed] = 1
    mask[unobserved] = 255
    shift_b, shift_a = spec[b].shift, spec[a].shift
    framed = _to_frame(mask, model.grid, margin, shift_b)
    name = f"{TRUTH_DIR}/{b}_{a}.tif"
    write_mask(out_dir / name, model.grid, framed)
    return {
        "before": b,
        "after": a,
        "shift_x_px": round(shift_a[0] - shift_b[0], 4),
        "shift_y_px": round(shift_a[1] - shift_b[1], 4),
        "structures": structures,
        "new_activity": new_activity,
        "change_mask": name,
        "change_mask_frame": "before",
    }
