"""`eval`: mask scores against a truth mask, computed by hand on a small case."""

import json
from pathlib import Path

import numpy as np
from affine import Affine
from click.testing import CliRunner

from conftest import write_raster
from sohae_watch.cli.main import cli
from sohae_watch.evaluate import mask_scores


def test_mask_scores_by_hand() -> None:
    truth = np.array([[1, 1, 0, 0], [0, 0, 0, 255]], np.uint8)
    pred = np.array([[1, 0, 1, 0], [0, 255, 0, 1]], np.uint8)
    s = mask_scores(pred, truth)
    # known pixels: 7; tp=1, fp=1, fn=1, tn=4
    assert s["precision"] == 0.5 and s["recall"] == 0.5 and s["f1"] == 0.5
    assert abs(s["iou"] - 1 / 3) < 1e-9
    assert abs(s["false_alarm_rate"] - 1 / 7) < 1e-9
    assert abs(s["not_observable"] - 1 / 7) < 1e-9
    po, pe = 5 / 7, (2 * 2 + 5 * 5) / 49
    assert abs(s["kappa"] - (po - pe) / (1 - pe)) < 1e-9


def test_eval_command_on_masks(tmp_path: Path) -> None:
    truth = np.zeros((20, 20), np.uint8)
    truth[5:10, 5:10] = 1
    pred = np.zeros((20, 20), np.uint8)
    pred[5:10, 5:15] = 1
    write_raster(tmp_path / "truth.tif", truth, nodata=255)
    (tmp_path / "out").mkdir()
    write_raster(tmp_path / "out" / "change_mask.tif", pred, nodata=255)
    res = CliRunner().invoke(
        cli,
        [
            "eval",
            str(tmp_path / "out"),
            str(tmp_path / "truth.tif"),
            "--json",
            str(tmp_path / "s.json"),
        ],
    )
    assert res.exit_code == 0, res.output
    scores = json.loads((tmp_path / "s.json").read_text())["mask"]
    assert scores["recall"] == 1.0 and scores["precision"] == 0.5
    assert "F1 0.667" in res.output


def test_eval_missing_truth_is_exit_2(tmp_path: Path) -> None:
    res = CliRunner().invoke(cli, ["eval", str(tmp_path), str(tmp_path / "truth.json")])
    assert res.exit_code == 2 and "truth.json" in res.output


def test_eval_of_a_mask_that_misses_the_truth_is_exit_2(tmp_path: Path) -> None:
    """A prediction of another place (another site's diff) is an input error, not an F1 of 0."""
    truth = np.zeros((20, 20), np.uint8)
    write_raster(tmp_path / "truth.tif", truth, nodata=255)
    (tmp_path / "out").mkdir()
    far = Affine(0.5, 0, 600_000.0, 0, -0.5, 4_000_000.0)
    write_raster(tmp_path / "out" / "change_mask.tif", truth, nodata=255, transform=far)
    res = CliRunner().invoke(cli, ["eval", str(tmp_path / "out"), str(tmp_path / "truth.tif")])
    assert res.exit_code == 2 and "does not overlap" in res.output
    # one not observable everywhere over the truth is scored (all 255: nothing found)
    write_raster(tmp_path / "out" / "change_mask.tif", np.full((20, 20), 255, np.uint8), nodata=255)
    res = CliRunner().invoke(cli, ["eval", str(tmp_path / "out"), str(tmp_path / "truth.tif")])
    assert res.exit_code == 0 and "not observable 1.000" in res.output


def _masks(tmp_path: Path, truth: np.ndarray) -> list[str]:
    pred = np.zeros((20, 20), np.uint8)
    pred[5:10, 5:10] = 1
    (tmp_path / "out").mkdir(exist_ok=True)
    write_raster(tmp_path / "out" / "change_mask.tif", pred, nodata=255)
    write_raster(tmp_path / "truth.tif", truth)
    return ["eval", str(tmp_path / "out"), str(tmp_path / "truth.tif")]


def test_a_truth_mask_is_0_1_255_or_refused(tmp_path: Path) -> None:
    """Coded otherwise (0 / 7, 0 / 0.5), its change would read as no change everywhere and score
    F1 0 without a word; 0.0 / 1.0 in floats is the same mask as 0 / 1."""
    truth = np.zeros((20, 20), np.uint8)
    truth[5:10, 5:10] = 7
    res = CliRunner().invoke(cli, _masks(tmp_path, truth))
    assert res.exit_code == 2 and "truth.tif: truth mask values must be 0" in res.output
    assert "found 7" in res.output
    res = CliRunner().invoke(cli, _masks(tmp_path, (truth > 0).astype(np.float32)))
    assert res.exit_code == 0 and "F1 1.000" in res.output, res.output


def test_a_truth_mask_without_georeference_is_exit_2(tmp_path: Path) -> None:
    import warnings

    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    args = _masks(tmp_path, np.zeros((20, 20), np.uint8))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(
            tmp_path / "truth.tif", "w", driver="GTiff", width=20, height=20, count=1, dtype="uint8"
        ) as ds:
            ds.write(np.zeros((1, 20, 20), np.uint8))
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 2 and "truth.tif: the truth mask has no georeference" in res.output


def test_reports_are_scored_only_against_the_truth_of_their_site(tmp_path: Path) -> None:
    pair = {"before": {"date": "2019-02-16"}, "after": {"date": "2019-03-02"}}
    call = {"id": "pad", "status": "appeared", "event": "built"}
    truth = {
        "site": "sohae",
        "pairs": [
            {
                "before": "2019-02-16",
                "after": "2019-03-02",
                "structures": {"pad": {"status": "appeared", "event": "built"}},
            }
        ],
    }
    (tmp_path / "truth.json").write_text(json.dumps(truth))
    out = tmp_path / "out"
    out.mkdir()

    def run(site: str, structures: list[dict[str, str]], *extra: str) -> tuple[int, str]:
        report = {"site": {"id": site}, **pair, "structures": structures}
        (out / "report.json").write_text(json.dumps(report))
        res = CliRunner().invoke(cli, ["eval", str(out), str(tmp_path / "truth.json"), *extra])
        return res.exit_code, res.output

    code, text = run("sohae", [call])
    assert code == 0 and "structure status: 1/1 correct (accuracy 1.000)" in text
    code, text = run("elsewhere", [call])
    assert code == 2 and "reports are of site elsewhere" in text and "of site sohae" in text
    code, text = run("sohae", [{**call, "id": "gantry"}])
    assert code == 2 and "no structure of the reports is in" in text
    # a --json path that cannot be written is refused before anything is scored
    (tmp_path / "scores").mkdir()
    code, text = run("sohae", [call], "--json", str(tmp_path / "scores"))
    assert code == 2 and "scores: is a folder" in text and "correct" not in text
