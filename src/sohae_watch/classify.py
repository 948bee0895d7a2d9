"""Structure-level classification: per named structure, what happened between two acquisitions.

Evidence per structure and acquisition: how much the footprint stands out from a ring of ground
around it (contrast, edge density). Evidence per pair: the observable and changed fractions of
the footprint (from the change mask). Footprints may be off by a few metres, so every measure is
taken over the footprint moved within a tolerance and the best-matching position is kept.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy import ndimage

from sohae_watch.dates import date_span
from sohae_watch.grid import Grid
from sohae_watch.scene import Scene
from sohae_watch.site import Structure

Status = Literal["appeared", "removed", "modified", "unchanged", "obscured"]
EVENTS: dict[str, str | None] = {
    "appeared": "built",
    "removed": "dismantled",
    "modified": "modified",
    "unchanged": None,
    "obscured": None,
}
FOOTPRINT_TOLERANCE_M = 3.0
RING_WIDTH_M = 6.0


@dataclass(frozen=True)
class StructureCall:
    """The decision for one structure and one pair, with the numbers behind it."""

    id: str
    name: str
    status: Status
    event: str | None
    confidence: float
    changed_fraction: float
    observed_fraction: float
    summary: str
    evidence: Mapping[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "status": self.status,
            "event": self.event,
            "confidence": round(self.confidence, 3),
            "changed_fraction": round(self.changed_fraction, 3),
            "observed_fraction": round(self.observed_fraction, 3),
            "summary": self.summary,
            "evidence": {k: round(v, 3) for k, v in self.evidence.items()},
        }


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


def _gradient(img: np.ndarray) -> np.ndarray:
    filled = np.where(np.isfinite(img), img, np.nanmedian(img) if np.isfinite(img).any() else 0.0)
    gx = ndimage.sobel(filled, axis=1)
    gy = ndimage.sobel(filled, axis=0)
    return np.hypot(gx, gy).astype(np.float32)


def _robust_scale(values: np.ndarray) -> float:
    v = values[np.isfinite(values)]
    if v.size < 8:
        return float("nan")
    q25, q75 = np.percentile(v, [25, 75])
    return float(max(q75 - q25, 1e-6))


def presence(
    scene_img: np.ndarray,
    grad: np.ndarray,
    valid: np.ndarray,
    fp: np.ndarray,
    ring: np.ndarray,
    scale: float,
) -> float:
    """How strongly the footprint stands out from its ring of ground: 0 (bare) .. 1 (structure).

    Combines the contrast of the footprint's median against the ring, the spread of values within
    the footprint (a structure has parts, roofs and shadows) and its edge density relative to the
    scene's typical gradient; all in units of the scene's own robust spread, so gain and offset do not
    matter.
    """
    inside = fp & valid
    around = ring & valid
    if inside.sum() < 4 or around.sum() < 4 or not math.isfinite(scale):
        return float("nan")
    vin = scene_img[inside]
    vring = scene_img[around]
    contrast = abs(float(np.median(vin)) - float(np.median(vring))) / scale
    spread = _robust_scale(vin) / scale
    edges = float(np.mean(grad[inside])) / (float(np.median(grad[valid])) + 1e-6 * scale + 1e-9)
    z = 1.2 * contrast + 0.8 * spread + 0.25 * math.log(max(edges, 1e-3)) - 1.0
    return float(1.0 / (1.0 + math.exp(-3.0 * z)))


@dataclass(frozen=True)
class PairEvidence:
    observed: float
    changed: float
    presence_before: float
    presence_after: float


def _best_offset_masks(fp: np.ndarray, tol_px: int) -> list[np.ndarray]:
    if tol_px <= 0:
        return [fp]
    step = max(1, tol_px // 2)
    out = []
    for dy in range(-tol_px, tol_px + 1, step):
        for dx in range(-tol_px, tol_px + 1, step):
            if dx * dx + dy * dy <= tol_px * tol_px:
                out.append(np.roll(np.roll(fp, dy, axis=0), dx, axis=1))
    return out


def gather_evidence(
    fp: np.ndarray,
    grid: Grid,
    before: Scene,
    after: Scene,
    mask: np.ndarray,
    imgs: tuple[np.ndarray, np.ndarray],
    grads: tuple[np.ndarray, np.ndarray],
    scales: tuple[float, float],
) -> PairEvidence:
    """Observed and changed fractions and presence before / after for one footprint."""
    tol_px = int(round(FOOTPRINT_TOLERANCE_M / grid.resolution))
    ring_px = max(2, int(round(RING_WIDTH_M / grid.resolution)))
    candidates = _best_offset_masks(fp, tol_px)
    n = max(1, int(fp.sum()))
    observable = mask != 255
    best = None
    for cand in candidates:
        obs = float((cand & observable).sum()) / n
        changed_px = int((cand & (mask == 1)).sum())
        ch = changed_px / max(1, int((cand & observable).sum()))
        key = (obs >= 0.5, ch)
        if best is None or key > best[0]:
            best = (key, cand, obs, ch)
    assert best is not None
    _, cand, obs, ch = best
    grown = ndimage.binary_dilation(cand, iterations=ring_px)
    ring = grown & ~ndimage.binary_dilation(cand, iterations=max(1, ring_px // 3))
    pb = presence(imgs[0], grads[0], before.valid & observable, cand, ring, scales[0])
    pa = presence(imgs[1], grads[1], after.valid & observable, cand, ring, scales[1])
    return PairEvidence(obs, ch, pb, pa)


def decide(ev: PairEvidence, *, min_observed: float, coreg_factor: float) -> tuple[Status, float]:
    """Status and confidence from one footprint's evidence."""
    if ev.observed < min_observed or not (
        math.isfinite(ev.presence_before) and math.isfinite(ev.presence_after)
    ):
        conf = 0.9 if ev.observed < min_observed * 0.5 else 0.7
        return "obscured", conf
    pb, pa, ch = ev.presence_before, ev.presence_after, ev.changed
    if ch < 0.1:
        status: Status = "unchanged"
        conf = 0.6 + 0.4 * (1.0 - ch / 0.1)
    elif pb < 0.5 <= pa and pa - pb > 0.25:
        status, conf = "appeared", 0.5 + 0.5 * min(1.0, (pa - pb) / 0.6) * min(1.0, ch / 0.3)
    elif pa < 0.5 <= pb and pb - pa > 0.25:
        status, conf = "removed", 0.5 + 0.5 * min(1.0, (pb - pa) / 0.6) * min(1.0, ch / 0.3)
    elif max(pa, pb) >= 0.5 and ch >= 0.2:
        status, conf = "modified", 0.5 + 0.4 * min(1.0, ch / 0.5)
    else:
        status = "unchanged"
        conf = 0.55
    conf *= 0.7 + 0.3 * ev.observed
    return status, float(min(0.99, conf * coreg_factor))


