"""The cloud stage's edge alignment (sohae_watch.cloud.edge_alignment) on arrays with known edges."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from sohae_watch.cloud import ALIGNED, STRONG_EDGE, alignment_parts, edge_alignment


def _gradients(seed: int) -> np.ndarray:
    """A date's gradient in units of its typical one: weak ground texture and strong straight
    edges (roads) every 40 px."""
    rng = np.random.default_rng(seed)
    g = np.abs(rng.normal(0.0, 0.8, (200, 200))).astype(np.float32)
    g[:, ::40] = 6.0
    g[::40, :] = 6.0
    return g


def test_edges_that_show_through_align_and_billows_do_not() -> None:
    other = _gradients(1)
    # the same ground on this date (its edges through snow or haze): they stand out
    seen = _gradients(2)
    on, edges = alignment_parts(seen, other)
    a = edge_alignment(on, edges, seen, px_m=0.5)
    assert np.nanmin(a) > ALIGNED and np.nanmedian(a) > STRONG_EDGE
    # a cloud's billows, ten times the ground's texture everywhere, unrelated to the roads
    rng = np.random.default_rng(3)
    billows = 10 * np.abs(ndi.gaussian_filter(rng.normal(size=(200, 200)), 2)) / 0.14
    on, edges = alignment_parts(billows.astype(np.float32), other)
    a = edge_alignment(on, edges, billows.astype(np.float32), px_m=0.5)
    assert 0.8 < np.nanmedian(a) < 1.2 and np.nanmax(a) < ALIGNED


def test_no_strong_edge_nearby_is_no_evidence() -> None:
    flat = np.full((120, 120), 0.5, np.float32)
    on, edges = alignment_parts(flat, flat)
    assert np.isnan(edge_alignment(on, edges, flat, px_m=0.5)).all()
