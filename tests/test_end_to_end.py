"""End to end on the shipped Sohae samples: every contract output, and agreement with truth.json."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from click.testing import CliRunner

from conftest import ROOT, SHARED, textured, write_raster
from sohae_watch.cli.main import cli
from sohae_watch.report import UNMATCHED_ACTIVITY, UNMATCHED_CALLS, UNMATCHED_SENTENCE

PAIRS = [
    ("2018-07-20", "2018-08-03"),
    ("2018-08-03", "2019-02-16"),
    ("2019-02-16", "2019-03-02"),
    ("2019-03-02", "2019-03-06"),
    ("2018-07-20", "2019-03-02"),
]


@pytest.fixture(scope="module")
def outputs(samples: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Path]:
    """Run `diff` once per truth pair (module-scoped: the slow part of the suite)."""
    root = tmp_path_factory.mktemp("e2e")
    runner = CliRunner()
    out = {}
    for before, after in PAIRS:
        d = root / f"{before}_{after}"
        res = runner.invoke(
            cli,
            [
                "diff",
                before,
                after,
                "--site",
                str(ROOT / "configs" / "sohae.yaml"),
                "--imagery",
                str(samples / "imagery"),
                "--out",
                str(d),
            ],
        )
        assert res.exit_code == 0, res.output
        out[(before, after)] = d
    return out


def test_demo_pair_finds_the_rebuilt_launch_pad(outputs: dict[tuple[str, str], Path]) -> None:
    report = json.loads((outputs[("2019-02-16", "2019-03-02")] / "report.json").read_text())
    assert "Launch pad structures rebuilt between Feb 16 and Mar 2, 2019." in report["summary"]


def test_a_mask_that_cannot_be_trusted_is_reported(outputs: dict[tuple[str, str], Path]) -> None:
    """Snow on most of Feb 16's ground and on part of Mar 2's: the two dates share too little
    ground that kept its brightness for the normalisation to match them, and the report says
    the mask cannot be trusted rather than letting its emptiness read as "nothing changed".
    The summer pair says nothing of the kind: nearly all of its textured ground looks alike
    on both dates."""
    blind = json.loads((outputs[("2019-02-16", "2019-03-02")] / "report.json").read_text())
    assert blind["change"]["radiometry_matched"] is False
    assert blind["change"]["mask_trusted"] is False
    assert " ".join((UNMATCHED_SENTENCE, UNMATCHED_CALLS, UNMATCHED_ACTIVITY)) in blind["summary"]
    clear = json.loads((outputs[("2018-07-20", "2018-08-03")] / "report.json").read_text())
    assert clear["change"]["radiometry_matched"] is True
    assert clear["change"]["structure_agreement"] > 0.9
    assert clear["change"]["mask_trusted"] is True
    assert not any("cannot be trusted" in s for s in clear["summary"])


def test_no_new_activity_where_the_truth_has_none(
    outputs: dict[tuple[str, str], Path], samples: Path
) -> None:
    """Snow arriving (Aug 3 -> Feb 16: most of the open ground white) and leaving are no
    structure come or gone: no pair reports new activity the truth does not list."""
    truth = json.loads((samples / "truth.json").read_text())
    for pair in truth["pairs"]:
        key = (pair["before"], pair["after"])
        if key in outputs and not pair["new_activity"]:
            report = json.loads((outputs[key] / "report.json").read_text())
            assert report["new_activity"] == [], key


def test_reports_say_a_call_can_rest_on_no_changed_pixel(
    outputs: dict[tuple[str, str], Path],
) -> None:
    """A structure's status and its footprint's share of the change mask can disagree (on the
    demo pair, under snow, the launch pad is rebuilt with 0 % changed): both reports say what
    the columns beside the call measure."""
    out = outputs[("2019-02-16", "2019-03-02")]
    for name in ("report.md", "report.html"):
        text = (out / name).read_text()
        assert "changed: share of the footprint the change mask flags" in text
        assert "no pixel of the mask over its threshold" in text


@pytest.mark.parametrize("pair", PAIRS, ids=["_".join(p) for p in PAIRS])
def test_every_structure_agrees_with_truth(
    outputs: dict[tuple[str, str], Path], samples: Path, pair: tuple[str, str]
) -> None:
    truth = json.loads((samples / "truth.json").read_text())
    want = next(p for p in truth["pairs"] if (p["before"], p["after"]) == pair)
    report = json.loads((outputs[pair] / "report.json").read_text())
    got = {s["id"]: (s["status"], s["event"]) for s in report["structures"]}
    expected = {k: (v["status"], v["event"]) for k, v in want["structures"].items()}
    assert got == expected


def test_eval_scores_every_pair(outputs: dict[tuple[str, str], Path], samples: Path) -> None:
    root = next(iter(outputs.values())).parent
    res = CliRunner().invoke(
        cli, ["eval", str(root), str(samples / "truth.json"), "--json", str(root / "scores.json")]
    )
    assert res.exit_code == 0, res.output
    scores = json.loads((root / "scores.json").read_text())
    assert scores["structures"] == 6 * len(PAIRS)
    assert scores["status_accuracy"] == 1.0
    assert "structure status: 30/30 correct" in res.output


def test_shift_is_measured(outputs: dict[tuple[str, str], Path], samples: Path) -> None:
    truth = json.loads((samples / "truth.json").read_text())
    for pair, d in outputs.items():
        want = next(p for p in truth["pairs"] if (p["before"], p["after"]) == pair)
        c = json.loads((d / "report.json").read_text())["coregistration"]
        assert c["status"] in ("ok", "low-confidence")
        assert abs(c["shift_x_px"] - want["shift_x_px"]) < 0.3, (pair, c)
        assert abs(c["shift_y_px"] - want["shift_y_px"]) < 0.3, (pair, c)


def test_cloud_over_structure_is_not_observable(
    outputs: dict[tuple[str, str], Path], samples: Path
) -> None:
    """The cloud drawn over the processing building on Mar 6 comes out as 255, not change."""
    from sohae_watch.site import load_site

    site = load_site(ROOT / "configs" / "sohae.yaml")
    grid = site.grid()
    s = next(s for s in site.structures if s.id == "processing-building")
    fp = grid.rasterize(grid.geometry_from_lonlat(s.geometry.__geo_interface__))
    with rasterio.open(outputs[("2019-03-02", "2019-03-06")] / "change_mask.tif") as ds:
        mask = ds.read(1)
    assert (mask[fp] == 255).mean() > 0.8
    assert (mask[fp] == 1).mean() < 0.05


@pytest.mark.skipif(
    not (SHARED / "bench" / "check_outputs.py").is_file(), reason="../shared/bench not present"
)
def test_contract_checker_passes(outputs: dict[tuple[str, str], Path]) -> None:
    for d in outputs.values():
        res = subprocess.run(
            [sys.executable, str(SHARED / "bench" / "check_outputs.py"), str(d)],
            capture_output=True,
            text=True,
        )
        assert res.returncode == 0, res.stdout


def test_outputs_replace_previous_ones(
    outputs: dict[tuple[str, str], Path], samples: Path, tmp_path: Path
) -> None:
    out = tmp_path / "o"
    out.mkdir()
    (out / "report.json").write_text("stale")
    (out / "keep.txt").write_text("mine")
    res = CliRunner().invoke(
        cli,
        [
            "-q",
            "diff",
            "2019-02-16",
            "2019-03-02",
            "--site",
            str(ROOT / "configs" / "sohae.yaml"),
            "--imagery",
            str(samples / "imagery"),
            "--out",
            str(out),
            "--exit-code",
        ],
    )
    assert res.exit_code == 3
    assert res.output == ""
    assert json.loads((out / "report.json").read_text())["schema_version"] == 1
    assert (out / "keep.txt").read_text() == "mine"
    assert not [p for p in out.iterdir() if p.name.startswith(".sohae-")]


def test_rebuilt_from_an_earlier_acquisition(samples: Path, tmp_path: Path) -> None:
    """Without `baseline: present`, the launch pad is still `rebuilt`: the catalog's 2018-07-20
    image shows it standing."""
    site = (ROOT / "configs" / "sohae.yaml").read_text()
    assert "baseline: present" in site
    path = tmp_path / "sohae-nobaseline.yaml"
    path.write_text(
        site.replace("baseline: present", "baseline: absent").replace(
            "../data/samples/sohae/imagery", str(samples / "imagery")
        )
    )
    out = tmp_path / "o"
    res = CliRunner().invoke(
        cli, ["diff", "2019-02-16", "2019-03-02", "--site", str(path), "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    pad = next(
        s
        for s in json.loads((out / "report.json").read_text())["structures"]
        if s["id"] == "launch-pad"
    )
    assert (pad["status"], pad["event"]) == ("appeared", "rebuilt")


def test_a_georeference_error_of_tens_of_metres_is_measured(samples: Path, tmp_path: Path) -> None:
    """The Mar 6 image delivered 60 m east and 36 m south of where it lies (120 and 72 px, past
    the coarse windows' reach on this 500 m site): the shift is measured and every structure
    is called as on the true pair, none that only moved reported dismantled."""
    shutil.copy(samples / "imagery" / "sohae_20190306T023000.tif", tmp_path / "2019-03-06.tif")
    with rasterio.open(tmp_path / "2019-03-06.tif", "r+") as ds:
        t = ds.transform
        ds.transform = Affine(t.a, t.b, t.c + 60.0, t.d, t.e, t.f - 36.0)
    out = tmp_path / "o"
    before = samples / "imagery" / "sohae_c.tif"
    res = CliRunner().invoke(
        cli,
        [
            "diff",
            str(before),
            str(tmp_path / "2019-03-06.tif"),
            "--site",
            str(ROOT / "configs" / "sohae.yaml"),
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    truth = json.loads((samples / "truth.json").read_text())
    want = next(p for p in truth["pairs"] if (p["before"], p["after"]) == PAIRS[3])
    report = json.loads((out / "report.json").read_text())
    c = report["coregistration"]
    assert c["status"] == "ok"
    assert abs(c["shift_x_px"] - (want["shift_x_px"] + 120)) < 0.3, c
    assert abs(c["shift_y_px"] - (want["shift_y_px"] + 72)) < 0.3, c
    got = {s["id"]: (s["status"], s["event"]) for s in report["structures"]}
    assert got == {k: (v["status"], v["event"]) for k, v in want["structures"].items()}


def test_rasters_are_cloud_optimized_with_nothing_left_behind(
    outputs: dict[tuple[str, str], Path],
) -> None:
    """The Cloud-Optimized copies, made beside the classification, replaced the rasters. They
    say what their band holds and which dates they compare (in gdalinfo, QGIS)."""
    for (before, after), d in outputs.items():
        for name in ("change_mask.tif", "change_magnitude.tif"):
            with rasterio.open(d / name) as src:
                assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG", d / name
                assert (src.tags()["BEFORE_DATE"], src.tags()["AFTER_DATE"]) == (before, after)
                assert src.descriptions[0].startswith("change")
                if name == "change_mask.tif":
                    assert "255 not observable" in src.descriptions[0]
        assert not [p.name for p in d.iterdir() if p.name.startswith(".")]


def test_a_failing_classification_discards_the_copies(
    samples: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error while the Cloud-Optimized copies are being made is raised as it was, and the
    copies are deleted: the rasters in the working folder stay as written."""
    from sohae_watch import pipeline
    from sohae_watch.ingest import open_acquisition

    made: list[Path] = []
    copy = pipeline.TileOutputs.cog_copies

    def copies(self: pipeline.TileOutputs) -> list[tuple[Path, Path]]:
        done = copy(self)
        made.extend(c for c, _ in done)
        return done

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("classification broke")

    monkeypatch.setattr(pipeline.TileOutputs, "cog_copies", copies)
    monkeypatch.setattr(pipeline, "_classify", broken)
    imagery = samples / "imagery"
    before = open_acquisition("2019-02-16", imagery=imagery)
    after = open_acquisition("2019-03-02", imagery=imagery)
    with pytest.raises(RuntimeError, match="classification broke"):
        pipeline.compute_diff(before, after, workdir=tmp_path)
    assert made and not any(p.exists() for p in made)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["change_magnitude.tif", "change_mask.tif"]
    with rasterio.open(tmp_path / "change_mask.tif") as src:
        assert "LAYOUT" not in src.tags(ns="IMAGE_STRUCTURE")  # as written, not replaced


@pytest.mark.parametrize("bands", [1, 2, 3])
def test_any_number_of_bands_is_diffed(tmp_path: Path, bands: int) -> None:
    """A panchromatic, a two-band (red, green: no colour chip possible) and an RGB pair run end to
    end: a roof that came is flagged where it stands, and the report's chips are drawn (a
    two-band pair in grey, from its first visible band)."""
    t = Affine(0.5, 0, 500000.0, 0, -0.5, 4390000.0)
    before = textured((256, 256), seed=3, bands=bands).astype(np.float32)
    after = before * 1.02 + 15
    after[:, 100:140, 90:150] = 9000.0  # a bright roof, 20 m x 30 m
    paths = []
    for name, data in (("before_2019-01-01.tif", before), ("after_2019-06-01.tif", after)):
        paths.append(str(write_raster(tmp_path / name, data.astype("uint16"), transform=t)))
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, ["-q", "diff", *paths, "--out", str(out)])
    assert res.exit_code == 0, res.output
    with rasterio.open(out / "change_mask.tif") as ds:
        mask = ds.read(1)
    assert (mask[105:135, 95:145] == 1).mean() > 0.9
    assert (mask == 1).mean() < 0.1
    assert "data:image/png;base64," in (out / "report.html").read_text()


