"""`sohae-watch coregister REFERENCE TARGET --out FILE`: co-register TARGET onto REFERENCE's grid."""

from __future__ import annotations

from pathlib import Path

import click

from sohae_watch.cli.options import OutputPath, echo, nodata_option


@click.command("coregister")
@click.argument("reference", type=click.Path(path_type=Path))
@click.argument("target", type=click.Path(path_type=Path))
@click.option(
    "--out", "out", required=True, type=OutputPath(dir_okay=False, path_type=Path),
    help="Corrected TARGET as a GeoTIFF on REFERENCE's grid.",
)  # fmt: skip
@click.option(
    "--points", "points", type=OutputPath(dir_okay=False, path_type=Path),
    help="Write the tie-point table as GeoJSON.",
)  # fmt: skip
@click.option(
    "--mode", type=click.Choice(["auto", "global", "local"]), default="auto", show_default=True,
    help="global: one translation; local: affine from the tie points; auto: by evidence.",
)  # fmt: skip
@nodata_option
@click.pass_context
def command(
    ctx: click.Context,
    reference: Path,
    target: Path,
    out: Path,
    points: Path | None,
    mode: str,
    nodata: float | None,
) -> None:
    """Co-register TARGET to REFERENCE (sub-pixel) and write the corrected TARGET.

    Prints the shift (contract convention: a feature at (c, r) in REFERENCE is at
    (c + x, r + y) in TARGET), the reliability and a summary of the tie points.
    """
    from sohae_watch.coreg_files import coregister_files, native_grid, summary_lines
    from sohae_watch.errors import InputError, ProcessingError
    from sohae_watch.ingest import open_acquisition

    if out.exists() and out.is_dir():
        raise InputError(f"{out}: is a folder; give a file name for --out")
    if out.suffix.lower() not in (".tif", ".tiff"):
        raise InputError(f"{out}: the corrected target is a GeoTIFF; give --out a .tif name")
    if not out.parent.exists():
        raise InputError(f"{out.parent}: folder does not exist; create it or change --out")
    _check_outputs(reference, target, out, points)
    result = coregister_files(
        reference,
        target,
        out,
        nodata=nodata,
        points_out=points,
        mode=mode,  # type: ignore[arg-type]
    )
    grid = native_grid(open_acquisition(reference, nodata=nodata, dated=False))
    for line in summary_lines(result, grid):
        echo(ctx, line)
    if points is not None:
        echo(ctx, f"tie points written to {points}")
    if result.status == "failed":
        why = (
            "no measuring window lies where both have valid pixels: an overlap this small or "
            "this sparse cannot be measured; try the smaller image as REFERENCE (the output "
            "is on its grid)"
            if result.n_points == 0
            else "no common texture"
        )
        raise ProcessingError(
            f"{target}: co-registration to {reference} failed ({why}); {out} was not written"
        )
    if result.status == "low-confidence":
        click.echo("warning: low-confidence co-registration; check the tie points", err=True)
    echo(ctx, f"corrected target written to {out}")


def _check_outputs(reference: Path, target: Path, out: Path, points: Path | None) -> None:
    """Refuse, before any work, outputs that would overwrite an input or each other, or that
    cannot be written (one line naming the option)."""
    from sohae_watch.errors import InputError
    from sohae_watch.outputs import check_writable, outside_imagery

    inputs = [p.resolve() for p in (reference, target)]
    folders = [p for p in (reference, target) if p.is_dir()]
    for option, path in (("--out", out), ("--points", points)):
        if path is None:
            continue
        if path.resolve() in inputs:
            raise InputError(f"{path}: {option} is an input of this run; give another path")
        check_writable(path, option)
        if folders:
            outside_imagery(path, folders)
    if points is not None and points.resolve() == out.resolve():
        raise InputError(f"{points}: --points and --out are the same file; give two paths")
