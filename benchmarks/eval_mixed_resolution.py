"""Structure calls when the two dates come from sensors of different resolution.

usage: python benchmarks/eval_mixed_resolution.py [--sizes 1,1.5,2] [--work DIR]

For each pair of the Sohae samples' truth.json whose dates are one file each, AFTER is delivered
again at each pixel size (block means of the 0.5 m pixels, as a coarser sensor sees the ground),
`sohae-watch diff BEFORE AFTER --site sohae` runs through the CLI, and every structure's status is
compared with the truth. Prints the count right and each wrong call.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import rasterio
from affine import Affine
from rasterio.enums import Resampling

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data" / "samples" / "sohae"
CLI = Path(sys.executable).with_name("sohae-watch")


def degraded(src_path: Path, size_m: float, folder: Path) -> Path:
    """``src_path`` (a 0.5 m UTM file) delivered at ``size_m`` metres a pixel."""
    out = folder / f"{size_m:g}m" / src_path.name
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(src_path) as src:
        f = size_m / src.res[0]
        h, w = int(src.height / f), int(src.width / f)
        data = src.read(out_shape=(src.count, h, w), resampling=Resampling.average)
        t = src.transform
        profile = src.profile
        profile.update(
            height=h,
            width=w,
            transform=Affine(t.a * src.width / w, t.b, t.c, t.d, t.e * src.height / h, t.f),
        )
        with rasterio.open(out, "w", **profile) as dst:
            dst.write(data)
            dst.descriptions = src.descriptions
            dst.update_tags(**src.tags())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sizes", default="1,1.5,2", help="AFTER's pixel sizes in metres")
    ap.add_argument("--work", type=Path, default=None)
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="mixed-resolution-"))
    truth = json.loads((SAMPLES / "truth.json").read_text())
    acqs = {a["date"]: a for a in truth["acquisitions"]}
    right = total = 0
    wrong = []
    for size in (float(s) for s in args.sizes.split(",")):
        for pair in truth["pairs"]:
            before, after = acqs[pair["before"]], acqs[pair["after"]]
            if len(before["files"]) != 1 or len(after["files"]) != 1 or after["crs"] == "EPSG:4326":
                continue
            coarse = degraded(SAMPLES / after["files"][0], size, work / "imagery")
            out = work / f"{size:g}m_{pair['before']}_{pair['after']}"
            cmd = [str(CLI), "-q", "diff", str(SAMPLES / before["files"][0]), str(coarse)]
            subprocess.run([*cmd, "--site", "sohae", "--out", str(out)], check=True, cwd=ROOT)
            report = json.loads((out / "report.json").read_text())
            for s in report["structures"]:
                want = pair["structures"][s["id"]]["status"]
                total += 1
                right += s["status"] == want
                if s["status"] != want:
                    wrong.append(
                        f"  {size:g} m, {pair['before']} -> {pair['after']}: {s['id']} called "
                        f"{s['status']} ({s['confidence']:.2f}), truth {want}"
                    )
    print(f"statuses right: {right}/{total}")
    print("\n".join(wrong))


if __name__ == "__main__":
    main()
