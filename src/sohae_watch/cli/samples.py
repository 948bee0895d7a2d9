"""`sohae-watch samples DIR`: render the synthetic Sohae scenes (or a random scene) with truth."""

from __future__ import annotations

from pathlib import Path

import click

from sohae_watch.cli.options import OutputPath, echo


@click.command("samples")
@click.argument(
    "out_dir",
    type=OutputPath(file_okay=False, path_type=Path),
    default=Path("data/samples/sohae"),
)
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option(
    "--scene",
    "random_scene",
    is_flag=True,
    help="A random scene with its own site file instead of Sohae.",
)
@click.option(
    "--shade-roofs",
    is_flag=True,
    help="Let taller structures' shadows fall on lower roofs too (not by default).",
)
@click.option(
    "--off-nadir",
    "off_nadir_max",
    type=click.FloatRange(0.0, 60.0),
    default=0.0,
    show_default=True,
    help="Degrees: view each date from a random off-nadir angle up to this and a random azimuth "
    "(tall structures lean; 0, the default, views every date at nadir).",
)
@click.pass_context
def command(
    ctx: click.Context,
    out_dir: Path,
    seed: int,
    random_scene: bool,
    shade_roofs: bool,
    off_nadir_max: float,
) -> None:
    """Generate synthetic imagery with exact ground truth (truth.json) in OUT_DIR (default
    data/samples/sohae)."""
    from sohae_watch.outputs import check_writable
    from sohae_watch.samples import generate_scene, generate_sohae_samples

    check_writable(out_dir, "OUT_DIR")
    truth = (
        generate_scene(out_dir, seed, shade_roofs=shade_roofs, off_nadir_max=off_nadir_max)
        if random_scene
        else generate_sohae_samples(
            out_dir, seed=seed, shade_roofs=shade_roofs, off_nadir_max=off_nadir_max
        )
    )
    echo(ctx, f"Samples written to {out_dir}/ (truth: {truth})")
