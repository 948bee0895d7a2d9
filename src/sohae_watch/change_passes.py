"""The change stage on a whole scene in two passes, every input pixel decoded once.

Windows with the change model's halo (:attr:`~sohae_watch.change.ChangeModel.halo_px`, ~230 m)
decode and score every input pixel several times. Here the scene goes through the stage's steps
(:mod:`sohae_watch.change`) in the order their reach allows:

1. **Bands of rows** (:func:`band_pass`, one job each, on threads or a cluster) read their rows once,
   top to bottom, full width, a chunk at a time, and reduce them to the working grid. The
   gradient operator needs a few working rows around each row: they are kept from the chunk
   before, and the rows within that reach of a band's edge are scored afterwards from the edge
   rows the two bands hand back (:meth:`SceneChange.add`). Out of a band come, for every working
   pixel, the score and two flags (observable, strong edge), and where snow may be the score
   without colour; the block means
   the wide-neighbourhood evidence needs, on the evidence grid; and the typing evidence of the
   pixels whose own score could make them change (the others never do).
2. **The evidence grid** of the whole scene (1/64 of the pixels at 0.5 m): snow, cloud, shadow,
   veils and the decision neighbourhood's sums, computed once (:meth:`SceneChange.prepare`).
3. **Output tiles** (:meth:`SceneChange.tile`) decide from the stored layers and the evidence grid,
   with a halo of a few working pixels for the minimum-mapping-unit opening; nothing is read.

Every step is the one-piece stage's own function on the same values, so the result is the
one-piece result (:func:`~sohae_watch.change.apply_change_model` on the whole scene) bit for bit.
The stored layers take 5 bytes a working pixel (150 MB for a 10980 x 10980 scene at 0.5 m; 4
more where snow may be);
beyond :data:`LAYER_BUDGET` they live in a temporary file instead of memory.
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from sohae_watch.areas import ChangeArea, change_areas_on
from sohae_watch.blocks import bilinear_part, block_mean, lattice_offset, repeat_blocks
from sohae_watch.change import ChangeModel, ChangeResult, to_work
from sohae_watch.change_steps import (
    EVIDENCE_MEANS,
    NOT_OBSERVABLE,
    combine_score,
    decide_pixels,
    evidence_grid,
    evidence_means,
    spectral_evidence,
    structure_evidence,
    structure_reach,
    typing_layers,
    visible_indices,
)
from sohae_watch.cloud import STRONG_EDGE, whitening_candidates
from sohae_watch.filters import set_box, smooth
from sohae_watch.grid import Grid
from sohae_watch.parallel import concurrently
from sohae_watch.radiometry import standardised_residuals
from sohae_watch.registration_noise import damp_registration_noise
from sohae_watch.scene import Scene

__all__ = [
    "BandResult",
    "Layout",
    "SceneChange",
    "band_pass",
    "detect_changes_passes",
    "evidence_bytes",
    "two_passes_fit",
]

CHUNK_ROWS = 64  # input rows a band reads at a time (every column)
# a grid up to this size is read in one window (a source warped onto the grid, e.g. from another
# CRS, is then resampled as in one piece: GDAL's warper gives window-dependent values)
WHOLE_PIXELS = 2_000_000
LAYER_BUDGET = 400 * 2**20  # bytes of stored working-grid layers kept in memory at most
# bytes of evidence-grid statistics the passes may hold (they stay in memory, and the evidence
# grid is computed on the whole scene at once): 151 MiB for 10980 x 10980 pixels at 0.5 m, but
# at 10 m the evidence grid is the input grid (a Sentinel-2 tile: 10 GB). Beyond it, the diff goes
# tile by tile with the model's halo instead (bounded by the tile, about twice the time). Raised
# from 160 MiB with the four edge-alignment layers, so the same scenes take the passes
EVIDENCE_BUDGET = 192 * 2**20
OBS, STRONG = 1, 2  # bits of the flags layer: observable, on a strong edge (either date)
SCORE_SUM = EVIDENCE_MEANS  # layers after evidence_means': the score's sum, then without snow
WHITE_SUM = EVIDENCE_MEANS + 1
GRAD_MEANS = EVIDENCE_MEANS + 2  # evidence layers from the gradients (evidence_means) and scores

# input rows [r0, r1), every column -> (BEFORE, AFTER) on those rows
RowReader = Callable[[int, int], tuple[Scene, Scene]]
Rows = tuple[np.ndarray, np.ndarray, np.ndarray]  # working rows of BEFORE, AFTER, observable


@dataclass(frozen=True)
class Layout:
    """Where a grid's rows and columns fall on the model's working and evidence grids, both
    padded to whole evidence blocks as the one-piece stage pads the whole scene."""

    rows: int
    cols: int
    top: int  # input rows of the first evidence block before the grid
    left: int
    g: int  # input pixels per working pixel
    es: int  # working pixels per evidence pixel
    halo: int  # working rows around a row that its structure change depends on (whole blocks)

    @classmethod
    def of(cls, model: ChangeModel, grid: Grid) -> Layout:
        top, left = lattice_offset(grid, model.step)
        es = model.evidence_step
        halo = -(-structure_reach(model) // es) * es
        return cls(grid.height, grid.width, top, left, model.work_step, es, halo)

    @property
    def evidence_shape(self) -> tuple[int, int]:
        e = self.g * self.es
        return -(-(self.top + self.rows) // e), -(-(self.left + self.cols) // e)

    @property
    def work_shape(self) -> tuple[int, int]:
        he, we = self.evidence_shape
        return he * self.es, we * self.es

    def input_rows(self, k0: int, k1: int) -> tuple[int, int]:
        """The input rows of evidence rows [k0, k1)."""
        e = self.g * self.es
        return max(0, k0 * e - self.top), min(self.rows, k1 * e - self.top)

    def chunk(self) -> int:
        """Evidence rows a band reads at a time (at least twice the halo; all of them on a grid
        of up to :data:`WHOLE_PIXELS`)."""
        if self.rows * self.cols <= WHOLE_PIXELS:
            return self.evidence_shape[0]
        e = self.g * self.es
        return max(1, CHUNK_ROWS // e, -(-2 * self.halo // self.es))

    def bands(self, n: int) -> list[tuple[int, int]]:
        """``n`` (or fewer) bands of evidence rows, made of whole chunks."""
        he = self.evidence_shape[0]
        c = self.chunk()
        chunks = -(-he // c)
        n = max(1, min(n, chunks))
        cuts = [min(he, round(i * chunks / n) * c) for i in range(n + 1)]
        return [(cuts[i], cuts[i + 1]) for i in range(n) if cuts[i + 1] > cuts[i]]


def evidence_bytes(model: ChangeModel, grid: Grid) -> int:
    """Bytes of evidence-grid statistics :class:`SceneChange` holds for ``grid``: both dates'
    block means, the observable share and ``GRAD_MEANS`` layers, float32."""
    he, we = Layout.of(model, grid).evidence_shape
    return (2 * len(model.bands) + 1 + GRAD_MEANS) * 4 * he * we


def two_passes_fit(model: ChangeModel, grid: Grid) -> bool:
    """Whether the two passes hold ``grid``'s evidence grid within :data:`EVIDENCE_BUDGET`."""
    return evidence_bytes(model, grid) <= EVIDENCE_BUDGET


