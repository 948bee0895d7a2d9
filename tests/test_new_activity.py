"""New activity (change outside every listed structure) is reported with its position, area and a
before / after / change chip, on a generated scene where an unlisted building appears."""

from __future__ import annotations

import base64
import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from sohae_watch.agreement import MOSTLY_DIFFERENT
from sohae_watch.cli.main import cli
from sohae_watch.report import DIFFERENT_SENTENCE, UNMATCHED_ACTIVITY
from sohae_watch.samples import generate_scene

SEED = 45  # a generated scene in which an unlisted building appears between its first two dates
PNG = b"\x89PNG\r\n\x1a\n"


def _diff_the_pair(tmp_path: Path) -> tuple[dict[str, Any], Path]:
    """The scene's first pair with new activity in its truth, and the `diff` output folder."""
    truth = json.loads(generate_scene(tmp_path / "scene", SEED).read_text())
    pair = next(p for p in truth["pairs"] if p["new_activity"])
    out = tmp_path / "out"
    site = str(tmp_path / "scene" / "site.yaml")
    res = CliRunner().invoke(
        cli, ["diff", pair["before"], pair["after"], "--site", site, "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    return pair, out


def test_new_activity_has_position_area_and_chips(tmp_path: Path) -> None:
    pair, out = _diff_the_pair(tmp_path)
    report = json.loads((out / "report.json").read_text())
    want = pair["new_activity"][0]

    def metres(a: dict[str, float]) -> float:
        dx = (a["lon"] - want["lon"]) * 111_320 * math.cos(math.radians(want["lat"]))
        return math.hypot(dx, (a["lat"] - want["lat"]) * 110_540)

    found = [a for a in report["new_activity"] if metres(a) < 20.0]
    assert found, (want, report["new_activity"])
    assert found[0]["area_m2"] >= want["area_m2"] / 2
    page = (out / "report.html").read_text()
    md = (out / "report.md").read_text()
    assert "## New activity" in md
    for n, a in enumerate(report["new_activity"]):
        lat = f"{abs(a['lat']):.5f} {'N' if a['lat'] >= 0 else 'S'}"
        assert lat in md and lat in page
        for kind in ("before", "after", "change"):
            m = re.search(
                rf'<img class="chip" data-activity="{n}" data-kind="{kind}" '
                rf'alt="new activity {n + 1} {kind}" src="data:image/png;base64,([^"]+)">',
                page,
            )
            assert m is not None, (n, kind)
            assert base64.b64decode(m.group(1)).startswith(PNG)


def test_no_new_activity_when_the_dates_are_not_matched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same pair with its normalisation taken as not matched (as on a pair with snow over
    most of one date): the change areas stay in changes.geojson, but none is evidence of a
    structure come or gone, so none is reported as new activity, and the summary says why."""
    monkeypatch.setattr("sohae_watch.change.matched", lambda *_: False)
    _, out = _diff_the_pair(tmp_path)
    report = json.loads((out / "report.json").read_text())
    assert report["change"]["radiometry_matched"] is False
    assert report["new_activity"] == []
    assert report["change"]["areas"] > 0
    assert json.loads((out / "changes.geojson").read_text())["features"]
    assert any(UNMATCHED_ACTIVITY in s for s in report["summary"])


def test_no_new_activity_when_the_ground_looks_different(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same pair with its dates taken as alike on none of their textured ground (as on a
    pair where most of the area changed, or whose images are not aligned): the radiometry still
    matches and the change areas stay, but none is reported as new activity, and the summary
    says why."""
    monkeypatch.setattr("sohae_watch.change.structure_agreement", lambda *_: 0.0)
    _, out = _diff_the_pair(tmp_path)
    report = json.loads((out / "report.json").read_text())
    assert report["change"]["radiometry_matched"] is True
    assert report["change"]["structure_agreement"] == 0.0
    assert report["change"]["mask_trusted"] is False
    assert report["new_activity"] == []
    assert report["change"]["areas"] > 0
    said = DIFFERENT_SENTENCE.format(share="less than 1%")
    assert any(said in s and UNMATCHED_ACTIVITY in s for s in report["summary"])


def _diff_seed(
    tmp_path: Path, seed: int, before: str, after: str | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A generated scene's pair that starts on ``before`` (and ends on ``after``, when given):
    its truth and its report."""
    truth = json.loads(generate_scene(tmp_path / "scene", seed).read_text())
    pair = next(p for p in truth["pairs"] if p["before"] == before and after in (None, p["after"]))
    out = tmp_path / "out"
    site = str(tmp_path / "scene" / "site.yaml")
    res = CliRunner().invoke(
        cli, ["diff", pair["before"], pair["after"], "--site", site, "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    return pair, json.loads((out / "report.json").read_text())


def test_the_shadow_of_a_listed_structure_is_no_new_activity(tmp_path: Path) -> None:
    """Seed 117, April -> August: no unlisted building came or went, but listed structures
    appeared or were modified, and a shadow beside a listed footprint changed past the 3 m
    buffer that keeps change areas off footprints (201 m²). It is told as a shadow and not
    reported as new activity (the build before the listed-shadow screen reported it as a
    structure removed; so does this one with shadow.listed_shadow switched off)."""
    pair, report = _diff_seed(tmp_path, 117, "2020-04-10", "2020-08-20")
    assert not pair["new_activity"]
    assert report["change"]["mask_trusted"] is True
    assert report["new_activity"] == []


def test_snow_the_fit_followed_reports_no_new_activity(tmp_path: Path) -> None:
    """Seed 64, September -> February: snow on 97 % of February's ground and no building come
    or gone. The fit runs through the snow, the roads and roofs read as changed, and almost no
    pixel lies within the fitted law (its reweighting collapsed): the report says the dates are
    not matched and reports none of those areas as new activity."""
    pair, report = _diff_seed(tmp_path, 64, "2021-09-10")
    assert pair["after"] == "2022-02-01" and not pair["new_activity"]
    assert report["change"]["radiometry_matched"] is False
    assert report["new_activity"] == []


def test_snow_that_melted_reports_no_new_activity(tmp_path: Path) -> None:
    """Seed 64, February -> May: the snow on 97 % of February's ground has melted, and no
    building came or went. Enough pixels agree with the fitted law for the radiometry to
    match (32 % of them), but the ground the snow covered has none of its May pattern: almost none of the textured ground looks alike on both dates. The report
    says the mask cannot be trusted and reports none of its areas as new activity (the build
    before reported five, all false)."""
    pair, report = _diff_seed(tmp_path, 64, "2022-02-01")
    assert pair["after"] == "2022-05-03" and not pair["new_activity"]
    assert report["change"]["radiometry_matched"] is True
    assert report["change"]["structure_agreement"] < MOSTLY_DIFFERENT
    assert report["new_activity"] == []
    assert any("cannot be trusted" in s for s in report["summary"])


def test_a_roof_that_came_on_a_lawn_is_reported(tmp_path: Path) -> None:
    """Seed 64, June -> September: an unlisted building came on grass. Its change area (the
    roof and the grass around it) is green on both dates in the mean, and was typed
    vegetation, so never reported (the build before); typed by its texture now, it is reported
    as new activity within 25 m of the building, and nothing else is."""
    import shapely
    from pyproj import Transformer
    from shapely.geometry import Point, shape

    pair, report = _diff_seed(tmp_path, 64, "2021-06-27", "2021-09-10")
    truth = json.loads((tmp_path / "scene" / "truth.json").read_text())
    to_m = Transformer.from_crs("EPSG:4326", truth["grid"]["crs"], always_xy=True)

    def metres(geom: Any) -> Any:
        return shapely.transform(geom, to_m.transform, interleaved=False)

    built = [metres(shape(b["geometry"])) for b in pair["new_activity"]]
    assert len(built) == 1
    found = [metres(Point(a["lon"], a["lat"])) for a in report["new_activity"]]
    assert found and all(built[0].distance(p) <= 25 for p in found)
    assert report["new_activity"][0]["change_type"] == "new_structure"
