"""One exception tree: the CLI turns every known failure into one clear line."""

from __future__ import annotations


class SohaeError(Exception):
    """Base class of every error sohae-watch raises on purpose (exit status 1)."""

    exit_code = 1


class InputError(SohaeError):
    """Bad usage or bad input: unreadable raster, no overlap, no date, bad site file (exit 2).

    The message names the file and says how to fix it, in one line.
    """

    exit_code = 2


class ProcessingError(SohaeError):
    """A processing stage could not complete for a reason other than its inputs (exit 1)."""

    exit_code = 1


class DeviceFullError(ProcessingError):
    """No space left where an output or the history goes (exit 1): a run over many pairs stops
    at the first, as every later one would fail the same way."""
