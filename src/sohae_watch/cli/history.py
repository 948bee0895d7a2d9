"""`sohae-watch history --site SITE`: the site's dated events, oldest first."""

from __future__ import annotations

from pathlib import Path

import click

from sohae_watch.cli.options import site_option, state_option


@click.command("history")
@site_option
@state_option
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Sentences with confidence, or the contract's JSON array.",
)
def command(site: str | None, state: Path | None, fmt: str) -> None:
    """Print the site's events as dated sentences (or JSON), oldest first."""
    from sohae_watch.history import format_events, load_events
    from sohae_watch.site import load_site
    from sohae_watch.state import bind_site, connect
    from sohae_watch.watch import resolve_state_path

    if not site:
        raise click.UsageError("history needs --site SITE (a site file or name)")
    site_obj = load_site(site)
    db_path = resolve_state_path(site_obj, state)
    con = connect(db_path, create=False)
    try:
        bind_site(con, site_obj.id, db_path)
        events = load_events(con)
    finally:
        con.close()
    click.echo(format_events(events, "json" if fmt == "json" else "text", site_name=site_obj.name))
