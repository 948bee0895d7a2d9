"""`sohae-watch diff BEFORE AFTER --out DIR`: the main job."""

from __future__ import annotations

from pathlib import Path

import click

from sohae_watch.cli.options import (
    OutputPath,
    cluster_executor,
    cluster_options,
    echo,
    imagery_option,
    nodata_option,
    progress_reporter,
    site_option,
)


@click.command("diff")
@click.argument("before")
@click.argument("after")
@click.option("--out", "out", required=True, type=OutputPath(path_type=Path), help="Output folder.")
@site_option
@imagery_option
@click.option(
    "--aoi", "aoi", help="Area: a GeoJSON file or minlon,minlat,maxlon,maxlat (without --site)."
)
@nodata_option
@click.option(
    "--exit-code",
    "exit_code",
    is_flag=True,
    help="Exit 3 when a structure changed or new activity was found.",
)
@click.option(
    "--threads",
    "threads",
    type=click.IntRange(min=1),
    default=None,
    help="Tiles processed at once by local threads (default: up to 2 cores).",
)
@cluster_options
@click.pass_context
def command(
    ctx: click.Context,
    before: str,
    after: str,
    out: Path,
    site: str | None,
    imagery: str | None,
    aoi: str | None,
    nodata: float | None,
    exit_code: bool,
    threads: int | None,
    scheduler: str | None,
    dask_workers: int | None,
) -> None:
    """Compare two acquisitions (raster files, tile folders or YYYY-MM-DD dates) and write the reports."""
    from sohae_watch.area import parse_aoi
    from sohae_watch.pipeline import run_diff
    from sohae_watch.site import load_site

    site_obj = load_site(site) if site else None
    aoi_geom = parse_aoi(aoi) if aoi else None
    if site_obj is not None and aoi_geom is not None:
        raise click.UsageError(
            "give either --site or --aoi, not both (the site file holds the AOI)"
        )
    if threads is not None and (scheduler is not None or dask_workers is not None):
        raise click.UsageError("--threads is for local threads; with a Dask cluster leave it out")
    with cluster_executor(ctx, scheduler, dask_workers) as executor:
        result, report = run_diff(
            before,
            after,
            out,
            site=site_obj,
            imagery=imagery,
            aoi=aoi_geom,
            nodata=nodata,
            workers=threads,
            executor=executor,
            progress=progress_reporter(ctx, "tiles"),
        )
    for sentence in report["summary"]:
        echo(ctx, sentence)
    echo(
        ctx,
        f"Outputs written to {out}/ (report.html, report.md, report.json, changes.geojson, change_mask.tif, change_magnitude.tif)",
    )
    changed = any(s.event is not None for s in result.structures) or bool(result.new_activity)
    if site_obj is None:
        changed = bool(result.areas)
    if exit_code and changed:
        ctx.exit(3)
