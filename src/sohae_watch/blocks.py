"""Blocks on a lattice anchored to the CRS: the change stage's coarser grids.

A coarser grid whose pixels are ``s`` x ``s`` blocks of the input pixels, with block borders on
multiples of ``s`` pixels from the CRS origin, cuts every window of a scene into the same blocks
as the whole scene. These functions reduce a window to such blocks (mean, all), pad it to whole
blocks and bring block values back to the pixels (nearest, bilinear).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from sohae_watch.grid import Grid

__all__ = [
    "bilinear_part",
    "bilinear_up",
    "block_all",
    "block_mean",
    "blocks_of_window",
    "lattice_offset",
    "padded",
    "repeat_blocks",
]


def lattice_offset(grid: Grid, step: int) -> tuple[int, int]:
    """Rows and columns of the window's first lattice block that lie before the window."""
    if step == 1:
        return 0, 0
    t = grid.transform
    col = math.floor(t.c / t.a + 0.5) if t.a else 0
    row = math.floor(t.f / t.e + 0.5) if t.e else 0
    return row % step, col % step


def padded(x: np.ndarray, top: int, left: int, rows: int, cols: int, fill: Any) -> np.ndarray:
    """``x`` placed at ``top``, ``left`` in an array of ``rows`` x ``cols`` filled with ``fill``."""
    h, w = x.shape[-2:]
    if top == 0 and left == 0 and (h, w) == (rows, cols):
        return x
    out = np.full((*x.shape[:-2], rows, cols), fill, dtype=x.dtype)
    out[..., top : top + h, left : left + w] = x
    return out


def block_mean(x: np.ndarray, s: int) -> np.ndarray:
    """Means of ``s`` x ``s`` blocks over the last two axes (multiples of ``s``); NaN spreads."""
    if s == 1:
        return x
    acc = block_sum(x, s)
    acc *= np.float32(1.0 / (s * s))
    return acc


def block_sum(x: np.ndarray, s: int) -> np.ndarray:
    """Float32 sums of ``s`` x ``s`` blocks over the last two axes (multiples of ``s``, ``s`` at
    least 2): within each row of a block left to right, then those row sums top to bottom."""
    # the first two columns (rows) of each block added into a new array, the others onto it: one
    # pass fewer than copying the first; the same sums in the same order
    cols = np.add(x[..., 0::s], x[..., 1::s], dtype=np.float32)
    for j in range(2, s):
        cols += x[..., j::s]
    acc = np.add(cols[..., 0::s, :], cols[..., 1::s, :])
    for i in range(2, s):
        acc += cols[..., i::s, :]
    return acc


def block_all(m: np.ndarray, s: int) -> np.ndarray:
    """Whether every pixel of each ``s`` x ``s`` block is set (last two axes, multiples of ``s``)."""
    if s == 1:
        return m
    cols = np.logical_and(m[..., 0::s], m[..., 1::s])
    for j in range(2, s):
        cols &= m[..., j::s]
    acc = np.logical_and(cols[..., 0::s, :], cols[..., 1::s, :])
    for i in range(2, s):
        acc &= cols[..., i::s, :]
    return acc


def blocks_of_window(
    x: np.ndarray, s: int, top: int, left: int, fill: Any, reduce: Any
) -> np.ndarray:
    """``reduce`` (block mean or all) of the ``s`` x ``s`` blocks of the lattice that covers a
    window whose first pixel is ``top``, ``left`` pixels into its first block; blocks the window
    covers only in part hold ``fill``. No copy of the window is made."""
    h, w = x.shape[-2:]
    nr, nc = -(-(top + h) // s), -(-(left + w) // s)
    r0, c0 = (s - top) % s, (s - left) % s  # first whole block in the window
    fr, fc = (h - r0) // s, (w - c0) // s  # whole blocks
    i0, j0 = (1 if top else 0), (1 if left else 0)
    inner = x[..., r0 : r0 + fr * s, c0 : c0 + fc * s]
    if (nr, nc) == (fr, fc):
        return np.asarray(reduce(inner, s))
    out = np.full((*x.shape[:-2], nr, nc), fill, dtype=np.float32 if fill is not False else bool)
    out[..., i0 : i0 + fr, j0 : j0 + fc] = reduce(inner, s)
    return out


def repeat_blocks(x: np.ndarray, s: int) -> np.ndarray:
    """Each pixel as an ``s`` x ``s`` block (nearest neighbour up-sampling)."""
    if s == 1:
        return x
    h, w = x.shape[-2:]
    out = np.empty((*x.shape[:-2], h * s, w * s), dtype=x.dtype)
    blocks = out.reshape(*x.shape[:-2], h, s, w * s)
    if s * x.dtype.itemsize <= 8:
        # a block's row fits in a machine word: the first row of each block written column by
        # column, then copied down, is 2x (float32 by 2, masks) faster than np.repeat
        cols = blocks.reshape(*x.shape[:-2], h, s, w, s)
        for j in range(s):
            cols[..., 0, :, j] = x
    else:
        blocks[..., 0, :] = np.repeat(x, s, axis=-1)
    blocks[..., 1:, :] = blocks[..., :1, :]
    return out


def _linear_taps(n: int, s: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pos = (np.arange(n * s) + 0.5) / s - 0.5
    i0 = np.floor(pos).astype(np.intp)
    f = (pos - i0).astype(np.float32)
    return np.clip(i0, 0, n - 1), np.clip(i0 + 1, 0, n - 1), f


def bilinear_up(x: np.ndarray, s: int) -> np.ndarray:
    """Bilinear up-sampling by ``s`` (pixel centres on the block lattice, edges held)."""
    if s == 1:
        return x
    h, w = x.shape
    r0, r1, fr = _linear_taps(h, s)
    c0, c1, fc = _linear_taps(w, s)
    rows = x[r0] * (1 - fr)[:, None] + x[r1] * fr[:, None]
    out = rows[:, c0] * (1 - fc)
    out += rows[:, c1] * fc
    return out.astype(np.float32, copy=False)


def bilinear_part(x: np.ndarray, s: int, rows: slice, cols: slice) -> np.ndarray:
    """``bilinear_up(x, s)[rows, cols]`` (plain slices), without up-sampling the rest of ``x``."""
    if s == 1:
        return x[rows, cols]
    h, w = x.shape
    r0, r1, fr = (t[rows] for t in _linear_taps(h, s))
    c0, c1, fc = (t[cols] for t in _linear_taps(w, s))
    lo, hi = int(c0.min(initial=0)), int(c1.max(initial=0)) + 1
    x = x[:, lo:hi]
    c0, c1 = c0 - lo, c1 - lo
    part = x[r0] * (1 - fr)[:, None] + x[r1] * fr[:, None]
    out = part[:, c0] * (1 - fc)
    out += part[:, c1] * fc
    return out.astype(np.float32, copy=False)
