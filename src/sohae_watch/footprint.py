"""What one image says about one footprint: edges across its outline, and its interior pattern.

The measurements the structure classifier (:mod:`sohae_watch.classify`) turns into evidence, each
in the image's own units so gain, offset, haze and snow cancel:

- ``outline_coverage``: the share of the footprint's outline along which the image has an edge
  across it (gradient normal to the side, ``EDGE_FACTOR`` times the typical gradient around the
  footprint, stronger than along it);
- ``best_offset``: the footprint's position within a few metres where the outline is clearest;
- ``lean_offsets``: each date's own position, when a structure outlined on both dates is drawn
  at a different place on each (a tall one seen from a different off-nadir view);
- ``pattern_change``: how far cells of the footprint moved in rank and hue against the rest of it
  between two dates, leaving out the pixels a moving shadow explains (``moved_shade``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from scipy import ndimage
from shapely.geometry import Polygon
from shapely.geometry.base import BaseGeometry

from sohae_watch.grid import Grid
from sohae_watch.scene import Scene
from sohae_watch.texture import TEXTURE_CHANGE, texture_change

RANK_CHANGE = 0.25  # a cell's median rank within the footprint moved this much: modified
HUE_CHANGE = 0.3  # a cell's log chromaticity moved this much against the footprint's: modified
EDGE_FACTOR = 3.0  # an outline edge is this many times the typical gradient around the footprint
NOISE_MULTIPLE = 2.0  # ... where "typical" is at most this many times the gradient of flat ground
# a shadow keeps less than this share of the light (the sky's, not the sun's): ground around a
# footprint this much darker on one date than the ring's typical ratio of the dates went into shade
SHADOW_RATIO = 0.6
# a footprint pixel darkened by the ground's shade factor within this factor, in every band, went
# into shade (or came out of it) rather than changed
SHADE_TOLERANCE = math.log(1.4)
SHADE_MIN_PX = (50, 20)  # ring pixels, and shaded ones among them, needed to measure the factor
OFFSET_PENALTY = 0.002  # outline coverage a footprint position gives up per square pixel moved
CORE_MIN_PX = 36  # an inner part (2 px in) of fewer pixels is too few: the whole footprint is read


def gradient_levels(scene: Scene) -> tuple[float, float]:
    """The scene's typical gradient magnitude (median) and that of flat ground (10th percentile)."""
    if not scene.valid.any():
        return 1.0, 1.0
    gx, gy, _ = _gradients(scene)
    return _levels(gx, gy, scene.valid)


def _gradients(scene: Scene) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The x and y gradients of the scene's intensity (nodata filled with its median, smoothed
    at 1 px), and that intensity."""
    img = scene.intensity()
    valid = scene.valid
    fill = float(np.median(img[valid])) if valid.any() else 0.0
    f = ndimage.gaussian_filter(np.where(valid, img, fill).astype(np.float32), 1.0)
    return ndimage.sobel(f, axis=1) / 8.0, ndimage.sobel(f, axis=0) / 8.0, img


def _levels(gx: np.ndarray, gy: np.ndarray, valid: np.ndarray) -> tuple[float, float]:
    if not valid.any():
        return 1.0, 1.0
    typical, floor = np.percentile(np.hypot(gx, gy)[valid], [50, 10])
    return float(typical), float(floor)


@dataclass(frozen=True)
class EdgeImage:
    """Gradients of one acquisition's intensity and the scene's typical gradient magnitude."""

    gx: np.ndarray
    gy: np.ndarray
    typical: float  # median gradient magnitude of the scene
    floor: float  # gradient magnitude of flat ground (10th percentile): the noise
    intensity: np.ndarray
    valid: np.ndarray

    @classmethod
    def of(
        cls,
        scene: Scene,
        levels: tuple[float, float] | None = None,
        own: tuple[float, float] | None = None,
    ) -> EdgeImage:
        """Gradients of ``scene``; ``levels`` (typical, floor) measured on the whole scene when the
        scene given is a window around one footprint (default: measured on ``scene`` itself).
        ``own``: when ``scene`` is such a window brought to another level of detail, the
        window's levels at its own detail; ``levels`` are then scaled by what that did to them."""
        gx, gy, img = _gradients(scene)
        valid = scene.valid
        if levels is None:
            levels = _levels(gx, gy, valid)
        elif own is not None:
            now = _levels(gx, gy, valid)
            levels = (
                levels[0] * now[0] / max(own[0], 1e-6),
                levels[1] * now[1] / max(own[1], 1e-6),
            )
        typical, floor = levels
        return cls(gx, gy, max(typical, 1e-6), max(floor, 1e-6), img, valid)

    def local_typical(self, ring: np.ndarray) -> float:
        """Median gradient magnitude in ``ring`` (the ground around a footprint), floored at twice
        the noise: an outline must stand out from its own surroundings, not from the whole scene."""
        sel = ring & self.valid
        if sel.sum() < 8:
            return self.typical
        local = float(np.median(np.hypot(self.gx[sel], self.gy[sel])))
        return min(local, self.typical, NOISE_MULTIPLE * self.floor)


