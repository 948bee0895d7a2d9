"""Options defined once and shared between commands."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from sohae_watch.distributed import Executor

F = TypeVar("F", bound=Callable[..., Any])


class OutputPath(click.Path):
    """A path to write to: an empty one (which would mean the current folder) is refused."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and not value.strip():
            self.fail("is empty; give a path to write to", param, ctx)
        return super().convert(value, param, ctx)


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
state_option = click.option(
    "--state",
    "state",
    type=OutputPath(dir_okay=False, path_type=Path),
    help="History database (default: the site's state:, else ~/.local/share/sohae-watch/<site>.db).",
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


def cluster_options(f: F) -> F:
    """``--scheduler ADDRESS`` / ``--workers N``: run on a Dask cluster (shared by diff and watch)."""
    f = click.option(
        "--workers",
        "dask_workers",
        type=click.IntRange(min=1),
        default=None,
        help="Start a local Dask cluster of N worker processes (loopback) for this run.",
    )(f)
    f = click.option(
        "--scheduler",
        "scheduler",
        metavar="ADDRESS",
        default=None,
        help="Run on the Dask cluster at ADDRESS (tcp://host:port); its workers must see the "
        "same files at the same paths.",
    )(f)
    return f


@contextmanager
def cluster_executor(
    ctx: click.Context, scheduler: str | None, workers: int | None
) -> Iterator[Executor | None]:
    """A Dask executor for ``--scheduler`` / ``--workers``, closed after the run; None without either."""
    if scheduler is not None and workers is not None:
        raise click.UsageError("give either --scheduler or --workers, not both")
    if scheduler is None and workers is None:
        yield None
        return
    from sohae_watch.distributed import DaskExecutor, dask_client

    verbosity = (ctx.obj or {}).get("verbosity", 0)
    with dask_client(scheduler, workers, log_level=max(10, 30 - 10 * verbosity)) as client:
        yield DaskExecutor(client)
