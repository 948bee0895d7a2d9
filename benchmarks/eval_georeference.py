"""Co-registration's reach: the samples' Mar 6 image delivered with a georeference error.

usage: python benchmarks/eval_georeference.py [--moves 40/25,60/36,...] [--work DIR]

Each move is metres east/south. The Mar 6 file is copied with its geotransform moved by it (the
pixels stay where they are, so the ground appears that far off), `sohae-watch diff` of Mar 2
against it runs through the CLI with the Sohae site, and each run prints the co-registration
status, the measured shift against the truth (the pair's own shift in truth.json plus the move
in pixels) and the structure statuses right against that pair's truth.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import rasterio
from affine import Affine

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data" / "samples" / "sohae"
CLI = Path(sys.executable).with_name("sohae-watch")
PAIR = ("2019-03-02", "2019-03-06")
MOVES = "0/0,40/25,60/36,80/50,90/0,0/90,-70/-45,100/-70"


def moved(src: Path, east: float, south: float, folder: Path) -> Path:
    """A copy of ``src`` whose georeference says it lies ``east`` m east, ``south`` m south."""
    out = folder / f"{east:g}_{south:g}" / "2019-03-06.tif"
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, out)
    with rasterio.open(out, "r+") as ds:
        t = ds.transform
        ds.transform = Affine(t.a, t.b, t.c + east, t.d, t.e, t.f - south)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--moves", default=MOVES, help="east/south metres, comma separated")
    ap.add_argument("--work", type=Path, default=None)
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="georeference-"))
    truth = json.loads((SAMPLES / "truth.json").read_text())
    acqs = {a["date"]: a for a in truth["acquisitions"]}
    pair = next(p for p in truth["pairs"] if (p["before"], p["after"]) == PAIR)
    before = SAMPLES / acqs[PAIR[0]]["files"][0]
    after = SAMPLES / acqs[PAIR[1]]["files"][0]
    with rasterio.open(after) as ds:
        res = ds.res[0]
    print(f"{'east/south m':>12} {'status':>15} {'shift px (truth)':>28} {'statuses right':>15}")
    for move in args.moves.split(","):
        east, south = (float(v) for v in move.split("/"))
        path = moved(after, east, south, work / "imagery")
        out = work / f"out_{east:g}_{south:g}"
        cmd = [str(CLI), "-q", "diff", str(before), str(path), "--site", "sohae", "--out", str(out)]
        subprocess.run(cmd, check=True, cwd=ROOT)
        report = json.loads((out / "report.json").read_text())
        c = report["coregistration"]
        want = (pair["shift_x_px"] + east / res, pair["shift_y_px"] + south / res)
        got = (
            f"{c['shift_x_px']:.1f}, {c['shift_y_px']:.1f}"
            if c["shift_x_px"] is not None
            else "none"
        )
        right = sum(
            s["status"] == pair["structures"][s["id"]]["status"] for s in report["structures"]
        )
        print(
            f"{move:>12} {c['status']:>15} {got + f' ({want[0]:.1f}, {want[1]:.1f})':>28} "
            f"{right:>12}/{len(report['structures'])}"
        )


if __name__ == "__main__":
    main()
