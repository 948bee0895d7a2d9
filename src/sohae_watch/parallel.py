"""This process's threads: how many a local diff uses, two pieces of work at once (GDAL and
numpy release the GIL while they decode and compute on large arrays), one malloc heap for all of
them and its freed memory given back between stages. The executors that spread a diff's bands
or a watch's sites live in :mod:`sohae_watch.distributed`."""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

A = TypeVar("A")
B = TypeVar("B")


def default_workers() -> int:
    """Threads for a local diff: both cores of a 2-core machine, no more (I/O bound beyond)."""
    return min(2, os.cpu_count() or 1)


def concurrently(first: Callable[[], A], second: Callable[[], B], threads: int) -> tuple[A, B]:
    """``(first(), second())``: ``second`` in a thread of its own while ``first`` runs in this
    one when ``threads`` > 1, one after the other otherwise. Each must be safe to run beside the
    other (e.g. readers of two different datasets)."""
    if threads < 2:
        return first(), second()
    with ThreadPoolExecutor(1) as pool:
        other = pool.submit(second)
        return first(), other.result()


M_ARENA_MAX = -8  # glibc's mallopt parameter: the most heaps ("arenas") malloc keeps


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL("libc.so.6")


def one_heap() -> None:
    """Let every thread of this process allocate from one malloc heap (glibc; a no-op elsewhere).

    glibc gives each thread that allocates a heap of its own, and a heap keeps the memory its
    thread freed for that thread: with the change stage's two reading threads, the benchmark
    diff peaked ~70 MiB higher (936-973 against 879-888 MiB, three runs each, same speed).
    Call before the threads start."""
    with contextlib.suppress(OSError, AttributeError):
        _libc().mallopt(M_ARENA_MAX, 1)


def give_back() -> None:
    """Return freed heap memory to the system (glibc keeps it: GDAL's blocks of closed datasets
    stayed resident through the next stage). A no-op elsewhere."""
    with contextlib.suppress(OSError, AttributeError):
        _libc().malloc_trim(0)
