"""`sohae-watch watch --site SITE --imagery DIR`: the cron entry."""

from __future__ import annotations

from pathlib import Path

import click

from sohae_watch.cli.options import echo, nodata_option, site_option


@click.command("watch")
@site_option
@click.option(
    "--imagery",
    "imagery",
    type=click.Path(path_type=Path),
    help="Imagery folder, or a local STAC catalog / ItemCollection JSON (default: the site's imagery:).",
)
@click.option(
    "--state",
    "state",
    type=click.Path(dir_okay=False, path_type=Path),
    help="History database (default: the site's state:, else ~/.local/share/sohae-watch/<site>.db).",
)
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Reports folder: OUT/<before>_<after>/ per pair, OUT/timeline.png "
    "(default: <site>-reports beside the database).",
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
    "--exit-code", "exit_code", is_flag=True, help="Exit 3 when this run recorded new events."
)
@click.pass_context
def command(
    ctx: click.Context,
    site: str | None,
    imagery: Path | None,
    state: Path | None,
    out: Path | None,
    nodata: float | None,
    wait: float,
    exit_code: bool,
) -> None:
    """Process acquisitions not yet processed, record events in the history, write reports."""
    from sohae_watch.site import load_site
    from sohae_watch.state import LockBusy
    from sohae_watch.watch import resolve_state_path, run_watch

    if not site:
        raise click.UsageError("watch needs --site SITE (a site file or name)")
    site_obj = load_site(site)
    folder = imagery if imagery is not None else site_obj.imagery
    if folder is None:
        raise click.UsageError("give --imagery DIR (the site file has no imagery:)")
    db_path = resolve_state_path(site_obj, state)
    out_dir = out if out is not None else db_path.parent / f"{site_obj.id}-reports"
    try:
        summary = run_watch(site_obj, folder, db_path, out_dir, nodata=nodata, lock_wait=wait)
    except LockBusy as exc:
        click.echo(str(exc), err=True)
        return
    if summary.skipped_files or summary.failed:
        # each was logged as a warning with its reason; one line for the summary
        echo(
            ctx,
            f"{len(summary.skipped_files)} unreadable file(s) skipped, {len(summary.failed)} "
            "date(s) set aside; both are retried on the next run.",
        )
    if summary.nothing_new:
        latest = max(summary.usable).isoformat() if summary.usable else "none"
        echo(
            ctx,
            f"Nothing new: {summary.acquisitions} acquisition(s) in {folder} already processed "
            f"(latest usable {latest}); {len(summary.events)} event(s) in the history {db_path}.",
        )
        return
    for note in summary.notes:
        echo(ctx, note[:1].upper() + note[1:] + ".")
    for b, a in summary.pairs_computed:
        echo(ctx, f"Compared {b.isoformat()} with {a.isoformat()}: {out_dir / f'{b}_{a}'}/")
    for e in summary.withdrawn_events:
        echo(ctx, f"Withdrawn (history corrected): {e.sentence}")
    for e in summary.new_events:
        echo(ctx, f"New event: {e.sentence} (confidence {e.confidence:.2f})")
    if not summary.new_events:
        echo(ctx, "No new events.")
    echo(
        ctx,
        f"History: {len(summary.events)} event(s) in {db_path}; timeline {summary.timeline}",
    )
    if exit_code and summary.new_events:
        ctx.exit(3)