@dataclass(frozen=True)
class Side:
    """Sample points along one side of a footprint (pixel coordinates) and the side's normal."""

    x: np.ndarray
    y: np.ndarray
    nx: float
    ny: float
    length: float


def footprint_sides(poly_px: Polygon) -> list[Side]:
    """Sample every side of a footprint (exterior ring, pixel coordinates) once per pixel."""
    xy = np.asarray(poly_px.exterior.coords)
    sides = []
    for (x0, y0), (x1, y1) in itertools.pairwise(xy):
        length = float(math.hypot(x1 - x0, y1 - y0))
        if length < 2:
            continue
        n = max(2, int(length))
        t = (np.arange(n) + 0.5) / n
        sides.append(
            Side(
                x0 + t * (x1 - x0),
                y0 + t * (y1 - y0),
                -(y1 - y0) / length,
                (x1 - x0) / length,
                length,
            )
        )
    return sides


def outline_coverage(
    edges: EdgeImage, sides: Sequence[Side], dx: int, dy: int, typical: float | None = None
) -> float:
    """Share of the outline (moved by dx, dy pixels) along which the image has an edge across it,
    stronger than ``EDGE_FACTOR`` times the ``typical`` gradient (default: the scene's)."""
    return float(outline_coverages(edges, sides, [(dx, dy)], typical)[0])


def outline_coverages(
    edges: EdgeImage,
    sides: Sequence[Side],
    offsets: Sequence[tuple[int, int]],
    typical: float | None = None,
) -> np.ndarray:
    """:func:`outline_coverage` at each of the ``offsets`` (dx, dy), all at once (NaN where no
    point of the outline is on valid pixels)."""
    level = EDGE_FACTOR * (edges.typical if typical is None else typical)
    h, w = edges.gx.shape
    dx = np.array([o[0] for o in offsets], dtype=np.int64)[:, None]
    dy = np.array([o[1] for o in offsets], dtype=np.int64)[:, None]
    total = np.zeros(len(offsets))
    covered = np.zeros(len(offsets))
    for s in sides:
        shape = (len(offsets), s.x.size)
        hit = np.zeros(shape, bool)
        seen = np.zeros(shape, bool)
        for k in (-1, 0, 1):  # the edge may sit a pixel inside or outside the outline
            c = np.floor(s.x + dx + k * s.nx).astype(int)
            r = np.floor(s.y + dy + k * s.ny).astype(int)
            inside = (c >= 0) & (c < w) & (r >= 0) & (r < h)
            c, r = np.clip(c, 0, w - 1), np.clip(r, 0, h - 1)
            ok = inside & edges.valid[r, c]
            gx, gy = edges.gx[r, c], edges.gy[r, c]
            across = np.abs(gx * s.nx + gy * s.ny)
            along = np.abs(-gx * s.ny + gy * s.nx)
            hit |= ok & (across > level) & (across > 1.5 * along)
            seen |= ok
        n_seen = seen.sum(axis=1)
        any_seen = n_seen > 0
        seen_share = n_seen / s.x.size
        # a hit is always seen: the share of the seen points that hit
        hit_share = hit.sum(axis=1) / np.maximum(n_seen, 1)
        total = np.where(any_seen, total + s.length * seen_share, total)
        covered = np.where(any_seen, covered + s.length * hit_share * seen_share, covered)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, covered / np.where(total > 0, total, 1.0), np.nan)


