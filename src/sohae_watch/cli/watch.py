"""`sohae-watch watch --site SITE --imagery DIR` (or `--sites DIR_OR_LIST`): the cron entry."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from sohae_watch.cli.options import (
    OutputPath,
    cluster_executor,
    cluster_options,
    echo,
    nodata_option,
    progress_reporter,
    site_option,
    state_option,
)

if TYPE_CHECKING:
    from sohae_watch.distributed import SiteRun
    from sohae_watch.site import Site
    from sohae_watch.watch import WatchSummary


@click.command("watch")
@site_option
@click.option(
    "--sites",
    "sites",
    metavar="DIR_OR_LIST",
    help="Many sites: a folder of site files (*.yaml), or a comma-separated list of site files "
    "or names; each uses its file's imagery: and state:.",
)
@click.option(
    "--imagery",
    "imagery",
    type=click.Path(path_type=Path),
    help="Imagery folder, or a local STAC catalog / ItemCollection JSON (default: the site's imagery:).",
)
@state_option
@click.option(
    "--out",
    "out",
    type=OutputPath(file_okay=False, path_type=Path),
    help="Reports folder: OUT/<before>_<after>/ per pair, OUT/timeline.png "
    "(default: <site>-reports beside the database); with --sites, OUT/<site id>/ per site.",
)
@nodata_option
@click.option(
    "--wait",
    "wait",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Seconds to wait for another run's lock before giving up (exit 0, nothing done).",
)
@click.option(
    "--exit-code",
    "exit_code",
    is_flag=True,
    help="Exit 3 when this run changed the history: new events, or recorded ones withdrawn.",
)
@click.option(
    "--forget",
    "forget",
    multiple=True,
    metavar="YYYY-MM-DD",
    help="Drop an acquisition no longer in the imagery folder from the history (its events are "
    "withdrawn); repeatable. Removed imagery otherwise keeps its results.",
)
@cluster_options
@click.pass_context
def command(
    ctx: click.Context,
    site: str | None,
    sites: str | None,
    imagery: Path | None,
    state: Path | None,
    out: Path | None,
    nodata: float | None,
    wait: float,
    exit_code: bool,
    forget: tuple[str, ...],
    scheduler: str | None,
    dask_workers: int | None,
) -> None:
    """Process acquisitions not yet processed, record events in the history, write reports.

    With --sites, or on a Dask cluster (--scheduler / --workers), each site's watch is one task;
    every site keeps its own history database and lock.
    """
    from sohae_watch.dates import parse_date
    from sohae_watch.distributed import SiteRun, watch_sites
    from sohae_watch.errors import InputError
    from sohae_watch.site import load_site, site_imagery
    from sohae_watch.state import LockBusy
    from sohae_watch.watch import resolve_state_path, run_watch

    if bool(site) == bool(sites):
        raise click.UsageError("watch needs --site SITE or --sites DIR_OR_LIST (one of them)")
    bad_sites = 0
    if forget and (sites or scheduler is not None or dask_workers is not None):
        raise click.UsageError(
            "--forget is for one site's history, run here: give it with --site, without a cluster"
        )
    try:
        forget_dates = [parse_date(d) for d in forget]
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--forget") from exc
    if site:
        site_obj = load_site(site)
        folder = imagery if imagery is not None else site_imagery(site_obj)
        db_path = resolve_state_path(site_obj, state)
        out_dir = out if out is not None else db_path.parent / f"{site_obj.id}-reports"
        runs = [SiteRun(site_obj, Path(folder), db_path, out_dir, nodata, wait)]
    else:
        assert sites is not None
        if imagery is not None or state is not None:
            raise click.UsageError(
                "with --sites each site uses its file's imagery: and state:; "
                "leave out --imagery and --state"
            )
        loaded: list[Site] = []
        for spec in _site_specs(sites):
            # a broken site file stops its own site only: the others' watch goes on
            try:
                loaded.append(load_site(spec))
            except InputError as exc:
                click.echo(f"Error: {exc}", err=True)
                bad_sites += 1
        if not loaded:
            ctx.exit(2)
        runs = _site_runs(loaded, out, nodata, wait)
    if scheduler is None and dask_workers is None and len(runs) == 1:
        run = runs[0]
        try:
            summary = run_watch(
                run.site,
                run.imagery,
                run.db_path,
                run.out_dir,
                nodata=nodata,
                lock_wait=wait,
                forget=forget_dates,
                progress=progress_reporter(ctx, "acquisitions"),
            )
        except LockBusy as exc:
            click.echo(str(exc), err=True)
            return
        new = _report(ctx, summary, run.imagery, "")
        if bad_sites:
            ctx.exit(2)
        if exit_code and new:
            ctx.exit(3)
        return
    with cluster_executor(ctx, scheduler, dask_workers) as executor:
        outcomes = watch_sites(runs, executor, progress=progress_reporter(ctx, "sites"))
    verbosity = (ctx.obj or {}).get("verbosity", 0)
    failed = 0
    new_events = False
    for o in outcomes:
        indent = "  " if len(outcomes) > 1 else ""
        if len(outcomes) > 1:
            echo(ctx, f"{o.run.site.id} ({o.run.site.name}):")
        if o.busy:
            click.echo(f"{indent}{o.error}", err=True)
        elif o.summary is None:
            click.echo(f"Error: {o.run.site.id}: {o.error}", err=True)
            if o.details and verbosity > 0:
                click.echo(o.details, err=True)
            failed = max(failed, o.exit_code)
        else:
            new_events = _report(ctx, o.summary, o.run.imagery, indent) or new_events
    if failed or bad_sites:
        ctx.exit(max(failed, 2 if bad_sites else 0))
    if exit_code and new_events:
        ctx.exit(3)


def _site_specs(sites: str) -> list[str]:
    """The site files of a folder (*.yaml, *.yml), else the items of a comma-separated list."""
    folder = Path(sites)
    if folder.is_dir():
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".yaml", ".yml"))
        if not files:
            raise click.UsageError(
                f"{folder}: no site file (*.yaml) in this folder; give --sites the folder that "
                "holds them, or a comma-separated list of site files"
            )
        return [str(p) for p in files]
    specs = [s.strip() for s in sites.split(",") if s.strip()]
    if not specs:
        raise click.UsageError("--sites: give a folder of site files or a comma-separated list")
    return specs


def _site_runs(
    sites: list[Site], out: Path | None, nodata: float | None, wait: float
) -> list[SiteRun]:
    """One run per site: its imagery:, its state database, reports in OUT/<id>/ (default:
    <id>-reports beside the database)."""
    from sohae_watch.distributed import SiteRun
    from sohae_watch.errors import InputError
    from sohae_watch.watch import resolve_state_path

    runs: list[SiteRun] = []
    seen: dict[object, str] = {}
    for s in sites:
        where = s.path if s.path is not None else s.id
        if s.imagery is None:
            raise InputError(
                f"{where}: no imagery: in the site file; add one (--sites takes each "
                "site's imagery from its file)"
            )
        db_path = resolve_state_path(s, None)
        for key in (s.id, db_path.resolve()):
            if key in seen:
                raise click.UsageError(
                    f"{seen[key]} and {where} share {key}; give each site its own id and state:"
                )
            seen[key] = str(where)
        out_dir = out / s.id if out is not None else db_path.parent / f"{s.id}-reports"
        runs.append(SiteRun(s, Path(s.imagery), db_path, out_dir, nodata, wait))
    return runs


def _report(ctx: click.Context, summary: WatchSummary, folder: Path, indent: str) -> bool:
    """Print what one site's run did; whether it changed the history (events recorded or
    withdrawn)."""
    db_path, out_dir = summary.db_path, summary.out_dir

    def say(message: str) -> None:
        echo(ctx, indent + message)

    if summary.skipped_files or summary.failed:
        # each was logged as a warning with its reason; one line for the summary
        say(
            f"{len(summary.skipped_files)} file(s) skipped and {len(summary.failed)} date(s) set "
            "aside (the warnings say why); they are retried on the next run."
        )
    if summary.nothing_new and summary.acquisitions == 0:
        say(
            f"No acquisition in {folder}: no raster with a date there yet; "
            f"{len(summary.events)} event(s) in the history {db_path}."
        )
        return False
    if summary.nothing_new:
        latest = max(summary.usable).isoformat() if summary.usable else "none"
        say(
            f"Nothing new: {summary.acquisitions} acquisition(s) in {folder} already processed "
            f"(latest usable {latest}); {len(summary.events)} event(s) in the history {db_path}."
        )
        return False
    for note in summary.notes:
        say(note[:1].upper() + note[1:] + ".")
    for b, a in summary.pairs_computed:
        say(f"Compared {b.isoformat()} with {a.isoformat()}: {out_dir / f'{b}_{a}'}/")
    for e in summary.withdrawn_events:
        say(f"Withdrawn (history corrected): {e.sentence}")
    for e in summary.new_events:
        say(f"New event: {e.sentence} (confidence {e.confidence:.2f})")
    if not summary.new_events:
        say("No new events.")
    say(f"History: {len(summary.events)} event(s) in {db_path}; timeline {summary.timeline}")
    return bool(summary.new_events or summary.withdrawn_events)