def test_a_pair_with_fewer_bands_on_one_date_says_what_it_compared(tmp_path: Path) -> None:
    """A 4-band BEFORE against a 1-band AFTER is compared on the band they share; that went
    unsaid, and an analyst took the mask for a four-band comparison."""
    t = Affine(0.5, 0, 500000.0, 0, -0.5, 4390000.0)
    before = textured((128, 128), seed=3, bands=4).astype("uint16")
    paths = [
        str(write_raster(tmp_path / "before_2019-01-01.tif", before, transform=t)),
        str(write_raster(tmp_path / "after_2019-06-01.tif", before[:1], transform=t)),
    ]
    res = CliRunner().invoke(cli, ["-q", "diff", *paths, "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert "BEFORE has bands red, green, blue, nir and AFTER red: compared on red only" in (
        res.output
    )


@pytest.mark.parametrize("pair", PAIRS[1:3], ids=["_".join(p) for p in PAIRS[1:3]])
def test_roofs_in_a_towers_shadow_are_not_modifications(
    tmp_path_factory: pytest.TempPathFactory, pair: tuple[str, str]
) -> None:
    """The samples rendered with taller parts' shadows on lower roofs (`samples --shade-roofs`),
    as real imagery has them. From August to February and across the demo pair the test stand's
    tower shadow moves over its lower part; a cue that weighed its cells' brightness called it
    modified there (0.98, 0.75). Every call must still be the truth's."""
    from sohae_watch.samples import generate_sohae_samples

    root = tmp_path_factory.getbasetemp() / "shaded-samples"
    if not (root / "truth.json").is_file():
        generate_sohae_samples(root, shade_roofs=True)
    out = tmp_path_factory.mktemp("shaded")
    site = str(ROOT / "configs" / "sohae.yaml")
    args = ["-q", "diff", *pair, "--site", site, "--imagery", str(root / "imagery")]
    res = CliRunner().invoke(cli, [*args, "--out", str(out)])
    assert res.exit_code == 0, res.output
    truth = json.loads((root / "truth.json").read_text())
    assert truth["roofs_shaded"] is True
    want = next(p for p in truth["pairs"] if (p["before"], p["after"]) == pair)
    report = json.loads((out / "report.json").read_text())
    got = {s["id"]: s["status"] for s in report["structures"]}
    assert got == {k: v["status"] for k, v in want["structures"].items()}