def _shifted(a: np.ndarray, dc: int, dr: int) -> np.ndarray:
    """``a`` sampled at (row + dr, col + dc), False beyond the edges."""
    out = np.zeros_like(a)
    h, w = a.shape
    src = a[max(0, dr) : h + min(0, dr), max(0, dc) : w + min(0, dc)]
    out[max(0, -dr) : max(0, -dr) + src.shape[0], max(0, -dc) : max(0, -dc) + src.shape[1]] = src
    return out


def chance_coverage(
    edges: EdgeImage, sides: Sequence[Side], ring: np.ndarray, typical: float | None = None
) -> float:
    """The outline coverage the ground around a footprint gives by chance.

    For each side, the same edge test as :func:`outline_coverage` (an edge across the side's
    direction, at a pixel or one either side of it) is applied to the ``ring``'s pixels, which are
    cut into lines parallel to the side; the side's chance is the median of the lines' hit shares,
    and the footprint's is their mean weighted by side length. A median over lines, so a single
    straight edge in the ring (an apron's border, a road, a shadow's far edge) does not count,
    while ground broken into small high-contrast patches (patchy snow, rubble), which crosses
    every line, does: about 0 on plain ground, a half or more on patchy snow, where an outline
    drawn anywhere crosses edges and so proves nothing."""
    sel = ring & edges.valid
    if sel.sum() < 32:
        return 0.0
    level = EDGE_FACTOR * (edges.typical if typical is None else typical)
    rows, cols = np.nonzero(sel)
    shares: dict[tuple[int, int], float] = {}
    total = weighted = 0.0
    for s in sides:
        key = (int(round(s.nx * 100)), int(round(s.ny * 100)))
        if (-key[0], -key[1]) in shares:
            key = (-key[0], -key[1])
        if key not in shares:
            across = np.abs(edges.gx * s.nx + edges.gy * s.ny)
            along = np.abs(-edges.gx * s.ny + edges.gy * s.nx)
            hit = (across > level) & (across > 1.5 * along) & edges.valid
            dc, dr = int(round(s.nx)), int(round(s.ny))
            hit3 = (hit | _shifted(hit, dc, dr) | _shifted(hit, -dc, -dr))[rows, cols]
            line = np.round(cols * s.nx + rows * s.ny).astype(np.int64)
            line -= line.min()
            n = np.bincount(line)
            k = np.bincount(line, weights=hit3.astype(np.float64))
            full = n >= 8
            shares[key] = float(np.median(k[full] / n[full])) if full.any() else 0.0
        total += s.length
        weighted += s.length * shares[key]
    return weighted / total if total > 0 else 0.0


def above_chance(coverage: float, chance: float) -> float:
    """Outline coverage beyond what the surrounding ground gives by chance, rescaled to [0, 1]:
    1 stays 1, the chance level becomes 0 (nan stays nan)."""
    return float(above_chance_all(np.asarray(coverage), chance))


def above_chance_all(coverages: np.ndarray, chance: float) -> np.ndarray:
    """:func:`above_chance` of every coverage in ``coverages`` (any shape)."""
    raw = np.asarray(coverages, np.float64)
    if chance <= 0.0:
        return raw
    if chance >= 1.0:
        return np.where(np.isfinite(raw), 0.0, raw)
    return np.where(np.isfinite(raw), np.maximum(0.0, (raw - chance) / (1.0 - chance)), raw)


