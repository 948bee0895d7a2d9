"""Options defined once and shared between commands."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

site_option = click.option(
    "--site",
    "site",
    metavar="SITE",
    help="Site file path, or a name (configs/<name>.yaml or a shipped site).",
)
imagery_option = click.option(
    "--imagery",
    "imagery",
    type=click.Path(file_okay=False, path_type=str),
    help="Imagery folder to look dates up in (default: the site file's imagery:).",
)
nodata_option = click.option(
    "--nodata",
    "nodata",
    type=float,
    default=None,
    help="Nodata value for rasters that do not declare one (e.g. 0 for Sentinel-2 L1C).",
)


def echo(ctx: click.Context, message: str, *, min_verbosity: int = 0) -> None:
    """Print to stdout unless quieter than ``min_verbosity`` (-q silences normal output)."""
    if (ctx.obj or {}).get("verbosity", 0) >= min_verbosity:
        click.echo(message)


def progress_reporter(ctx: click.Context, label: str) -> Callable[[int, int], None] | None:
    """A progress callback drawing a bar on a terminal; None when quiet or not on a TTY."""
    import sys

    if (ctx.obj or {}).get("verbosity", 0) < 0 or not sys.stderr.isatty():
        return None
    state: dict[str, Any] = {}

    def update(done: int, total: int) -> None:
        bar = state.get("bar")
        if bar is None:
            bar = click.progressbar(length=total, label=label, file=sys.stderr, show_pos=True)
            bar.__enter__()
            state["bar"] = bar
        bar.update(done - bar.pos)
        if done >= total:
            bar.__exit__(None, None, None)

    return update
