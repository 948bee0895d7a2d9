"""`sohae-watch eval PREDICTION_DIR TRUTH`: score outputs against ground truth."""

from __future__ import annotations

import json
from pathlib import Path

import click

from sohae_watch.cli.options import OutputPath, echo
from sohae_watch.errors import InputError


def _mask_line(m: dict[str, float]) -> str:
    return (
        f"precision {m['precision']:.3f}  recall {m['recall']:.3f}  F1 {m['f1']:.3f}  IoU {m['iou']:.3f}  "
        f"kappa {m['kappa']:.3f}  false alarms {m['false_alarm_rate']:.4f}  not observable {m['not_observable']:.3f}"
    )


@click.command("eval")
@click.argument("prediction_dir", type=click.Path(path_type=Path))
@click.argument("truth", type=click.Path(path_type=Path))
@click.option(
    "--json", "json_out", type=OutputPath(path_type=Path), help="Also write the scores as JSON."
)
@click.pass_context
def command(ctx: click.Context, prediction_dir: Path, truth: Path, json_out: Path | None) -> None:
    """Score a change mask against a truth mask, or reports against a truth.json."""
    from sohae_watch.evaluate import evaluate
    from sohae_watch.outputs import atomic_write_text

    if json_out is not None:
        _check_writable(json_out)
    scores = evaluate(prediction_dir, truth)
    if "mask" in scores:
        echo(ctx, "change mask: " + _mask_line(scores["mask"]))
    for pair in scores.get("pairs", []):
        echo(ctx, f"{pair['before']} -> {pair['after']}")
        for s in pair["structures"]:
            mark = "ok   " if s["correct"] else "WRONG"
            echo(ctx, f"  {mark} {s['id']:<24} predicted {s['predicted']:<10} truth {s['truth']}")
        if "mask" in pair:
            echo(ctx, "  change mask: " + _mask_line(pair["mask"]))
    if "pairs" in scores:
        echo(
            ctx,
            f"structure status: {scores['status_correct']}/{scores['structures']} correct "
            f"(accuracy {scores['status_accuracy']:.3f})",
        )
    if json_out is not None:
        try:
            atomic_write_text(json_out, json.dumps(scores, indent=2, allow_nan=False))
        except OSError as exc:
            raise InputError(
                f"{json_out}: cannot write the scores ({exc.strerror}); give another --json path"
            ) from exc


def _check_writable(path: Path) -> None:
    """Refuse a --json path that cannot be written before anything is scored (nothing made)."""
    from sohae_watch.outputs import check_writable

    if path.is_dir():
        raise InputError(f"{path}: is a folder; give --json a file path")
    check_writable(path, "--json")
