"""The `sohae-watch` group: verbosity, version, and the one place errors become exit statuses."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import warnings
from typing import Any

import click
from rasterio.errors import NotGeoreferencedWarning

from sohae_watch import __version__
from sohae_watch.errors import SohaeError
from sohae_watch.parallel import one_heap

log = logging.getLogger("sohae_watch")


class SohaeGroup(click.Group):
    """Turns known failures into one line and an exit status (2 input, 1 other); a traceback only with -v."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SohaeError as exc:
            if ctx.obj and ctx.obj.get("verbosity", 0) > 0:
                log.debug("traceback", exc_info=True)
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except BrokenPipeError:
            # the reader of stdout went away (`... | head`): the outputs are written; stop quietly,
            # and keep the interpreter's last flush from failing on the closed pipe too
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            ctx.exit(1)
        except MemoryError:
            click.echo("Error: out of memory; give a smaller --aoi or free memory", err=True)
            ctx.exit(1)
        except Exception as exc:
            if ctx.obj and ctx.obj.get("verbosity", 0) > 0:
                raise
            click.echo(
                f"Error: unexpected failure: {type(exc).__name__}: {exc} (run with -v for details)",
                err=True,
            )
            ctx.exit(1)


@click.group(cls=SohaeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", "verbose", count=True, help="More log output (repeatable).")
@click.option("-q", "--quiet", "quiet", count=True, help="Less output (repeatable).")
@click.version_option(__version__, "--version", prog_name="sohae-watch")
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: int) -> None:
    """Satellite-imagery change detection for named structures at monitored sites."""
    one_heap()  # before any thread starts
    if threading.current_thread() is threading.main_thread():
        # a terminated run (kill, timeout, a cron job's time limit) unwinds like an interrupted
        # one: temporary outputs removed, the previous ones left as they were
        signal.signal(signal.SIGTERM, _terminate)
    verbosity = verbose - quiet
    if verbosity <= 0:
        # GDAL's own threads (compression on all cores) report through GDAL's default handler,
        # which prints "ERROR 1: ..." on stderr: a harmless complaint of a temporary file now
        # and then, beside a correct output. The failures that matter raise; -v shows these.
        os.environ.setdefault("CPL_LOG", os.devnull)
    ctx.ensure_object(dict)
    ctx.obj["verbosity"] = verbosity
    # -q silences progress and the normal output, not warnings (a skipped corrupt file must
    # reach a cron job's log); -qq silences those too
    level = max(10, 30 - 10 * verbosity) if verbosity != -1 else logging.WARNING
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(
            "%(levelname)s: %(message)s"
            if verbosity <= 0
            else "%(asctime)s %(name)s %(levelname)s: %(message)s"
        )
    )
    root = logging.getLogger("sohae_watch")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    # rasterio logs GDAL's messages; without a handler Python printed them bare on stderr (a
    # full device gave a dozen "_tiffWriteProc: No space left on device." lines before the
    # one-line error). They reach the terminal with -v, formatted; the errors raise regardless.
    rio = logging.getLogger("rasterio")
    rio.handlers[:] = [handler] if verbosity > 0 else [logging.NullHandler()]
    rio.setLevel(logging.WARNING if verbosity < 2 else logging.DEBUG)
    rio.propagate = False
    # rasterio's rasterize/shapes, called from two threads at once, now and then warn that their
    # in-memory dataset has no geotransform although one is given (the same masks come out as
    # with one thread): noise on an analyst's terminal, not a fault of the input. Opening a file
    # that has none warns too, before the one-line error that names the file and the fix.
    warnings.filterwarnings(
        "ignore", category=NotGeoreferencedWarning, module=r"rasterio(\.features)?$"
    )


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _register() -> None:
    from sohae_watch.cli import coregister, diff, evaluate, history, ingest, samples, watch

    for mod in (diff, watch, history, ingest, coregister, evaluate, samples):
        cli.add_command(mod.command)
    cli.add_command(ingest.command, name="catalog")


_register()
