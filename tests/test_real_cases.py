"""`diff` without a site on real imagery (../shared/data/real): outputs on the right grid."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import rasterio
from click.testing import CliRunner

from conftest import REAL, needs_real
from sohae_watch.agreement import MOSTLY_DIFFERENT
from sohae_watch.cli.main import cli

pytestmark = needs_real()


@pytest.mark.parametrize("case", ["oscd-bercy", "levir-test_2_0000_0000"])
def test_diff_on_real_case(case: str, tmp_path: Path) -> None:
    d = REAL / case
    out = tmp_path / case
    res = CliRunner().invoke(
        cli, ["diff", str(d / "before.tif"), str(d / "after.tif"), "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    report = json.loads((out / "report.json").read_text())
    with rasterio.open(out / "change_mask.tif") as m, rasterio.open(d / "before.tif") as b:
        assert m.dtypes[0] == "uint8" and m.nodata == 255
        if b.crs.is_projected:  # BEFORE's own grid
            assert m.crs == b.crs and m.transform == b.transform and m.shape == b.shape
        else:  # UTM zone of the area at BEFORE's ground resolution
            assert m.crs.is_projected and 5 < m.res[0] < 20
        mask = m.read(1)
    assert set(map(int, set(mask.ravel().tolist()))) <= {0, 1, 255}
    assert report["structures"] == [] and report["site"]["id"] is None
    assert report["before"]["date"] < report["after"]["date"]
    # LEVIR's crop of a subdivision built over scrub looks alike on almost none of its ground
    # (0.05), and the report says the mask cannot be trusted; the Paris suburb's Sentinel-2 pair
    # mostly does (0.84), and it says nothing of the kind
    different = case.startswith("levir")
    agreement = report["change"]["structure_agreement"]
    assert (agreement < MOSTLY_DIFFERENT) == different, agreement
    assert any("cannot be trusted" in s for s in report["summary"]) == different
