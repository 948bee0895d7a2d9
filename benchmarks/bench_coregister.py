"""Co-registration speed and memory against plain skimage and the read floor, in one run.

    .venv/bin/python benchmarks/bench_coregister.py /tmp/coreg-bench            # 1000 and 10980
    .venv/bin/python benchmarks/bench_coregister.py /tmp/coreg-bench --sizes 1000

Writes single-band uint16 pairs (tiled 512, DEFLATE, EPSG:32651, 0.5 m) of a smooth random
texture plus noise, the target moved by a known sub-pixel shift; then times, each in its own
process (wall time and peak resident memory from ``wait4``):

- ``read-floor``: ``../shared/bench/read_floor.py`` on both inputs (decode every block once);
- ``skimage``: read both whole, ``phase_cross_correlation(upsample_factor=100)``;
- ``global`` / ``local``: ``coregister_files`` with ``mode="global"`` / ``"local"``: tie points
  measured, model fitted and the corrected target written (the whole command's work).

Generated data stays in the given folder; do not commit it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SHIFT = (3.37, -2.61)  # contract convention: target content at reference + shift
READ_FLOOR = Path(__file__).resolve().parents[2] / "shared" / "bench" / "read_floor.py"


def _field(lattice: np.ndarray, spacing: float, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    from scipy import ndimage as ndi

    return ndi.map_coordinates(lattice, [rows / spacing, cols / spacing], order=3, prefilter=False)


def make_pair(folder: Path, n: int) -> tuple[Path, Path]:
    """Write ``ref_<n>.tif`` and ``tgt_<n>.tif`` (skipped when present)."""
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window
    from scipy import ndimage as ndi

    folder.mkdir(parents=True, exist_ok=True)
    ref, tgt = folder / f"ref_{n}.tif", folder / f"tgt_{n}.tif"
    if ref.exists() and tgt.exists():
        return ref, tgt
    rng = np.random.default_rng(n)
    octaves = [(16.0, 900.0), (3.0, 350.0)]  # lattice spacing (px), amplitude
    lattices = [
        ndi.spline_filter(rng.normal(0, 1, (int(n / s) + 8, int(n / s) + 8)).astype(np.float32))
        for s, _ in octaves
    ]
    prof = dict(
        driver="GTiff", width=n, height=n, count=1, dtype="uint16", crs="EPSG:32651",
        transform=from_origin(400000, 4400000, 0.5, 0.5), tiled=True, blockxsize=512,
        blockysize=512, compress="deflate", predictor=2,
    )  # fmt: skip
    for path, (sx, sy), date in ((ref, (0.0, 0.0), "2019:02:16"), (tgt, SHIFT, "2019:03:02")):
        with rasterio.open(path, "w", **prof) as dst:
            dst.update_tags(TIFFTAG_DATETIME=f"{date} 02:30:00")
            for r0 in range(0, n, 512):
                h = min(512, n - r0)
                rows, cols = np.mgrid[r0 : r0 + h, 0:n].astype(np.float32)
                rows += 16 - sy
                cols += 16 - sx
                v = 3000.0 + sum(
                    a * _field(lat, s, rows, cols)
                    for lat, (s, a) in zip(lattices, octaves, strict=True)
                )
                v += rng.normal(0, 40, v.shape)
                dst.write(np.clip(v, 1, 65535).astype(np.uint16)[None], window=Window(0, r0, n, h))
    return ref, tgt


def _child(kind: str, ref: str, tgt: str, out: str) -> None:
    """One measured run (in its own process); prints a JSON line."""
    info: dict[str, object] = {}
    if kind == "skimage":
        import rasterio
        from skimage.registration import phase_cross_correlation

        with rasterio.open(ref) as a, rasterio.open(tgt) as b:
            ra, tb = a.read(1).astype(np.float32), b.read(1).astype(np.float32)
        shift, _, _ = phase_cross_correlation(ra, tb, upsample_factor=100)
        info = {"shift_x_px": -float(shift[1]), "shift_y_px": -float(shift[0])}
    else:
        from sohae_watch.coreg_files import coregister_files

        res = coregister_files(Path(ref), Path(tgt), Path(out), mode=kind)  # type: ignore[arg-type]
        info = {
            "shift_x_px": res.shift_x_px,
            "shift_y_px": res.shift_y_px,
            "n_points": res.n_points,
            "n_valid_points": res.n_valid_points,
            "method": res.method,
            "status": res.status,
        }
    print(json.dumps(info))


def _timed(cmd: list[str]) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MB) and stdout of a child process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    stdout = proc.stdout.read() if proc.stdout else ""
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed with {proc.returncode}")
    return wall, usage.ru_maxrss / 1024.0, stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("folder", type=Path)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10980])
    ap.add_argument("--skip-skimage-above", type=int, default=20000)
    ap.add_argument(
        "--pair", nargs=2, type=Path, metavar=("REF", "TGT"),
        help="also time an existing pair (e.g. ../shared/bench/make_big_pair.py's 4-band one)",
    )  # fmt: skip
    args = ap.parse_args()
    me = [sys.executable, str(Path(__file__).resolve())]
    rows: list[tuple[object, str, float, float, float, dict]] = []
    pairs: list[tuple[object, Path, Path]] = [(n, *make_pair(args.folder, n)) for n in args.sizes]
    if args.pair:
        pairs.append(("given pair", args.pair[0], args.pair[1]))
    for n, ref, tgt in pairs:
        runs = ["read-floor", "skimage", "global", "local"]
        floor = None
        for kind in runs:
            if kind == "skimage" and (not isinstance(n, int) or n > args.skip_skimage_above):
                continue
            if kind == "read-floor":
                cmd = [sys.executable, str(READ_FLOOR), str(ref), str(tgt)]
            else:
                out = args.folder / f"out_{kind}_{str(n).replace(' ', '_')}.tif"
                cmd = [*me, "_run", kind, str(ref), str(tgt), str(out)]
            wall, rss, stdout = _timed(cmd)
            info = json.loads(stdout.strip().splitlines()[-1]) if kind != "read-floor" else {}
            floor = wall if kind == "read-floor" else floor
            rows.append((n, kind, wall, wall / floor if floor else float("nan"), rss, info))
            print(f"{n} {kind}: {wall:.2f} s, peak {rss:.0f} MB {info}", flush=True)
    print()
    print(f"true shift: x {SHIFT[0]:+.2f} px, y {SHIFT[1]:+.2f} px")
    print("| size | run | seconds | x read floor | peak MB | shift x, y (px) | tie points |")
    print("|---|---|---|---|---|---|---|")
    for n, kind, wall, ratio, rss, info in rows:
        sx, sy = info.get("shift_x_px"), info.get("shift_y_px")
        shift = f"{sx:+.3f}, {sy:+.3f}" if sx is not None and sy is not None else ""
        pts = f"{info['n_valid_points']}/{info['n_points']}" if "n_points" in info else ""
        print(f"| {n} | {kind} | {wall:.2f} | {ratio:.2f} | {rss:.0f} | {shift} | {pts} |")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_run":
        _child(*sys.argv[2:6])
    else:
        main()
