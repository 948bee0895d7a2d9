"""Structure-status accuracy on generated scenes the classifier was not tuned on (issue 5).

usage: python benchmarks/eval_scenes.py [--seeds 20-25] [--work DIR] [--shade-roofs] [--off-nadir MAX]
For each seed: generate a random scene (`sohae-watch samples --scene --seed N`), run `diff` on every
pair in its truth.json with its own site file, and compare each structure's status with truth.
Prints per-scene accuracy, the confusion counts, how many truly unchanged structures were called
changed (appeared, removed, modified) or obscured, and a calibration table (mean confidence and
accuracy of the calls made with confidence in each bin), its expected calibration error and the
log loss of the confidences. Then the change masks against the generator's truth masks (structure
changes only: a season, the sun, snow or a cloud is no change there): per pair precision, recall,
F1 and false-alarm rate; their means, and how many pairs flag more than 0.5 % of the no-change
pixels (issue 4's bound for pairs where nothing changed); the same again for the pairs split by
snow (the larger of the two dates' snow fractions: none, under half the ground, half or more).
Last, the new activity each report lists against the unlisted buildings that came or went in
the truth of its pair: an area is found when its centre is within 25 m of such a building (the
building then counts as found), else false. ``--shade-roofs`` generates the scenes with taller
structures' shadows falling on lower roofs too, as in real imagery (the default scenes paint
every roof over the shadows). ``--off-nadir MAX`` views each date from a random off-nadir angle
up to MAX degrees and a random azimuth (samples --off-nadir): tall structures lean differently
between dates; the unchanged structures called changed are then split by height too.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import shapely
from pyproj import Transformer
from shapely.geometry import Point, shape

from sohae_watch.evaluate import score_mask_files

CLI = Path(sys.executable).with_name("sohae-watch")
CONFIDENCE_BINS = ((0.0, 0.5), (0.5, 0.6), (0.6, 0.7), (0.7, 0.8), (0.8, 0.9), (0.9, 1.01))
NEAR_M = 25.0  # a reported new activity this close to a building that came or went is that one


def seeds(text: str) -> list[int]:
    """Seeds from ranges and single seeds, comma-separated: ``30-35,40-47,117``."""
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.strip().partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--seeds", default="20-25")
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument(
        "--shade-roofs",
        action="store_true",
        help="generate scenes whose lower roofs taller structures shade (samples --shade-roofs)",
    )
    ap.add_argument(
        "--off-nadir",
        type=float,
        default=0.0,
        help="view each date from up to this many degrees off nadir (samples --off-nadir)",
    )
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="eval-scenes-"))
    confusion: Counter[tuple[str, str]] = Counter()
    calls: list[tuple[float, bool]] = []
    # (pair, mask scores, snow, whether the report takes its mask as evidence)
    pixels: list[tuple[str, dict[str, float], float, bool]] = []
    activity: Counter[str] = Counter()  # reported new activity: found, false; buildings missed
    by_height: Counter[tuple[str, str]] = Counter()  # (height band, right | changed | other)
    for seed in seeds(args.seeds):
        scene = work / f"scene-{seed}"
        if not (scene / "truth.json").is_file():
            shade = ["--shade-roofs"] if args.shade_roofs else []
            view = ["--off-nadir", str(args.off_nadir)] if args.off_nadir else []
            cmd = [str(CLI), "-q", "samples", str(scene), "--scene", "--seed", str(seed)]
            subprocess.run([*cmd, *shade, *view], check=True)
        truth = json.loads((scene / "truth.json").read_text())
        if bool(truth.get("roofs_shaded")) != args.shade_roofs:
            sys.exit(
                f"{scene}: made {'with' if truth.get('roofs_shaded') else 'without'} "
                "--shade-roofs; use another --work folder"
            )
        if float(truth.get("off_nadir_max", 0.0)) != args.off_nadir:
            sys.exit(f"{scene}: made with another --off-nadir; use another --work folder")
        snow = {a["date"]: float(a.get("snow_fraction", 0.0)) for a in truth["acquisitions"]}
        to_metres = Transformer.from_crs("EPSG:4326", truth["grid"]["crs"], always_xy=True)
        tallest = heights(seed)
        right = total = 0
        for pair in truth["pairs"]:
            out = scene / "out" / f"{pair['before']}_{pair['after']}"
            cmd = [
                str(CLI),
                "-q",
                "diff",
                pair["before"],
                pair["after"],
                "--site",
                str(scene / "site.yaml"),
                "--out",
                str(out),
            ]
            subprocess.run(cmd, check=True)
            report = json.loads((out / "report.json").read_text())
            for s in report["structures"]:
                want = pair["structures"][s["id"]]["status"]
                confusion[(want, s["status"])] += 1
                calls.append((s["confidence"], s["status"] == want))
                right += s["status"] == want
                total += 1
                if want == "unchanged":
                    call = "right" if s["status"] == want else "other"
                    call = "changed" if s["status"] in CHANGED else call
                    st = truth["states"][s["id"]]
                    gone = st[pair["before"]] == st[pair["after"]] == "absent"
                    by_height[("absent on both" if gone else band(tallest[s["id"]]), call)] += 1
            if pair.get("change_mask"):
                scores = score_mask_files(out / "change_mask.tif", scene / pair["change_mask"])
                name = f"{seed} {pair['before']} -> {pair['after']}"
                worst = max(snow[pair["before"]], snow[pair["after"]])
                pixels.append((name, scores, worst, trusted(report)))
            activity.update(score_activity(report, pair, to_metres))
        print(f"seed {seed}: {right}/{total} statuses right", flush=True)
    n = sum(confusion.values())
    ok = sum(v for (t, p), v in confusion.items() if t == p)
    false_change = sum(v for (t, p), v in confusion.items() if t == "unchanged" and p in CHANGED)
    false_obscured = confusion[("unchanged", "obscured")]
    print(
        f"status accuracy {ok}/{n} = {ok / max(1, n):.3f}; unchanged called changed "
        f"(appeared, removed or modified): {false_change}; unchanged called obscured: "
        f"{false_obscured}"
    )
    for (t, p), v in sorted(confusion.items()):
        print(f"  truth {t:<10} called {p:<10} {v}")
    for b in sorted({b for b, _ in by_height}):
        n_b = sum(v for (bb, _), v in by_height.items() if bb == b)
        print(
            f"  truly unchanged, tallest element {b}: {n_b}, right {by_height[(b, 'right')]}, "
            f"called changed {by_height[(b, 'changed')]}, other {by_height[(b, 'other')]}"
        )
    gap = 0.0
    for lo, hi in CONFIDENCE_BINS:
        sel = [(c, good) for c, good in calls if lo <= c < hi]
        if sel:
            mean = sum(c for c, _ in sel) / len(sel)
            right = sum(g for _, g in sel) / len(sel)
            gap += len(sel) * abs(mean - right)
            print(
                f"  confidence [{lo:.2f}, {min(hi, 1.0):.2f}): {len(sel)} calls, "
                f"mean confidence {mean:.2f}, {right:.2f} right"
            )
    if calls:
        clipped = [(min(max(c, 1e-3), 1 - 1e-3), good) for c, good in calls]
        loss = -sum(math.log(c if good else 1 - c) for c, good in clipped) / len(calls)
        print(
            f"  expected calibration error {gap / len(calls):.3f} (mean |confidence - share right| "
            f"over the bins, weighted by calls); log loss {loss:.3f}"
        )

    if pixels:
        print_pixel_scores(pixels)
    print(
        f"new activity: {activity['found']} areas found, {activity['false']} false; "
        f"{activity['missed']} of {activity['truth']} buildings that came or went not "
        f"reported (within {NEAR_M:g} m)"
    )


CHANGED = ("appeared", "removed", "modified")


def heights(seed: int) -> dict[str, float]:
    """Each named structure's tallest element over all its states, from the scene's model."""
    from sohae_watch.samples_random import random_model

    return {
        s.id: max((e.height for els in s.variants.values() for e in els), default=0.0)
        for s in random_model(seed).structures
    }


def band(height: float) -> str:
    """A height band: what leans little, some, much."""
    return "under 15 m" if height < 15 else "15-25 m" if height < 25 else "25 m or more"


def trusted(report: dict[str, Any]) -> bool:
    """Whether the report takes its change mask as evidence (``change.mask_trusted``: the
    dates' radiometry matched and most of their textured ground looks alike)."""
    return bool(report["change"]["mask_trusted"])


def score_activity(
    report: dict[str, Any], pair: dict[str, Any], to_metres: Transformer
) -> Counter[str]:
    """The report's new activity against the buildings its pair's truth lists as come or gone."""

    def metres(geom: Any) -> Any:
        return shapely.transform(geom, to_metres.transform, interleaved=False)

    truth = [metres(shape(t["geometry"])) for t in pair.get("new_activity", [])]
    hit = [False] * len(truth)
    out: Counter[str] = Counter(truth=len(truth))
    for a in report.get("new_activity", []):
        centre = metres(Point(a["lon"], a["lat"]))
        near = [i for i, t in enumerate(truth) if t.distance(centre) <= NEAR_M]
        out["found" if near else "false"] += 1
        for i in near:
            hit[i] = True
    out["missed"] = hit.count(False)
    return out


def print_pixel_scores(pixels: list[tuple[str, dict[str, float], float, bool]]) -> None:
    """Per pair and mean pixel scores of the change masks against the truth masks, then the
    means of the pairs split by snow, and by whether the report said the mask cannot be trusted
    (radiometry not matched, or most of the ground different: :func:`trusted`)."""
    print("change masks against the truth masks (pixels):")
    for name, s, snow, ok in pixels:
        print(
            f"  {name}: P {s['precision']:.3f} R {s['recall']:.3f} F1 {s['f1']:.3f} "
            f"false alarms {s['false_alarm_rate']:.4f} not observable {s['not_observable']:.3f} "
            f"snow {snow:.2f}{'' if ok else ' (reported untrusted)'}"
        )
    _summary("", [s for _, s, _, _ in pixels])
    for label, keep in (
        ("without snow", lambda v: v == 0),
        ("snow under half the ground", lambda v: 0 < v < 0.5),
        ("snow on half the ground or more", lambda v: v >= 0.5),
    ):
        group = [s for _, s, snow, _ in pixels if keep(snow)]
        if group:
            _summary(f" {label}", group)
    for label, flagged in (("reported untrusted", True), ("trusted", False)):
        group = [s for _, s, _, ok in pixels if ok != flagged]
        if group:
            _summary(f" {label}", group)


def _summary(label: str, scores: list[dict[str, float]]) -> None:
    n = len(scores)
    f1 = sum(s["f1"] for s in scores) / n
    fa = sorted(s["false_alarm_rate"] for s in scores)
    loud = sum(v > 0.005 for v in fa)
    print(
        f"  {n} pairs{label}: mean F1 {f1:.3f}; false alarms mean {sum(fa) / n:.4f}, median "
        f"{statistics.median(fa):.4f}, max {fa[-1]:.4f}; "
        f"pairs above 0.5 %: {loud}"
    )


if __name__ == "__main__":
    main()