@dataclass
class Strip:
    """Pass 1 on whole working rows [row, row + rows) of the scene."""

    row: int
    score: np.ndarray  # float32, the score before snow is taken out
    flags: np.ndarray  # uint8: OBS | STRONG
    means: np.ndarray  # (GRAD_MEANS, rows / es, cols / es) float32 on the evidence grid
    index: np.ndarray  # flat working-grid indices of the pixels that may change (int64)
    values: np.ndarray  # (typing layers, index.size) float32: their typing evidence
    white: np.ndarray | None  # float32, the score where snow is taken out (None: no snow near)


class Sink(Protocol):
    """Where :func:`band_pass` puts what it computes, as it goes."""

    def put_pair(self, row: int, means: np.ndarray) -> None: ...

    def put_strip(self, strip: Strip) -> None: ...

    def put_thumb(self, row: int, thumb: np.ndarray) -> None: ...


@dataclass
class BandResult:
    """What :func:`band_pass` returns for one band of evidence rows (and, without another sink,
    keeps as it goes: the way back from a cluster)."""

    band: tuple[int, int]
    pair: list[tuple[int, np.ndarray]] = field(default_factory=list)  # (evidence row, block means)
    strips: list[Strip] = field(default_factory=list)
    head: Rows | None = None  # the band's first 2 x halo working rows (when not the scene's)
    tail: Rows | None = None  # its last ones
    thumb: list[tuple[int, np.ndarray]] = field(default_factory=list)  # (row // step, AFTER)

    def put_pair(self, row: int, means: np.ndarray) -> None:
        self.pair.append((row, means))

    def put_strip(self, strip: Strip) -> None:
        self.strips.append(strip)

    def put_thumb(self, row: int, thumb: np.ndarray) -> None:
        self.thumb.append((row, thumb))


