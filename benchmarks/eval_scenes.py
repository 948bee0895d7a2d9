"""Structure-status accuracy on generated scenes the classifier was not tuned on (issue 5).

usage: python benchmarks/eval_scenes.py [--seeds 20-25] [--work DIR]
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

from sohae_watch.evaluate import score_mask_files

CLI = Path(sys.executable).with_name("sohae-watch")
CONFIDENCE_BINS = ((0.0, 0.5), (0.5, 0.6), (0.6, 0.7), (0.7, 0.8), (0.8, 0.9), (0.9, 1.01))


def seeds(text: str) -> list[int]:
    lo, _, hi = text.partition("-")
    return list(range(int(lo), int(hi or lo) + 1))


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--seeds", default="20-25")
    ap.add_argument("--work", type=Path, default=None)
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="eval-scenes-"))
    confusion: Counter[tuple[str, str]] = Counter()
    calls: list[tuple[float, bool]] = []
    # (pair, mask scores, snow, whether the report found the dates' radiometry matched)
    pixels: list[tuple[str, dict[str, float], float, bool]] = []
    for seed in seeds(args.seeds):
        scene = work / f"scene-{seed}"
        if not (scene / "truth.json").is_file():
            subprocess.run(
                [str(CLI), "-q", "samples", str(scene), "--scene", "--seed", str(seed)], check=True
            )
        truth = json.loads((scene / "truth.json").read_text())
        snow = {a["date"]: float(a.get("snow_fraction", 0.0)) for a in truth["acquisitions"]}
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
            if pair.get("change_mask"):
                scores = score_mask_files(out / "change_mask.tif", scene / pair["change_mask"])
                name = f"{seed} {pair['before']} -> {pair['after']}"
                worst = max(snow[pair["before"]], snow[pair["after"]])
                pixels.append((name, scores, worst, report["change"]["radiometry_matched"]))
        print(f"seed {seed}: {right}/{total} statuses right", flush=True)
    n = sum(confusion.values())
    ok = sum(v for (t, p), v in confusion.items() if t == p)
    false_change = sum(
        v
        for (t, p), v in confusion.items()
        if t == "unchanged" and p in ("appeared", "removed", "modified")
    )
    false_obscured = confusion[("unchanged", "obscured")]
    print(
        f"status accuracy {ok}/{n} = {ok / max(1, n):.3f}; unchanged called changed "
        f"(appeared, removed or modified): {false_change}; unchanged called obscured: "
        f"{false_obscured}"
    )
    for (t, p), v in sorted(confusion.items()):
        print(f"  truth {t:<10} called {p:<10} {v}")
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


def print_pixel_scores(pixels: list[tuple[str, dict[str, float], float, bool]]) -> None:
    """Per pair and mean pixel scores of the change masks against the truth masks, then the
    means of the pairs split by snow, and by whether the report said the dates' radiometry is
    not matched (the mask cannot be trusted)."""
    print("change masks against the truth masks (pixels):")
    for name, s, snow, ok in pixels:
        print(
            f"  {name}: P {s['precision']:.3f} R {s['recall']:.3f} F1 {s['f1']:.3f} "
            f"false alarms {s['false_alarm_rate']:.4f} not observable {s['not_observable']:.3f} "
            f"snow {snow:.2f}{'' if ok else ' (reported not matched)'}"
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
    for label, flagged in (("reported not matched", True), ("matched", False)):
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