def classify_structures(
    structures: Sequence[Structure],
    before: Scene,
    after: Scene,
    mask: np.ndarray,
    *,
    min_observed_fraction: float = 0.5,
    coreg_reliability: float = 1.0,
    stood_before: Mapping[str, bool] | None = None,
) -> list[StructureCall]:
    """Classify every structure of a site for one pair (scenes on the same, co-registered grid)."""
    grid = before.grid
    imgs = (before.intensity(), after.intensity())
    grads = (_gradient(imgs[0]), _gradient(imgs[1]))
    scales = (_robust_scale(imgs[0][before.valid]), _robust_scale(imgs[1][after.valid]))
    coreg_factor = 0.6 + 0.4 * max(0.0, min(1.0, coreg_reliability))
    calls = []
    for s in structures:
        fp = grid.rasterize(
            grid.geometry_from_lonlat(s.geometry.__geo_interface__), all_touched=True
        )
        if not fp.any():
            ev = PairEvidence(0.0, 0.0, float("nan"), float("nan"))
        else:
            ev = gather_evidence(fp, grid, before, after, mask, imgs, grads, scales)
        status, conf = decide(ev, min_observed=min_observed_fraction, coreg_factor=coreg_factor)
        event = EVENTS[status]
        if status == "appeared" and (s.baseline == "present" or (stood_before or {}).get(s.id)):
            event = "rebuilt"
        calls.append(
            StructureCall(
                id=s.id,
                name=s.name,
                status=status,
                event=event,
                confidence=conf,
                changed_fraction=float(min(1.0, ev.changed)),
                observed_fraction=float(min(1.0, ev.observed)),
                summary=structure_sentence(s.name, status, event, ev.observed, before, after),
                evidence={
                    "presence_before": ev.presence_before,
                    "presence_after": ev.presence_after,
                },
            )
        )
    return calls


def structure_sentence(
    name: str, status: Status, event: str | None, observed: float, before: Scene, after: Scene
) -> str:
    span = date_span(before.date, after.date)
    if event is not None:
        return f"{_capitalise(name)} {event} {span}."
    if status == "obscured":
        return (
            f"The {name} could not be assessed: only {observed:.0%} of its footprint was "
            f"observable on both {before.date.strftime('%b')} {before.date.day} and "
            f"{after.date.strftime('%b')} {after.date.day}."
        )
    return f"No change at the {name} {span}."
