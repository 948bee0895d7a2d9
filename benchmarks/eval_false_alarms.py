"""Where the change masks' false alarms lie, by what the generator put there.

usage: python benchmarks/eval_false_alarms.py --work DIR [--seeds 450-469] [--all-pairs] [--shadows]
DIR is a work folder of `eval_scenes.py` (it holds scene-N/ with truth/ and out/ per pair). For
each seed the scene's model is drawn again (`samples_random.random_model`, deterministic) and its
dates rendered, which gives, per pixel of the truth grid, what lies there on each date. Every
pixel the truth calls no change (0) is put in the first of these classes that holds it on either
date:

- ``cloud``: cloud opacity above 1 %;
- ``snow``: the generator's snow on either date;
- ``structure``: a roof of any structure, listed or not, or within 1 m of one (its rim);
- ``structure shadow``: a structure's cast shadow, or within 1 m of it;
- ``forest``: the forest patches (tree crowns, the floor and the trees' shadows);
- otherwise the ground class painted there (grass, crop_a, crop_b, soil, gravel, concrete, ...).

Printed per class: the false alarms (pixels the mask flags, 1, where the truth says 0), their
share of all false alarms, the class's share of the no-change pixels, and its false-alarm rate.
By default only the pairs whose mask the report trusts and that have no snow on either date are
counted (the others are mostly blind, see the README); ``--all-pairs`` counts every pair.

``--shadows`` also splits the structures' cast shadows (off roofs and their rims) three ways: the
band within 1 m of a shadow's edge on either date, the inside of a shadow on one date only (it
moved), and the inside of a shadow on both dates.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import rasterio
from scipy import ndimage

from sohae_watch.evaluate import mask_on_grid
from sohae_watch.samples_random import random_model
from sohae_watch.samples_render import (
    CLASSES,
    RenderedDate,
    burn,
    make_ground,
    render_date,
)
from sohae_watch.samples_write import canvas_of

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_scenes import seeds

RIM_PX = 2  # 1 m at the generator's 0.5 m


def classes_of(seed: int) -> tuple[dict[str, dict[str, np.ndarray]], int]:
    """Per date, boolean maps on the canvas: cloud, snow, structure, structure shadow; and under
    the key ``ground`` the ground class index of every pixel. Also the canvas margin (px)."""
    model = random_model(seed)
    canvas, margin = canvas_of(model)
    ground = make_ground(canvas, model.ground, model.seed)
    every = model.structures + model.others
    key_ids: dict[str, int] = {}
    out: dict[str, dict[str, np.ndarray]] = {"ground": {"cls": ground.cls}}
    for spec in model.dates:
        elements = {s.id: s.elements(model.states[s.id][spec.iso]) for s in every}
        r: RenderedDate = render_date(canvas, ground, spec, elements, key_ids, model.shade_roofs)
        shadow = np.zeros(canvas.shape, bool)
        for geom in r.shadows.values():
            if not geom.is_empty:
                shadow |= burn(canvas, geom)
        out[spec.iso] = {
            "cloud": r.cloud > 0.01,
            "snow": r.snow,
            "structure": ndimage.binary_dilation(r.idmap != 0, iterations=RIM_PX),
            "structure shadow": ndimage.binary_dilation(shadow, iterations=RIM_PX),
            "shadow": shadow & (r.idmap == 0),
        }
    return out, margin


def shadow_parts(before: np.ndarray, after: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """The cast shadows of two dates as the band within 1 m of an edge on either date, the inside
    of a shadow on one date only, and the inside of a shadow on both."""
    edge = np.zeros_like(before)
    for shadow in (before, after):
        edge |= ndimage.binary_dilation(shadow, iterations=RIM_PX) & ~ndimage.binary_erosion(
            shadow, iterations=RIM_PX
        )
    return [
        ("edge band (1 m)", edge),
        ("moved, inside", (before ^ after) & ~edge),
        ("on both dates, inside", before & after & ~edge),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--seeds", default="450-469")
    ap.add_argument("--all-pairs", action="store_true")
    ap.add_argument("--shadows", action="store_true", help="split the cast shadows three ways")
    args = ap.parse_args()
    fa: Counter[str] = Counter()
    area: Counter[str] = Counter()
    shade_fa: Counter[str] = Counter()
    shade_area: Counter[str] = Counter()
    pairs = 0
    for seed in seeds(args.seeds):
        scene = args.work / f"scene-{seed}"
        if not (scene / "out").is_dir():
            continue
        maps = None
        for pair in sorted((scene / "out").iterdir()):
            b, a = pair.name.split("_")
            report = json.loads((pair / "report.json").read_text())
            truth_json = json.loads((scene / "truth.json").read_text())
            snowy = {x["date"]: x["snow_fraction"] > 0 for x in truth_json["acquisitions"]}
            if not args.all_pairs and (
                snowy[b] or snowy[a] or not report["change"]["mask_trusted"]
            ):
                continue
            if maps is None:
                maps, margin = classes_of(seed)
            with (
                rasterio.open(scene / "truth" / f"{pair.name}.tif") as t_ds,
                rasterio.open(pair / "change_mask.tif") as p_ds,
            ):
                truth = t_ds.read(1)
                pred = mask_on_grid(p_ds, t_ds)
            crop = (slice(margin, margin + truth.shape[0]), slice(margin, margin + truth.shape[1]))
            label = np.array(CLASSES, dtype=object)[maps["ground"]["cls"][crop]]
            # the docstring's order, the first class that holds a pixel winning: painted last
            for name in ("structure shadow", "structure", "snow", "cloud"):
                hit = maps[b][name][crop] | maps[a][name][crop]
                label[hit] = name
            neg = truth == 0
            false = neg & (pred == 1)
            for name in set(label[neg].tolist()):
                sel = label == name
                fa[name] += int((false & sel).sum())
                area[name] += int((neg & sel).sum())
            if args.shadows:
                rims = maps[b]["structure"][crop] | maps[a]["structure"][crop]
                for name, sel in shadow_parts(maps[b]["shadow"][crop], maps[a]["shadow"][crop]):
                    sel &= neg & ~rims
                    shade_fa[name] += int((false & sel).sum())
                    shade_area[name] += int(sel.sum())
            pairs += 1
    total_fa, total = sum(fa.values()), sum(area.values())
    print(
        f"{pairs} pairs; no-change pixels {total}, false alarms {total_fa} ({total_fa / max(total, 1):.4f})"
    )
    print(f"{'class':<18} {'false alarms':>12} {'share':>6} {'of area':>8} {'rate':>7}")
    for name, n in sorted(fa.items(), key=lambda kv: -kv[1]):
        print(
            f"{name:<18} {n:12d} {n / max(total_fa, 1):6.3f} {area[name] / total:8.3f} "
            f"{n / max(area[name], 1):7.4f}"
        )
    for name, n in shade_fa.items():
        of = shade_area[name]
        print(f"cast shadows, {name:<30} {n:9d} of {of:9d} ({n / max(of, 1):.4f})")


if __name__ == "__main__":
    main()
