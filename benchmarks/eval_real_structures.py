"""The structure classifier on real 0.5 m imagery: LEVIR-CD crops with footprints from their truth.

    .venv/bin/python benchmarks/eval_real_structures.py [../shared/data/real] [--out /tmp/real-structures]

LEVIR-CD marks building change (mostly new buildings, 2012 -> 2018). For each levir-* case this
writes a site file whose structures are

- ``changed-N``: each connected component of ``truth == 1`` of at least ``MIN_CHANGE_M2``, outlined
  (the building that was built or removed; either `appeared`, `removed` or `modified` is right);
- ``control-N``: 12 m x 12 m squares on a regular grid that lie, with a 3 m margin, entirely in
  ``truth == 0`` (buildings that stood at both dates, lawns, roads, bare soil; the right call is
  `unchanged`, whatever stands there),

runs ``sohae-watch diff before after --site SITE`` through the CLI and counts, per case, how many
changed footprints were called changed (recall), how many controls were called changed (false
alarms), and how many of either were `obscured`. Nothing here is fitted: it is a check on imagery
the classifier was not built on. The figures are for the README and closing notes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import rasterio
import rasterio.features
import shapely
import yaml
from pyproj import Transformer
from scipy import ndimage as ndi
from shapely.geometry import box, mapping, shape
from shapely.geometry.base import BaseGeometry

MIN_CHANGE_M2 = 40.0  # a small house
CONTROL_M = 12.0
CONTROL_MARGIN_M = 3.0
CHANGED = {"appeared", "removed", "modified"}


def build_site(case: Path, folder: Path) -> tuple[Path, dict[str, str]]:
    """A site file for ``case`` and the expected kind (``changed`` / ``control``) per structure."""
    with rasterio.open(case / "truth.tif") as src:
        truth = src.read(1)
        transform, crs = src.transform, src.crs
    px = abs(transform.a)
    tr = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)

    def to_ll(geom: BaseGeometry) -> BaseGeometry:
        return shapely.transform(geom, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))

    structures: list[dict[str, object]] = []
    kinds: dict[str, str] = {}
    labels, n = ndi.label(truth == 1, structure=np.ones((3, 3)))
    for i in range(1, n + 1):
        comp = labels == i
        if comp.sum() * px * px < MIN_CHANGE_M2:
            continue
        polys = [
            shape(g)
            for g, v in rasterio.features.shapes(comp.astype(np.uint8), comp, transform=transform)
            if v == 1
        ]
        poly = max(polys, key=lambda p: p.area).simplify(px)
        sid = f"changed-{len(kinds)}"
        kinds[sid] = "changed"
        structures.append({"id": sid, "name": sid, "geometry": mapping(to_ll(poly))})
    clear = truth == 0
    margin = int(round(CONTROL_MARGIN_M / px))
    clear = ndi.binary_erosion(clear, iterations=margin, border_value=0)
    side = int(round(CONTROL_M / px))
    step = side + 2 * margin
    k = 0
    for r in range(margin, truth.shape[0] - side - margin, step):
        for c in range(margin, truth.shape[1] - side - margin, step):
            if not clear[r : r + side, c : c + side].all():
                continue
            x0, y0 = transform * (c, r)
            x1, y1 = transform * (c + side, r + side)
            sid = f"control-{k}"
            k += 1
            kinds[sid] = "control"
            poly = box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
            structures.append({"id": sid, "name": sid, "geometry": mapping(to_ll(poly))})
    h, w = truth.shape
    x0, y0 = transform * (0, 0)
    x1, y1 = transform * (w, h)
    aoi = to_ll(box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)))
    site = {
        "id": case.name,
        "name": case.name,
        "grid": {"crs": str(crs), "resolution": px},
        "aoi": json.loads(json.dumps(mapping(aoi))),
        "structures": json.loads(json.dumps(structures)),
    }
    path = folder / f"{case.name}.yaml"
    path.write_text(yaml.safe_dump(site, sort_keys=False))
    return path, kinds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "real",
        nargs="?",
        default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "real"),
    )
    ap.add_argument("--out", default="/tmp/real-structures")
    args = ap.parse_args()
    real, out = Path(args.real), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    exe = Path(sys.executable).with_name("sohae-watch")
    totals = {"changed": [0, 0, 0], "control": [0, 0, 0]}  # n, called changed, obscured
    print("| case | changed footprints | called changed | controls | called changed | obscured |")
    print("|---|---|---|---|---|---|")
    for case in sorted(real.glob("levir-*")):
        site, kinds = build_site(case, out)
        dest = out / case.name
        proc = subprocess.run(
            [
                str(exe),
                "-q",
                "diff",
                str(case / "before.tif"),
                str(case / "after.tif"),
                "--site",
                str(site),
                "--out",
                str(dest),
            ],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            print(f"| {case.name} | failed: {proc.stderr.strip()[:120]} |")
            continue
        report = json.loads((dest / "report.json").read_text())
        per = {"changed": [0, 0, 0], "control": [0, 0, 0]}
        for s in report["structures"]:
            kind = kinds[s["id"]]
            per[kind][0] += 1
            per[kind][1] += s["status"] in CHANGED
            per[kind][2] += s["status"] == "obscured"
        for kind in per:
            for j in range(3):
                totals[kind][j] += per[kind][j]
        ch, co = per["changed"], per["control"]
        print(f"| {case.name} | {ch[0]} | {ch[1]} | {co[0]} | {co[1]} | {ch[2] + co[2]} |")
    ch, co = totals["changed"], totals["control"]
    recall = ch[1] / ch[0] if ch[0] else float("nan")
    fa = co[1] / co[0] if co[0] else float("nan")
    print(
        f"| **all** | {ch[0]} | {ch[1]} (recall {recall:.2f}) | {co[0]} | {co[1]} (false alarms {fa:.2f}) | {ch[2] + co[2]} |"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
