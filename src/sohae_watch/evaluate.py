"""Scoring outputs against ground truth: a change mask against a truth mask, and reports against
a generated scene's truth.json."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.errors import RasterioError
from rasterio.warp import Resampling, reproject, transform_bounds

from sohae_watch.errors import InputError

log = logging.getLogger(__name__)


def mask_scores(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Pixel scores of the change class. ``truth`` 255 pixels are ignored; ``pred`` 255 (not
    observable) counts as no change and its share is reported."""
    known = truth != 255
    p = (pred == 1) & known
    t = (truth == 1) & known
    tp = float((p & t).sum())
    fp = float((p & ~t).sum())
    fn = float((~p & t).sum())
    tn = float((~p & ~t & known).sum())
    n = max(1.0, tp + fp + fn + tn)
    precision = tp / (tp + fp) if tp + fp else (1.0 if fn == 0 else 0.0)
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    iou = tp / (tp + fp + fn) if tp + fp + fn else 1.0
    po = (tp + tn) / n
    pe = ((tp + fp) * (tp + fn) + (fn + tn) * (fp + tn)) / (n * n)
    kappa = (po - pe) / (1 - pe) if pe < 1 else 1.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "iou": iou,
        "kappa": kappa,
        "false_alarm_rate": fp / n,
        "not_observable": float(((pred == 255) & known).sum()) / n,
        "pixels": n,
    }


def _overlap(pred: rasterio.io.DatasetReader, truth: rasterio.io.DatasetReader) -> bool:
    """Whether the two rasters' footprints meet (the prediction's bounds in the truth's CRS)."""
    left, bottom, right, top = transform_bounds(pred.crs, truth.crs, *pred.bounds)
    t = truth.bounds
    return left < t.right and right > t.left and bottom < t.top and top > t.bottom


MASK_VALUES = (0, 1, 255)  # no change, change, not observable / unknown


def _open_mask(path: Path, role: str) -> rasterio.io.DatasetReader:
    try:
        ds = rasterio.open(path)
    except RasterioError as exc:
        raise InputError(f"{path}: cannot read the {role} ({exc}); give a GeoTIFF mask") from exc
    if ds.crs is None:
        ds.close()
        raise InputError(
            f"{path}: the {role} has no georeference; give it the grid of the imagery it marks "
            "(e.g. gdal_translate -a_srs EPSG:... -a_ullr ...)"
        )
    return ds


def truth_values(truth: np.ndarray, path: Path) -> np.ndarray:
    """A truth mask as uint8 0 / 1 / 255, or InputError when it holds other values (a mask coded
    0 / 7 or 0.0 / 0.5 would otherwise read as no change everywhere). A mask without a 1 is
    warned about: if its 255 marks change rather than unknown, nothing is scored."""
    found = np.unique(truth[np.isfinite(truth)] if truth.dtype.kind == "f" else truth)
    other = [v for v in found.tolist() if v not in MASK_VALUES]
    if other:
        shown = ", ".join(f"{v:g}" for v in other[:5])
        raise InputError(
            f"{path}: truth mask values must be 0 (no change), 1 (change) or 255 (unknown); "
            f"found {shown}; recode it"
        )
    if 1 not in found.tolist():
        log.warning(
            "%s: the truth mask marks no pixel 1 (change); 255 means unknown here, so if it marks "
            "change, recode it to 1",
            path,
        )
    out = np.full(truth.shape, 255, np.uint8)
    for v in (0, 1):
        out[truth == v] = v
    return out


def mask_on_grid(pred: rasterio.io.DatasetReader, truth: rasterio.io.DatasetReader) -> np.ndarray:
    """The first band of ``pred``, a change mask, on ``truth``'s grid (nearest); 255 (not
    observable) beyond it."""
    out = np.full((truth.height, truth.width), 255, np.uint8)
    reproject(
        rasterio.band(pred, 1),
        out,
        src_transform=pred.transform,
        src_crs=pred.crs,
        src_nodata=None,
        dst_transform=truth.transform,
        dst_crs=truth.crs,
        resampling=Resampling.nearest,
    )
    return out


def score_mask_files(pred_path: Path, truth_path: Path) -> dict[str, float]:
    """Scores of a predicted change_mask.tif against a truth mask, on the truth's grid."""
    with _open_mask(truth_path, "truth mask") as t_ds, _open_mask(pred_path, "change mask") as p_ds:
        try:
            truth = truth_values(t_ds.read(1), truth_path)
        except RasterioError as exc:
            raise InputError(
                f"{truth_path}: cannot read the truth mask ({exc}); give a GeoTIFF mask"
            ) from exc
        if not _overlap(p_ds, t_ds):
            raise InputError(
                f"{pred_path}: does not overlap the truth mask {truth_path}; give the "
                "truth of the area the diff compared"
            )
        try:
            pred = mask_on_grid(p_ds, t_ds)
        except RasterioError as exc:
            raise InputError(
                f"{pred_path}: cannot read the change mask ({exc}); give a diff output folder"
            ) from exc
    return mask_scores(pred, truth)