@dataclass(frozen=True)
class OutlineFit:
    """A footprint's best position and how well it is outlined there on each date.

    ``raw_*``: the outline coverage measured; ``chance_*``: what the ground around gives by chance
    (:func:`chance_coverage`); ``before`` / ``after``: the coverage beyond chance
    (:func:`above_chance`). Clutter adds edges to an outline but does not take them away, so the
    coverage beyond chance is what can show that a structure stands, and the raw coverage what
    can show that none does."""

    dx: int
    dy: int
    raw_before: float
    raw_after: float
    chance_before: float
    chance_after: float
    # where the after date's outline is, relative to the before date's (0, 0: the same place)
    rdx: int = 0
    rdy: int = 0
    # the height (m) at which the two dates' known views put the outlines (nan: not searched
    # along the views, or the footprint's tolerance found it)
    height_m: float = float("nan")

    @property
    def before(self) -> float:
        return above_chance(self.raw_before, self.chance_before)

    @property
    def after(self) -> float:
        return above_chance(self.raw_after, self.chance_after)


def best_offset(
    before: EdgeImage,
    after: EdgeImage,
    sides: Sequence[Side],
    tol_px: int,
    ring: np.ndarray | None = None,
) -> OutlineFit:
    """The footprint offset within ``tol_px`` that best outlines a structure on either date (by the
    coverage beyond chance), with each date's coverage there; edges are measured against the
    gradients in ``ring`` and chance is what the ground in ``ring`` gives."""
    c = coverages(before, after, sides, tol_px, ring)
    return shared_fit(c.offsets, c.on_before, c.on_after, c.chance_before, c.chance_after)


class Coverages(NamedTuple):
    """Each date's raw outline coverage at every offset within the tolerance, with what it is
    measured against: each date's typical gradient around the footprint (None without a ring:
    the scene's) and its chance coverage (what the ground in the ring gives; 0 without one)."""

    offsets: list[tuple[int, int]]
    on_before: np.ndarray
    on_after: np.ndarray
    chance_before: float
    chance_after: float
    typical_before: float | None
    typical_after: float | None


def coverages(
    before: EdgeImage,
    after: EdgeImage,
    sides: Sequence[Side],
    tol_px: int,
    ring: np.ndarray | None,
) -> Coverages:
    """:class:`Coverages` of the offsets within ``tol_px``, edges measured against the
    gradients in ``ring``."""
    tb = before.local_typical(ring) if ring is not None else None
    ta = after.local_typical(ring) if ring is not None else None
    kb = chance_coverage(before, sides, ring, tb) if ring is not None else 0.0
    ka = chance_coverage(after, sides, ring, ta) if ring is not None else 0.0
    offsets = _disk(tol_px)
    on_before = outline_coverages(before, sides, offsets, tb)
    on_after = outline_coverages(after, sides, offsets, ta)
    return Coverages(offsets, on_before, on_after, kb, ka, tb, ta)


def _disk(tol_px: int) -> list[tuple[int, int]]:
    """The whole-pixel offsets (dx, dy) within ``tol_px`` of none."""
    r = range(-tol_px, tol_px + 1)
    return [(dx, dy) for dy in r for dx in r if dx * dx + dy * dy <= tol_px * tol_px]


def shared_fit(
    offsets: Sequence[tuple[int, int]],
    on_before: np.ndarray,
    on_after: np.ndarray,
    kb: float,
    ka: float,
) -> OutlineFit:
    """The offset among ``offsets`` (raw coverages ``on_before``, ``on_after`` there, chance
    levels ``kb``, ``ka``) that best outlines a structure on either date."""
    best = OutlineFit(0, 0, float("nan"), float("nan"), kb, ka)
    best_score = -1.0
    for (dx, dy), raw_b, raw_a in zip(offsets, on_before, on_after, strict=True):
        fit = OutlineFit(dx, dy, float(raw_b), float(raw_a), kb, ka)
        cb, ca = fit.before, fit.after
        score = (
            np.nanmax([cb, ca, 0.0])
            + 0.25 * np.nansum([cb, ca])
            - OFFSET_PENALTY * (dx * dx + dy * dy)
        )
        if score > best_score:
            best, best_score = fit, float(score)
    return best


