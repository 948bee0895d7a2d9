"""What any whole-scene `diff` of issue 7's pair must spend, whatever it computes (issue 7).

usage: python benchmarks/bench_diff_parts.py BIG_DIR DIFF_OUT [--repeat N]
BIG_DIR holds before.tif / after.tif from ../shared/bench/make_big_pair.py; DIFF_OUT is a
`sohae-watch diff BIG_DIR/before.tif BIG_DIR/after.tif --out DIFF_OUT` folder (its score and mask
are written again here, so their compressibility is the real one). Measures, in one run:
1. the read floor, ../shared/bench/read_floor.py on the pair (a child process: every block of both
   inputs decoded once on one thread), the baseline of issue 7's target;
2. the same blocks decoded on both cores (one thread per input): the fastest the inputs can be
   read on this machine, and what two decoders beside each other cost in CPU;
3. the contract's two rasters written as `diff` writes them (`outputs.geotiff_profile`: tiled,
   DEFLATE, both cores) and the mask's Cloud-Optimized copy;
4. starting Python and importing what `diff` imports (a child process);
5. this build's whole-scene `diff` of the pair (a child process, `-q`).
Prints each part's median wall and CPU seconds, then what is left for everything else
(co-registration, the fit, the change computation) under issue 7's target of 1.5x the read floor:
the target's wall time on two cores, less parts 2-4, in CPU seconds; and how much CPU this build's
diff spends beyond parts 2-4.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import rasterio

from sohae_watch.grid import Grid
from sohae_watch.outputs import cog_copy, geotiff_profile

READ_FLOOR = Path(__file__).resolve().parents[2] / "shared" / "bench" / "read_floor.py"


def cpu_seconds() -> float:
    """CPU seconds of this process so far, all threads (user and system)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def measured(fn: Callable[[], object]) -> tuple[float, float]:
    """Wall and CPU seconds of ``fn()``."""
    w0, c0 = time.perf_counter(), cpu_seconds()
    fn()
    return time.perf_counter() - w0, cpu_seconds() - c0


def decode(path: Path) -> None:
    """Every internal block of ``path`` decoded once, as read_floor.py does."""
    with rasterio.open(path) as ds:
        for _, w in ds.block_windows(1):
            ds.read(window=w)


def read_floor(paths: list[Path]) -> None:
    """../shared/bench/read_floor.py on ``paths``, in a child process."""
    subprocess.run(
        [sys.executable, str(READ_FLOOR), *map(str, paths)], check=True, capture_output=True
    )


def decode_both(paths: list[Path]) -> None:
    """Each input decoded by a thread of its own, at the same time."""
    threads = [threading.Thread(target=decode, args=(p,)) for p in paths]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


Layer = tuple[str, str, float, "np.ndarray", Grid]


def load_outputs(out: Path) -> list[Layer]:
    """The score and the mask of a diff's output folder, in memory (not timed)."""
    layers: list[Layer] = []
    for name, dtype, nodata in (
        ("change_magnitude.tif", "float32", float("nan")),
        ("change_mask.tif", "uint8", 255.0),
    ):
        with rasterio.open(out / name) as src:
            grid = Grid(src.crs, src.transform, src.width, src.height)
            layers.append((name, dtype, nodata, src.read(1), grid))
    return layers


def write_outputs(layers: list[Layer], work: Path) -> None:
    """The score and the mask written with diff's profile, then the mask's Cloud-Optimized copy."""
    for name, dtype, nodata, data, grid in layers:
        with rasterio.open(work / name, "w", **geotiff_profile(grid, dtype, nodata)) as dst:
            dst.write(data, 1)
    cog_copy(work / "change_mask.tif", "NEAREST").replace(work / "change_mask.tif")


def imports() -> None:
    """A child Python that imports what a diff imports."""
    code = "import sohae_watch.cli.main, sohae_watch.pipeline, scipy.ndimage"
    subprocess.run([sys.executable, "-c", code], check=True)


def child_cpu() -> float:
    """CPU seconds of this process's finished children so far."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def whole_diff(big: Path, out: Path) -> None:
    """This build's whole-scene diff of the pair, in a child process."""
    cli = Path(sys.executable).with_name("sohae-watch")
    cmd = [
        str(cli),
        "-q",
        "diff",
        str(big / "before.tif"),
        str(big / "after.tif"),
        "--out",
        str(out),
    ]
    if subprocess.run(cmd).returncode not in (0, 3):
        sys.exit(f"failed: {' '.join(cmd)}")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("big", type=Path)
    ap.add_argument("diff_out", type=Path)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    paths = [args.big / "before.tif", args.big / "after.tif"]
    for p in [
        READ_FLOOR,
        *paths,
        args.diff_out / "change_magnitude.tif",
        args.diff_out / "change_mask.tif",
    ]:
        if not p.is_file():
            sys.exit(f"{p}: not found; see the usage above")
    parts: dict[str, list[tuple[float, float]]] = {
        "read floor (read_floor.py)": [],
        "decode, a thread per input": [],
        "write score and mask, mask COG": [],
        "start Python and import": [],
        "this build's diff, whole scene": [],
    }
    layers = load_outputs(args.diff_out)
    with tempfile.TemporaryDirectory(prefix="bench-parts-") as tmp:
        for k in range(max(1, args.repeat)):
            runs = (
                lambda: read_floor(paths),
                lambda: decode_both(paths),
                lambda: write_outputs(layers, Path(tmp)),
                imports,
                lambda out=Path(tmp) / f"diff{k}": whole_diff(args.big, out),
            )
            for name, fn in zip(parts, runs, strict=True):
                c0 = child_cpu()
                wall, cpu = measured(fn)
                if child_cpu() > c0:  # a child's CPU time is not this process's
                    cpu = child_cpu() - c0
                parts[name].append((wall, cpu))
    med = {
        k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v))
        for k, v in parts.items()
    }
    print(f"{'part':<34} {'wall s':>7} {'CPU s':>7}   (medians of {args.repeat})")
    for k, (w, c) in med.items():
        print(f"{k:<34} {w:7.2f} {c:7.2f}")
    floor = med["read floor (read_floor.py)"][0]
    target = 1.5 * floor
    needed = sum(c for _, c in list(med.values())[1:4])  # parts 2-4
    print(
        f"target: 1.5 x {floor:.2f} s = {target:.2f} s of wall time, {2 * target:.2f} CPU s on two cores"
    )
    print(
        f"the parts every diff needs (decode on both cores, write, start): {needed:.2f} CPU s; "
        f"left for co-registration, the fit and the change computation: {2 * target - needed:.2f} CPU s "
        "(no core idle at any moment)"
    )
    wall, cpu = med["this build's diff, whole scene"]
    print(
        f"this build's diff: {wall:.2f} s ({wall / floor:.2f}x the floor), {cpu:.2f} CPU s, of which "
        f"{cpu - needed:.2f} beyond those parts"
    )


if __name__ == "__main__":
    main()
