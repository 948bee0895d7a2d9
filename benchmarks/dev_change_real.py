"""Development harness for the change stage on the real cases in ../shared/data/real.

Loads each case's before/after into Scenes on the file's own grid, runs ``detect_changes`` and a
CVA + Otsu baseline in the same run, and scores both against ``truth.tif`` as
``../shared/bench/score_real.py`` does (255 counted as no change).

usage: .venv/bin/python benchmarks/dev_change_real.py [CASES_DIR] [--case SUBSTRING]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

import numpy as np
import rasterio

from sohae_watch.change import detect_changes
from sohae_watch.grid import Grid
from sohae_watch.scene import Scene
from sohae_watch.threshold import otsu

DEFAULT_CASES = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"


def read_scene(path: Path) -> Scene:
    """A GeoTIFF as a Scene on its own grid (band roles from the descriptions)."""
    with rasterio.open(path) as src:
        data = src.read().astype(np.float32)
        valid = np.ones(data.shape[1:], dtype=bool)
        if src.nodata is not None:
            valid &= ~(data == src.nodata).all(axis=0)
        data[:, ~valid] = np.nan
        bands = tuple((d or f"b{i + 1}").lower() for i, d in enumerate(src.descriptions))
        grid = Grid(src.crs, src.transform, src.width, src.height)
        stamp = src.tags().get("TIFFTAG_DATETIME", "1970:01:01 00:00:00")
    date = dt.datetime.strptime(stamp[:10], "%Y:%m:%d").date()
    return Scene(data=data, valid=valid, bands=bands, grid=grid, date=date, sources=(str(path),))


def cva_otsu(before: Scene, after: Scene) -> np.ndarray:
    """Baseline: magnitude of the raw band-difference vector, Otsu threshold."""
    mag = np.sqrt(np.nansum((after.data - before.data) ** 2, axis=0))
    return (mag > otsu(mag)).astype(np.uint8)


def score(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    known = truth != 255
    pc = (pred == 1) & known
    tc = (truth == 1) & known
    tp = int((pc & tc).sum())
    fp = int((pc & ~tc).sum())
    fn = int((~pc & tc).sum())
    n = max(1, int(known.sum()))
    prec = tp / (tp + fp) if tp + fp else (1.0 if fn == 0 else 0.0)
    rec = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    return {
        "precision": prec,
        "recall": rec,
        "f1": f1,
        "false_alarm": fp / n,
        "not_observed": float(((pred == 255) & known).sum()) / n,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cases_dir", nargs="?", type=Path, default=DEFAULT_CASES)
    ap.add_argument("--case", default="", help="run only cases whose name contains this")
    args = ap.parse_args(argv)
    cases = json.loads((args.cases_dir / "cases.json").read_text())
    groups: dict[str, dict[str, list[float]]] = {}
    print(f"{'case':<26} {'method':<9} {'P':>6} {'R':>6} {'F1':>6} {'FA':>7} {'255':>6} {'s':>5}")
    for c in cases:
        name = c["case"]
        d = args.cases_dir / name
        if args.case not in name or not (d / "truth.tif").exists():
            continue
        before, after = read_scene(d / "before.tif"), read_scene(d / "after.tif")
        with rasterio.open(d / "truth.tif") as src:
            truth = src.read(1)
        t0 = time.perf_counter()
        ours = detect_changes(before, after).mask
        dt_ours = time.perf_counter() - t0
        t0 = time.perf_counter()
        base = cva_otsu(before, after)
        dt_base = time.perf_counter() - t0
        ds = name.split("-")[0]
        for method, pred, secs in (("ours", ours, dt_ours), ("cva+otsu", base, dt_base)):
            s = score(pred, truth)
            groups.setdefault(ds, {}).setdefault(method, []).append(s["f1"])
            print(
                f"{name[:26]:<26} {method:<9} {s['precision']:6.3f} {s['recall']:6.3f} "
                f"{s['f1']:6.3f} {s['false_alarm']:7.4f} {s['not_observed']:6.3f} {secs:5.2f}",
                flush=True,
            )
    for ds, methods in sorted(groups.items()):
        means = " ".join(f"{m}={np.mean(v):.3f}" for m, v in methods.items())
        print(f"mean F1 {ds}: {means}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