def typing_names(model: ChangeModel) -> tuple[str, ...]:
    """The typing evidence kept for the pixels that may change (the structure change first:
    where snow is found, it is taken out on weak edges)."""
    bands = model.bands
    if "red" in bands and "nir" in bands:
        return ("structure", "brightness", "ndvi_before", "ndvi_after")
    return ("structure", "brightness")


def _strip(
    model: ChangeModel, b: np.ndarray, a: np.ndarray, obs: np.ndarray, row: int, core: slice
) -> Strip:
    """Pass 1 on the ``core`` rows of a window of working rows (``row``: the core's first row in
    the scene). The window holds the core and :attr:`Layout.halo` rows on each side (fewer at the
    scene's edges)."""
    es = model.evidence_step
    every = bool(obs.all())
    bc, ac, oc = b[:, core], a[:, core], obs[core]
    spec2 = spectral_evidence(model, bc, ac, oc, every)
    gbn, gan, ds = (x[core] for x in structure_evidence(model, b, a, obs, every))
    damp_registration_noise(spec2, gbn, gan, model.registration_noise)
    score = combine_score(model, ds, spec2)
    del spec2
    weak = np.maximum(gbn, gan) < STRONG_EDGE
    flags = oc.astype(np.uint8)
    flags[~weak] |= STRONG
    means = np.full((GRAD_MEANS, oc.shape[0] // es, oc.shape[1] // es), np.nan, np.float32)
    means[:EVIDENCE_MEANS] = evidence_means(model, gbn, gan)
    del gbn, gan
    means[SCORE_SUM] = block_mean(np.where(oc, score, np.float32(0)), es)
    # the score where snow is taken out, on blocks that may be snow (see SceneChange.prepare)
    vis = visible_indices(model.bands)
    b_e, a_e = block_mean(bc, es), block_mean(ac, es)  # band by band: b_e[vis] is theirs
    z_e = standardised_residuals(b_e, a_e, list(model.fits))  # NaN: in no tail
    white_a, white_b = whitening_candidates(z_e, b_e[vis], a_e[vis])
    white = None
    if white_a.any() or white_b.any():
        white = combine_score(model, np.where(weak, np.float32(0), ds), None)
        means[WHITE_SUM] = block_mean(np.where(oc, white, np.float32(0)), es)
    # only pixels whose own score reaches the single-pixel cut can change (decide_pixels)
    may = oc & ~(score < np.float32(model.pixel_cut))
    index = np.flatnonzero(may) + row * oc.shape[1]
    layers = typing_layers(model, bc[:, may], ac[:, may], oc[may], every)
    layers["structure"] = ds[may]
    values = np.stack([layers[k] for k in typing_names(model)]).astype(np.float32, copy=False)
    return Strip(row, score, flags, means, index, values, white)


def band_pass(
    model: ChangeModel,
    layout: Layout,
    read: RowReader,
    band: tuple[int, int],
    thumb_step: int = 0,
    sink: Sink | None = None,
) -> BandResult:
    """Pass 1 on the evidence rows ``band``: each input row read once, in chunks, top to bottom.
    The rows within :attr:`Layout.halo` of a band edge inside the scene are left to
    :meth:`SceneChange.add` (the band returns its edge rows for that)."""
    g, es = layout.g, layout.es
    hw = layout.halo
    he = layout.evidence_shape[0]
    first, last = band[0] == 0, band[1] == he
    out = BandResult(band)
    put: Sink = out if sink is None else sink
    w0, w1 = band[0] * es, band[1] * es
    done = w0 if first else w0 + hw  # next working row to score
    stop = w1 if last else w1 - hw
    buf: Rows | None = None
    buf_row = w0
    step = layout.chunk()
    for k0 in range(band[0], band[1], step):
        k1 = min(band[1], k0 + step)
        r0, r1 = layout.input_rows(k0, k1)
        before, after = read(r0, r1)
        work = to_work(before, after, model.bands, g, g * es)
        if work.obs.shape != ((k1 - k0) * es, layout.work_shape[1]):
            raise AssertionError(f"working rows {work.obs.shape} of evidence rows {k0}:{k1}")
        obs_f = work.obs.astype(np.float32)
        pair = [
            block_mean(work.before, es),
            block_mean(work.after, es),
            block_mean(obs_f, es)[None],
        ]
        put.put_pair(k0, np.concatenate(pair))
        if thumb_step:
            t0 = -(-r0 // thumb_step) * thumb_step
            if t0 < r1:
                thumb = after.data[:, t0 - r0 :: thumb_step, ::thumb_step].copy()
                put.put_thumb(t0 // thumb_step, thumb)
        rows = (work.before, work.after, work.obs)
        buf = rows if buf is None else _cat(buf, rows)
        if not first and out.head is None:
            out.head = _copy(_take(buf, 0, 2 * hw))
        avail = k1 * es
        target = min(stop, avail if k1 == he else avail - hw)
        if target > done:
            lo, hi = max(buf_row, done - hw), min(avail, target + hw)
            b, a, o = _take(buf, lo - buf_row, hi - buf_row)
            put.put_strip(_strip(model, b, a, o, done, slice(done - lo, target - lo)))
            done = target
        keep = max(w0, done - hw) - buf_row
        if not last:
            keep = min(keep, w1 - 2 * hw - buf_row)
        if keep > 0:
            buf = _take(buf, keep, None)
            buf_row += keep
    if not last:
        assert buf is not None and buf_row <= w1 - 2 * hw
        out.tail = _copy(_take(buf, w1 - 2 * hw - buf_row, None))
    return out


def _cat(x: Rows, y: Rows) -> Rows:
    return (
        np.concatenate([x[0], y[0]], axis=1),
        np.concatenate([x[1], y[1]], axis=1),
        np.concatenate([x[2], y[2]], axis=0),
    )


def _take(x: Rows, r0: int, r1: int | None) -> Rows:
    return x[0][:, r0:r1], x[1][:, r0:r1], x[2][r0:r1]


def _copy(x: Rows) -> Rows:
    return x[0].copy(), x[1].copy(), x[2].copy()


def _layer(shape: tuple[int, ...], dtype: type, spill: Path | None) -> np.ndarray:
    if spill is None:
        return np.empty(shape, dtype)
    with tempfile.NamedTemporaryFile(dir=spill, prefix=".layer-", suffix=".bin") as fh:
        return np.memmap(fh.name, dtype=dtype, mode="w+", shape=shape)  # unlinked, still mapped


@dataclass
class Evidence:
    """The evidence grid of the whole scene (see :meth:`SceneChange.prepare`)."""

    num: np.ndarray  # smoothed sums of the score (observable, cloud-free pixels)
    den: np.ndarray  # ... and of their count
    cloudy: np.ndarray  # cloud or cloud shadow on either date
    white: np.ndarray  # snow or frost on one date (its colour is not evidence)


class SceneChange:
    """The two-pass change stage of one scene: :meth:`add` each band's pass 1, :meth:`prepare`
    the evidence grid, then :meth:`tile` any output window."""

    def __init__(
        self,
        model: ChangeModel,
        grid: Grid,
        spill_dir: Path | None = None,
        thumb: np.ndarray | None = None,
    ) -> None:
        self.model = model
        self.grid = grid
        self.layout = lay = Layout.of(model, grid)
        hw, ww = lay.work_shape
        he, we = lay.evidence_shape
        spill = None
        if 5 * hw * ww > LAYER_BUDGET:
            spill = spill_dir if spill_dir is not None else Path(tempfile.gettempdir())
        self.spilled = spill is not None
        self._spill = spill
        self.score = _layer((hw, ww), np.float32, spill)
        self.flags = _layer((hw, ww), np.uint8, spill)
        self.white: np.ndarray | None = None  # made when a band finds snow candidates
        self.thumb = thumb  # AFTER every thumb_step pixels, filled as the bands read it
        self.lock = threading.Lock()
        nb = len(model.bands)
        self.pair = np.full((2 * nb + 1, he, we), np.nan, np.float32)
        self.means = np.full((GRAD_MEANS, he, we), np.nan, np.float32)
        self.edges: dict[int, Rows] = {}  # band edge working row -> rows around it
        self.picks: list[tuple[np.ndarray, np.ndarray]] = []
        self.index = np.zeros(0, np.int64)
        self.values = np.zeros((len(typing_names(model)), 0), np.float32)
        self.evidence: Evidence | None = None

    def bands(self, n: int) -> list[tuple[int, int]]:
        return self.layout.bands(n)

    def add(self, res: BandResult) -> None:
        """Take in one band's pass 1 (what it did not put here already); once both bands of an
        edge are in, score the rows there."""
        for k0, p in res.pair:
            self.put_pair(k0, p)
        for s in res.strips:
            self.put_strip(s)
        for row, t in res.thumb:
            self.put_thumb(row, t)
        hw = self.layout.halo
        for row, rows, top in ((res.band[0], res.head, False), (res.band[1], res.tail, True)):
            if rows is None:
                continue
            w = row * self.layout.es
            with self.lock:
                other = self.edges.pop(w, None)
                if other is None:
                    self.edges[w] = rows
                    continue
            pair = _cat(rows, other) if top else _cat(other, rows)
            self.put_strip(_strip(self.model, *pair, w - hw, slice(hw, 3 * hw)))

    def put_pair(self, row: int, means: np.ndarray) -> None:
        self.pair[:, row : row + means.shape[1]] = means

    def put_thumb(self, row: int, thumb: np.ndarray) -> None:
        if self.thumb is not None:
            self.thumb[:, row : row + thumb.shape[1]] = thumb

    def put_strip(self, s: Strip) -> None:
        """Store a strip's layers (any thread: strips do not overlap)."""
        es = self.layout.es
        n = s.score.shape[0]
        rows = slice(s.row, s.row + n)
        self.score[rows] = s.score
        self.flags[rows] = s.flags
        self.means[:, s.row // es : (s.row + n) // es] = s.means
        if s.white is not None:
            with self.lock:
                if self.white is None:
                    self.white = _layer(self.score.shape, np.float32, self._spill)
            self.white[rows] = s.white
        self.picks.append((s.index, s.values))

    def prepare(self, threads: int = 1) -> None:
        """The evidence grid of the whole scene, from the block means the bands returned (its
        independent parts on ``threads`` threads: the same result)."""
        if self.edges:
            raise ValueError(f"band edges at working rows {sorted(self.edges)} lack a neighbour")
        model = self.model
        if self.picks:
            self.index = np.concatenate([p[0] for p in self.picks])
            self.values = np.concatenate([p[1] for p in self.picks], axis=1)
            order = np.argsort(self.index, kind="stable")
            self.index, self.values = self.index[order], self.values[:, order]
            self.picks = []
        nb = len(model.bands)
        b_e, a_e, den = self.pair[:nb], self.pair[nb : 2 * nb], self.pair[2 * nb].copy()
        white, cloud_b, cloud_a = evidence_grid(
            model, b_e, a_e, list(self.means[:EVIDENCE_MEANS]), threads
        )
        cloudy = cloud_b | cloud_a
        if np.isnan(self.means[WHITE_SUM][white]).any():
            raise AssertionError("snow on a block pass 1 did not take for a snow candidate")
        num = np.where(white, self.means[WHITE_SUM], self.means[SCORE_SUM])
        num[cloudy] = 0
        den[cloudy] = 0
        s = model.smooth_px / model.step
        num, den = concurrently(lambda: smooth(num, s), lambda: smooth(den, s), threads)
        self.evidence = Evidence(num, den, cloudy, white)
        self.pair = self.means = np.zeros((0, 0, 0), np.float32)

    def tile(
        self, row: int, col: int, height: int, width: int, areas: bool = True
    ) -> tuple[np.ndarray, np.ndarray, list[ChangeArea]]:
        """Mask (uint8) and magnitude (float32) of an input-pixel window, and its change areas
        (cut at the window's border)."""
        ev = self.evidence
        if ev is None:
            raise ValueError("prepare() first")
        model, lay = self.model, self.layout
        g, es = lay.g, lay.es
        r, c = row + lay.top, col + lay.left
        i0, i1 = r // g, -(-(r + height) // g)
        j0, j1 = c // g, -(-(c + width) // g)
        # the opening reaches 2 r + 1 working pixels
        reach = 2 * model.open_radius_px + 1 if model.open_radius_px else 0
        hw, ww = lay.work_shape
        a0, a1 = max(0, i0 - reach), min(hw, i1 + reach)
        b0, b1 = max(0, j0 - reach), min(ww, j1 + reach)
        win = (slice(a0, a1), slice(b0, b1))
        score = np.array(self.score[win])
        flags = np.asarray(self.flags[win])
        obs = (flags & OBS).astype(bool)
        cloudy = _on_work(ev.cloudy, es, a0, a1, b0, b1)
        white = _on_work(ev.white, es, a0, a1, b0, b1)
        obs_final = obs & ~cloudy
        if white.any():
            if self.white is None:
                raise AssertionError("snow where pass 1 saw no snow candidate")
            score[white] = self.white[win][white]
        num = bilinear_part(ev.num, es, win[0], win[1])
        den = bilinear_part(ev.den, es, win[0], win[1])
        magnitude, _, mask = decide_pixels(model, score, obs_final, num, den)
        core = (slice(i0 - a0, i1 - a0), slice(j0 - b0, j1 - b0))
        crop = (slice(r % g, r % g + height), slice(c % g, c % g + width))
        mask_px = repeat_blocks(mask[core], g)[crop]
        magnitude_px = repeat_blocks(magnitude[core], g)[crop]
        found: list[ChangeArea] = []
        # every working pixel of the core keeps at least one input pixel after the crop
        box = set_box(mask[core] == 1) if areas else None
        if box is not None:
            # the typing evidence is read only inside the changed pixels' box: the areas read
            # nothing else of it
            (w0, w1), (v0, v1) = (box[0].start, box[0].stop), (box[1].start, box[1].stop)
            layers = self._typing(i0 + w0, i0 + w1, j0 + v0, j0 + v1)
            if white.any():  # snow: only the strong edges' structure change is evidence
                weak = (flags[core][box] & STRONG) == 0
                layers["structure"][white[core][box] & weak] = 0
            top, left = w0 * g - crop[0].start, v0 * g - crop[1].start  # the box's first pixel
            p0, p1 = max(0, top), min(height, w1 * g - crop[0].start)
            q0, q1 = max(0, left), min(width, v1 * g - crop[1].start)

            def on_tile(v: np.ndarray) -> np.ndarray:
                out = np.zeros((height, width), np.float32)
                up = repeat_blocks(v, g)
                out[p0:p1, q0:q1] = up[p0 - top : p1 - top, q0 - left : q1 - left]
                return out

            res = ChangeResult(
                magnitude_px,
                mask_px,
                model.threshold,
                mask_px != NOT_OBSERVABLE,
                {},
                {k: on_tile(v) for k, v in layers.items()},
            )
            found = change_areas_on(res, self.grid.crop(row, col, height, width), window=True)
        return mask_px, magnitude_px, found

    def _typing(self, i0: int, i1: int, j0: int, j1: int) -> dict[str, np.ndarray]:
        """The typing evidence of working rows [i0, i1), columns [j0, j1): that of the pixels
        that may change, 0 elsewhere."""
        ww = self.layout.work_shape[1]
        lo, hi = np.searchsorted(self.index, [i0 * ww, i1 * ww])
        rr, cc = np.divmod(self.index[lo:hi], ww)
        sel = (cc >= j0) & (cc < j1)
        out = np.zeros((self.values.shape[0], i1 - i0, j1 - j0), np.float32)
        out[:, rr[sel] - i0, cc[sel] - j0] = self.values[:, lo:hi][:, sel]
        return dict(zip(typing_names(self.model), out, strict=True))


def _on_work(x: np.ndarray, es: int, a0: int, a1: int, b0: int, b1: int) -> np.ndarray:
    """Evidence-grid ``x`` on working rows [a0, a1), columns [b0, b1)."""
    part = x[a0 // es : -(-a1 // es), b0 // es : -(-b1 // es)]
    return repeat_blocks(part, es)[a0 % es : a0 % es + a1 - a0, b0 % es : b0 % es + b1 - b0]


def run_passes(
    change: SceneChange,
    results: Iterable[BandResult],
    on_band: Callable[[BandResult], None] | None = None,
) -> None:
    """Pass 1 from band results (in any order), then the evidence grid."""
    for res in results:
        change.add(res)
        if on_band is not None:
            on_band(res)
    change.prepare()


def detect_changes_passes(
    model: ChangeModel, before: Scene, after: Scene, bands: int = 2, tile: int = 1024
) -> ChangeResult:
    """Apply a fitted model to a pair in memory with the two passes (``bands`` bands of rows,
    output windows of ``tile``): the one-piece result, as :func:`band_pass` reads it."""
    rows, cols = before.grid.shape
    change = SceneChange(model, before.grid)

    def read(r0: int, r1: int) -> tuple[Scene, Scene]:
        return before.crop(r0, 0, r1 - r0, cols), after.crop(r0, 0, r1 - r0, cols)

    run_passes(change, (band_pass(model, change.layout, read, b) for b in change.bands(bands)))
    magnitude = np.empty((rows, cols), np.float32)
    mask = np.empty((rows, cols), np.uint8)
    for r0 in range(0, rows, tile):
        for c0 in range(0, cols, tile):
            h, w = min(tile, rows - r0), min(tile, cols - c0)
            m, mag, _ = change.tile(r0, c0, h, w, areas=False)
            mask[r0 : r0 + h, c0 : c0 + w] = m
            magnitude[r0 : r0 + h, c0 : c0 + w] = mag
    observable = mask != NOT_OBSERVABLE
    stats = dict(model.stats)
    stats.update(
        {
            "changed_fraction": float((mask == 1).sum() / max(1, int(observable.sum()))),
            "observable_fraction": float(observable.mean()),
            "layers_spilled": change.spilled,
        }
    )
    return ChangeResult(magnitude, mask, model.threshold, observable, stats)
