"""`sohae-watch ingest --site SITE --imagery DIR`: list the acquisitions of an imagery folder."""

from __future__ import annotations

import json

import click

from sohae_watch.cli.options import echo, imagery_option, nodata_option, site_option


@click.command("ingest")
@site_option
@imagery_option
@nodata_option
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@click.pass_context
def command(
    ctx: click.Context, site: str | None, imagery: str | None, nodata: float | None, fmt: str
) -> None:
    """List acquisitions: date, files, CRS, resolution, AOI coverage and usable fraction."""
    from sohae_watch.errors import InputError
    from sohae_watch.inventory import describe_catalog
    from sohae_watch.site import load_site

    site_obj = load_site(site) if site else None
    folder = imagery or (site_obj.imagery if site_obj else None)
    if folder is None:
        raise InputError("no imagery folder: give --imagery DIR (or a site file with imagery:)")
    rows, skipped = describe_catalog(folder, site_obj, nodata=nodata)
    if fmt == "json":
        click.echo(json.dumps({"acquisitions": rows, "skipped": skipped}, indent=2))
        return
    if not rows:
        echo(ctx, f"{folder}: no acquisitions")
    for r in rows:
        cov = (
            ""
            if r["aoi_coverage"] is None
            else f"  AOI coverage {r['aoi_coverage']:.0%}  usable {r['usable_fraction']:.0%}"
        )
        echo(
            ctx,
            f"{r['date']}  {len(r['files'])} file(s)  {r['crs']}  {r['resolution_m']:.3g} m{cov}",
        )
        for f in r["files"]:
            echo(ctx, f"    {f}")
    for s in skipped:
        echo(ctx, f"skipped {s['file']}: {s['reason']}")