def lean_offsets(
    before: EdgeImage,
    after: EdgeImage,
    sides: Sequence[Side],
    tol_px: int,
    ring: np.ndarray | None,
    standing: float,
) -> OutlineFit:
    """:func:`best_offset`, each date at its own offset within ``tol_px`` when that outlines a
    structure on both dates (coverage beyond chance at least ``standing`` on each) and one
    shared offset does not do as well.

    A structure of height h seen ``t`` degrees off nadir is drawn with its roof h tan(t) away
    from the satellite, its base in place: two views of one unchanged tower put its roof at two
    places. Each date may then be as far off the footprint as the tolerance allows one date to be,
    no farther (the same freedom per date as the shared search has, so the same chance level
    holds), and the pair of offsets is taken only to explain a structure that stood on both
    dates: a date whose ground shows no outline there keeps its coverage at the shared offset,
    so a structure that came or went is not found on the other date by a chance fit. Offsets a
    pixel apart are one position (the edge test takes an edge a pixel either side of the
    outline): the dates are put apart only when that outlines both better (summed coverage, by
    more than a sample point of the outline on either date) than any one position does; then
    the pair with the most coverage, of equal ones the one whose dates are nearest each other.
    The coverage alone decides, with no penalty per pixel: it falls off within a pixel or two of
    a roof's edges, and the inside compared must be the roof moved by all of the displacement,
    not the part of it a penalty leaves."""
    return lean_fit(coverages(before, after, sides, tol_px, ring), sides, standing)


def lean_fit(c: Coverages, sides: Sequence[Side], standing: float) -> OutlineFit:
    """:func:`lean_offsets` from the dates' :class:`Coverages` within the tolerance."""
    offsets, on_before, on_after = c.offsets, c.on_before, c.on_after
    kb, ka = c.chance_before, c.chance_after
    shared = shared_fit(offsets, on_before, on_after, kb, ka)
    beyond_b = above_chance_all(on_before, kb)
    beyond_a = above_chance_all(on_after, ka)
    ok_b = np.nan_to_num(beyond_b, nan=-1.0) >= standing
    ok_a = np.nan_to_num(beyond_a, nan=-1.0) >= standing
    if not (ok_b.any() and ok_a.any()):
        return shared
    xy = np.asarray(offsets, dtype=np.int64)
    apart = np.abs(xy[:, None, :] - xy[None, :, :]).max(axis=2) > 1
    gap = ((xy[:, None, :] - xy[None, :, :]) ** 2).sum(axis=2)
    score = np.where(ok_b[:, None] & ok_a[None, :], beyond_b[:, None] + beyond_a[None, :], -np.inf)
    # within one sample point of the outline on either date: as well outlined
    step = 2.0 / sum(s.x.size for s in sides)
    # the edge test takes an edge a pixel inside or outside the outline, so outlines a pixel
    # apart are one position: the dates are apart only when that outlines them better
    together = float(np.max(np.where(apart, -np.inf, score), initial=-np.inf))
    if not score[apart].max(initial=-np.inf) > together + step:
        return shared
    # of the pairs apart as well outlined as the best, the one whose dates are nearest each other
    score = np.where(apart, score, -np.inf)
    near = np.where(score >= score.max() - step, gap, np.iinfo(np.int64).max)
    near_best = np.where(near == near.min(), score, -np.inf)
    i, j = np.unravel_index(int(np.argmax(near_best)), score.shape)
    (dx, dy), (ax, ay) = offsets[int(i)], offsets[int(j)]
    return OutlineFit(dx, dy, float(on_before[i]), float(on_after[j]), kb, ka, ax - dx, ay - dy)


