"""Whole-scene `diff` against the read floor, in one run (issues 4 and 7).

usage: python benchmarks/bench_diff.py BIG_DIR [--threads N] [--repeat N]
BIG_DIR holds before.tif / after.tif from ../shared/bench/make_big_pair.py (10980 x 10980 x 4
uint16, not committed). Times, in the same run and with /usr/bin/time -v for peak resident memory:
1. ../shared/bench/read_floor.py on the pair (decode every block once, single-threaded);
2. `sohae-watch diff before.tif after.tif` (no site: the whole overlap);
3. `sohae-watch diff` with a site whose AOI is 1 km x 1 km inside the scene;
4. the same with a 200 m x 200 m AOI (1/25 of the pixels): what a diff costs whatever its area
   (start-up, the reports, the fixed samples of co-registration and the fit, as far as they fit).
Prints one row per run and the ratios to the read floor, then the per-stage seconds each `diff`
logged (`-v`: plan, coregister, fit, change, write, classify). ``--repeat N`` runs the four N times,
interleaved, and reports median times (peak memory: the largest) and each round's ratio.
``--pixel-size M`` runs on copies of the pair whose pixels are labelled M metres (made once in
BIG_DIR/pixels-M): with 10, a Sentinel-2 tile's geometry (10980 x 10980 px at 10 m), where the
change stage computes on every input pixel and goes tile by tile.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import rasterio
from affine import Affine
from rasterio.warp import transform

ROOT = Path(__file__).resolve().parents[1]
READ_FLOOR = ROOT.parent / "shared" / "bench" / "read_floor.py"
CLI = Path(sys.executable).with_name("sohae-watch")


STAGES: dict[str, dict[str, float]] = {}


def timed(cmd: list[str], name: str = "") -> tuple[float, float]:
    """Wall seconds and peak resident MB of ``cmd`` (via /usr/bin/time -v); the stage timings it
    logs are kept in ``STAGES[name]``."""
    res = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True)
    STAGES[name] = {
        m.group(1): float(m.group(2)) for m in re.finditer(r"stage (\w+)\s+([\d.]+) s", res.stderr)
    }
    if res.returncode not in (0, 3):
        raise SystemExit(f"failed: {' '.join(cmd)}\n{res.stderr[-2000:]}")
    wall = re.search(r"Elapsed \(wall clock\) time .*: (?:(\d+):)?(\d+):([\d.]+)", res.stderr)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", res.stderr)
    assert wall and rss, res.stderr[-500:]
    h, m, s = wall.groups()
    seconds = (int(h) * 3600 if h else 0) + int(m) * 60 + float(s)
    return seconds, int(rss.group(1)) / 1024


def relabelled(big: Path, pixel_m: float) -> Path:
    """Copies of BIG_DIR's pair with pixels of ``pixel_m`` metres (same origin), made once."""
    folder = big / f"pixels-{pixel_m:g}"
    folder.mkdir(exist_ok=True)
    for name in ("before.tif", "after.tif"):
        if not (folder / name).exists():
            tmp = folder / f".{name}"
            shutil.copyfile(big / name, tmp)
            with rasterio.open(tmp, "r+") as ds:
                t = ds.transform
                ds.transform = Affine(pixel_m, 0.0, t.c, 0.0, -pixel_m, t.f)
            tmp.rename(folder / name)
    return folder


def aoi_site(big: Path, folder: Path, side_m: float = 1000.0) -> Path:
    """A site file with a ``side_m`` x ``side_m`` AOI in the middle of the scene."""
    with rasterio.open(big / "before.tif") as ds:
        left, bottom, right, top = ds.bounds
        crs = ds.crs
        res = ds.res[0]
    cx, cy = (left + right) / 2, (bottom + top) / 2
    h = side_m / 2
    xs, ys = transform(
        crs, "EPSG:4326", [cx - h, cx + h, cx + h, cx - h], [cy - h, cy - h, cy + h, cy + h]
    )
    ring = ", ".join(f"[{x:.7f}, {y:.7f}]" for x, y in zip([*xs, xs[0]], [*ys, ys[0]], strict=True))
    site = folder / f"bigsite-{side_m:g}.yaml"
    site.write_text(
        f"id: big\nname: Benchmark site\ngrid: {{crs: '{crs.to_string()}', resolution: {res:g}}}\n"
        f"aoi: {{type: Polygon, coordinates: [[{ring}]]}}\nstructures: []\n"
    )
    return site


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("big", type=Path)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="rounds of the three runs, interleaved; medians reported (the machine is noisy)",
    )
    ap.add_argument("--pixel-size", type=float, default=None, help="relabel the pixels (metres)")
    args = ap.parse_args()
    big = relabelled(args.big, args.pixel_size) if args.pixel_size else args.big
    before, after = big / "before.tif", big / "after.tif"
    work = Path(tempfile.mkdtemp(prefix="bench-diff-"))
    extra = ["--threads", str(args.threads)] if args.threads else []
    names = (
        "read floor (both inputs once)",
        "diff, whole scene",
        "diff, 1 km x 1 km site AOI",
        "diff, 200 m x 200 m site AOI",
    )
    runs: dict[str, list[tuple[float, float]]] = {n: [] for n in names}
    try:
        site, tiny = aoi_site(big, work), aoi_site(big, work, 200.0)
        for k in range(max(1, args.repeat)):
            floor = timed([sys.executable, str(READ_FLOOR), str(before), str(after)])
            out = work / f"whole{k}"
            whole = timed(
                [str(CLI), "-v", "diff", str(before), str(after), "--out", str(out), *extra],
                "whole",
            )
            shutil.rmtree(out, ignore_errors=True)
            out = work / f"aoi{k}"
            cmd = [str(CLI), "-v", "diff", str(before), str(after), "--site", str(site)]
            small = timed([*cmd, "--out", str(out), *extra], "aoi")
            shutil.rmtree(out, ignore_errors=True)
            cmd = [str(CLI), "-v", "diff", str(before), str(after), "--site", str(tiny)]
            least = timed([*cmd, "--out", str(out), *extra], "aoi 200 m")
            shutil.rmtree(out, ignore_errors=True)
            for name, res in zip(names, (floor, whole, small, least), strict=True):
                runs[name].append(res)
            if args.repeat > 1:
                print(
                    f"round {k + 1}: floor {floor[0]:.1f} s, whole {whole[0]:.1f} s "
                    f"({whole[0] / floor[0]:.2f}x), AOI {small[0]:.1f} s, 200 m AOI {least[0]:.1f} s",
                    flush=True,
                )
        med = {
            n: (statistics.median(s for s, _ in r), max(m for _, m in r)) for n, r in runs.items()
        }
        label = "median seconds" if args.repeat > 1 else "seconds"
        print(f"{'run':<32} {label:>14} {'x read':>7} {'peak MB':>8}")
        base = med[names[0]][0]
        for name in names:
            sec, mb = med[name]
            print(f"{name:<32} {sec:14.1f} {sec / base:7.2f} {mb:8.0f}")
        for name in names[2:]:
            print(f"{name} / whole diff: {med[name][0] / med[names[1]][0]:.3f}")
        if args.repeat > 1:
            ratios = [w / f for (f, _), (w, _) in zip(runs[names[0]], runs[names[1]], strict=True)]
            print("whole / floor per round: " + ", ".join(f"{r:.2f}" for r in ratios))
        for name, stages in STAGES.items():
            if stages:
                print(
                    f"stages ({name}, last round): "
                    + ", ".join(f"{k} {v:.1f} s" for k, v in stages.items())
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