def _find_reports(pred_dir: Path) -> list[Path]:
    if (pred_dir / "report.json").is_file():
        return [pred_dir / "report.json"]
    return sorted(pred_dir.rglob("report.json"))


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(
            f"{path}: not readable JSON ({exc}); give a truth.json or a report folder"
        ) from exc


def score_reports(pred_dir: Path, truth_path: Path) -> dict[str, Any]:
    """Structure statuses and events of every report under ``pred_dir`` against truth.json."""
    truth = _load_json(truth_path)
    if not isinstance(truth, Mapping) or "pairs" not in truth:
        raise InputError(
            f"{truth_path}: not a sohae-watch truth.json (no 'pairs'); give the samples' truth.json"
        )
    pairs = {(p["before"], p["after"]): p for p in truth["pairs"]}
    reports = _find_reports(pred_dir)
    if not reports:
        raise InputError(f"{pred_dir}: no report.json found; give a diff output folder")
    out_pairs = []
    n_ok = n_all = 0
    event_ok = 0
    site = truth.get("site")
    other_sites = set()
    for rp in reports:
        rep = _load_json(rp)
        site_doc = rep.get("site")
        rep_site = site_doc.get("id") if isinstance(site_doc, Mapping) else None
        if site and rep_site and rep_site != site:
            other_sites.add(rep_site)
            continue
        key = (rep.get("before", {}).get("date"), rep.get("after", {}).get("date"))
        if key not in pairs:
            continue
        tp = pairs[key]
        rows = []
        for s in rep.get("structures", []):
            want = tp["structures"].get(s["id"])
            if want is None:
                continue
            ok = s["status"] == want["status"]
            ev_ok = s.get("event") == want.get("event")
            n_all += 1
            n_ok += ok
            event_ok += ok and ev_ok
            rows.append(
                {
                    "id": s["id"],
                    "predicted": s["status"],
                    "truth": want["status"],
                    "predicted_event": s.get("event"),
                    "truth_event": want.get("event"),
                    "correct": bool(ok),
                    "confidence": s.get("confidence"),
                }
            )
        entry: dict[str, Any] = {
            "before": key[0],
            "after": key[1],
            "report": str(rp),
            "structures": rows,
        }
        mask_rel = tp.get("change_mask")
        pred_mask = rp.parent / "change_mask.tif"
        if mask_rel and pred_mask.is_file() and (truth_path.parent / mask_rel).is_file():
            entry["mask"] = score_mask_files(pred_mask, truth_path.parent / mask_rel)
        out_pairs.append(entry)
    if not out_pairs and other_sites:
        raise InputError(
            f"{pred_dir}: the reports are of site {', '.join(sorted(other_sites))}, {truth_path} "
            f"of site {site}; give the truth of the site the diff ran on"
        )
    if not out_pairs:
        raise InputError(
            f"{pred_dir}: no report matches a pair of {truth_path}; run diff on one of its pairs"
        )
    if n_all == 0:
        raise InputError(
            f"{pred_dir}: no structure of the reports is in {truth_path}; give the truth of the "
            "site the diff ran on"
        )
    return {
        "pairs": out_pairs,
        "structures": n_all,
        "status_correct": n_ok,
        "status_accuracy": n_ok / n_all,
        "event_correct": event_ok,
    }


def evaluate(pred_dir: Path, truth: Path) -> dict[str, Any]:
    """``eval``: a truth mask GeoTIFF scores ``pred_dir/change_mask.tif``; a truth.json scores reports."""
    if not pred_dir.exists():
        raise InputError(f"{pred_dir}: not found; give a diff output folder")
    if truth.is_dir():
        raise InputError(f"{truth}: is a folder; give a truth mask GeoTIFF or a truth.json")
    if not truth.is_file():
        raise InputError(f"{truth}: not found; give a truth mask GeoTIFF or a truth.json")
    if truth.suffix.lower() == ".json":
        return score_reports(pred_dir, truth)
    pred = pred_dir / "change_mask.tif" if pred_dir.is_dir() else pred_dir
    if not pred.is_file():
        raise InputError(f"{pred_dir}: holds no change_mask.tif; give a diff output folder")
    return {"mask": score_mask_files(pred, truth)}