def _ranks(values: np.ndarray) -> np.ndarray:
    """Percentile ranks in [0, 1] (ties averaged): unchanged by gain, gamma or saturation."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(values.size, np.float64)
    ranks[order] = np.arange(values.size)
    uniq, inverse = np.unique(values, return_inverse=True)
    if uniq.size < values.size:  # average the ranks of ties (saturated pixels)
        ranks = (np.bincount(inverse, ranks) / np.bincount(inverse))[inverse]
    return ranks / max(1, values.size - 1)


def _cells(core: np.ndarray, n: int = 3) -> list[tuple[slice, slice]]:
    """An n x n split of the footprint's bounding box (cells holding at least 4 footprint pixels)."""
    r, c = np.nonzero(core)
    r0, r1, c0, c1 = r.min(), r.max() + 1, c.min(), c.max() + 1
    out = []
    for i in range(n):
        for j in range(n):
            rr = slice(r0 + (r1 - r0) * i // n, r0 + (r1 - r0) * (i + 1) // n)
            cc = slice(c0 + (c1 - c0) * j // n, c0 + (c1 - c0) * (j + 1) // n)
            if core[rr, cc].sum() >= 4:
                out.append((rr, cc))
    return out


def _chroma(data: np.ndarray) -> np.ndarray:
    """Log chromaticity of the first three bands (hue without brightness)."""
    v = np.clip(data[:3], 1e-3, None)
    return np.log(v / v.sum(axis=0))


def shade_factor(x: np.ndarray, y: np.ndarray, ground: np.ndarray) -> np.ndarray | None:
    """Per band, the log factor by which the ``ground`` that is in shade on date ``x`` and not on
    ``y`` is darker there, against the ground's typical ratio of the two dates; None when too
    little ground went into shade. ``x`` and ``y`` are (bands, rows, cols). The factor is the
    lower quartile of that ground's ratios: the shadow's core, as its soft edge (pixels partly
    in shade) is lighter."""
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.log(x[:, ground]) - np.log(y[:, ground])
    q = q[:, np.isfinite(q).all(axis=0)]
    if q.shape[1] < SHADE_MIN_PX[0]:
        return None
    q -= np.median(q, axis=1)[:, None]
    shaded = q[:3].mean(axis=0) < math.log(SHADOW_RATIO)
    if shaded.sum() < SHADE_MIN_PX[1]:
        return None
    return np.asarray(np.quantile(q[:, shaded], 0.25, axis=1))


def moved_shade(
    before: np.ndarray, after: np.ndarray, fp: np.ndarray, ground: np.ndarray
) -> np.ndarray:
    """The pixels of footprint ``fp`` that went into shade on one date and not the other, as the
    shadow of a taller part moves with the sun, and a pixel around them (the shadow's soft edge).

    Light in a shadow is the sky's alone, so shade darkens every surface by the same factor in a
    band whatever its material (a Lambertian surface): the factor the ``ground`` around the
    footprint shows where it went into shade (:func:`shade_factor`). A pixel whose ratio of the
    dates, against the footprint's typical ratio, is that factor within
    :data:`SHADE_TOLERANCE` in every band is such a pixel. A part of a structure replaced by one
    as much darker in every band is taken for shade too: the rank and hue test then judges the
    rest of the footprint."""
    out = np.zeros(fp.shape, bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.log(after[:, fp]) - np.log(before[:, fp])
    ok = np.isfinite(q).all(axis=0)
    if not ok.any():
        return out
    q -= np.median(q[:, ok], axis=1)[:, None]
    shaded = np.zeros(q.shape[1], bool)
    for x, y, sign in ((after, before, 1.0), (before, after, -1.0)):
        k = shade_factor(x, y, ground)
        if k is not None:
            shaded |= ok & (np.abs(sign * q - k[:, None]) < SHADE_TOLERANCE).all(axis=0)
    out[fp] = shaded
    return ndimage.binary_dilation(out) & fp


def pattern_change(
    before: np.ndarray,
    after: np.ndarray,
    fp: np.ndarray,
    ground: np.ndarray | None = None,
    texture: bool = True,
) -> float:
    """How much the inside of a footprint changed relative to itself, in units of the decision
    threshold (1 = modified).

    The footprint is split into cells. (a) Ranks: a cell's median percentile rank within the
    footprint, per band; ranks are immune to gain, gamma and saturation and stay near 0.5 in
    every cell of a flat roof, so noise does not move them, while half a roof removed reorders
    the cells. (b) Hue: a cell's log chromaticity relative to the footprint's; a band gain
    multiplies every cell alike and cancels, a re-roofed half changes colour. (c) Texture: a
    cell's spread of values against the footprint's (:func:`sohae_watch.texture.texture_change`):
    vents or skylights that went while the tone stayed; only with ``texture`` (the caller's
    word that the dates show the roof at the same place). ``before`` and ``after`` are (bands,
    rows, cols). With ``ground`` (the observable ground around the footprint), the pixels a
    moving shadow explains (:func:`moved_shade`) are left out of the footprint's inner part
    (2 px in from the outline) when they are under half of it (the footprint's typical ratio of
    the dates, which that test measures from, is then the lit one's) and at least
    :data:`CORE_MIN_PX` pixels are left.
    """
    core = ndimage.binary_erosion(fp, iterations=2)
    if core.sum() < CORE_MIN_PX:
        core = fp
    if ground is not None:
        shade = moved_shade(before, after, fp, ground) & core
        if 2 * shade.sum() < core.sum() and (core & ~shade).sum() >= CORE_MIN_PX:
            core = core & ~shade
    if core.sum() < 9:
        return float("nan")
    cells = _cells(core)
    if not cells:  # a sliver (the dates' common view of a roof drawn far apart): no cell to rank
        return float("nan")
    worst_rank = 0.0
    shifts = np.zeros((before.shape[0], len(cells)))
    for b in range(before.shape[0]):
        rank_b, rank_a = np.zeros(core.shape), np.zeros(core.shape)
        rank_b[core] = _ranks(before[b][core])
        rank_a[core] = _ranks(after[b][core])
        for i, (rr, cc) in enumerate(cells):
            sub = core[rr, cc]
            shifts[b, i] = abs(
                float(np.median(rank_b[rr, cc][sub])) - float(np.median(rank_a[rr, cc][sub]))
            )
    # a cell reordered in brightness moved in at least two bands; one band alone is a hue
    # change (measured below) or a cell median flipping between two tones of a fine texture
    worst_rank = (
        float(np.sort(shifts, axis=0)[-2].max()) if shifts.shape[0] >= 2 else float(shifts.max())
    )
    worst_hue = 0.0
    if before.shape[0] >= 3:
        hb, ha = _chroma(before), _chroma(after)
        for b in range(3):
            mb, ma = float(np.median(hb[b][core])), float(np.median(ha[b][core]))
            for rr, cc in cells:
                sub = core[rr, cc]
                d = abs(
                    (float(np.median(hb[b][rr, cc][sub])) - mb)
                    - (float(np.median(ha[b][rr, cc][sub])) - ma)
                )
                worst_hue = max(worst_hue, d)
    spread = texture_change(before, after, core, cells) if texture else math.nan
    worst_texture = spread / TEXTURE_CHANGE if math.isfinite(spread) else 0.0
    return max(worst_rank / RANK_CHANGE, worst_hue / HUE_CHANGE, worst_texture)


def footprint_px(grid: Grid, geom: BaseGeometry) -> Polygon | None:
    poly = (
        geom
        if geom.geom_type == "Polygon"
        else max(getattr(geom, "geoms", [geom]), key=lambda g: g.area)
    )
    inv = ~grid.transform
    xs, ys = inv @ tuple(np.asarray(poly.exterior.coords).T)
    px = Polygon(np.c_[xs, ys])
    return px if px.is_valid and px.area > 0 else None


def shift_mask(mask: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """``mask`` moved by ``dx`` columns and ``dy`` rows, zero-filled."""
    out = np.zeros_like(mask)
    h, w = mask.shape
    src = mask[max(0, -dy) : h - max(0, dy), max(0, -dx) : w - max(0, dx)]
    out[max(0, dy) : max(0, dy) + src.shape[0], max(0, dx) : max(0, dx) + src.shape[1]] = src
    return out
