import datetime as dt
import json
from pathlib import Path

import pytest

from sohae_watch.dates import acquisition_date, date_from_name, date_span, parse_date
from sohae_watch.errors import InputError


@pytest.mark.parametrize(
    ("name", "want"),
    [
        ("sohae_2019-03-02.tif", dt.date(2019, 3, 2)),
        ("S2A_20160608T153121_T33UUU.jp2", dt.date(2016, 6, 8)),
        ("scene_20180803_west.tif", dt.date(2018, 8, 3)),
        ("tile_12345678.tif", None),  # not a valid date
        ("nodate.tif", None),
    ],
)
def test_date_from_name(name: str, want: dt.date | None) -> None:
    assert date_from_name(name) == want


def test_parse_date_forms() -> None:
    assert parse_date("2019:02:16 02:30:00") == dt.date(2019, 2, 16)
    assert parse_date("2019-02-16T02:31:00Z") == dt.date(2019, 2, 16)
    assert parse_date("20190216") == dt.date(2019, 2, 16)  # as many products write the tag
    assert parse_date("20190216T023000") == dt.date(2019, 2, 16)
    for bad in ("16/02/2019", "2019-0216", "2019:02-16", "201902161"):
        with pytest.raises(ValueError):
            parse_date(bad)


def test_a_placeholder_datetime_tag_is_no_date(tmp_path: Path) -> None:
    """Cameras and writers that know no date put zeros in TIFFTAG_DATETIME: the file was
    refused, though its name gives the date."""
    p = tmp_path / "img_20200101.tif"
    for blank in ("0000:00:00 00:00:00", "    :  :     :  :  "):
        assert acquisition_date(p, {"TIFFTAG_DATETIME": blank}) == (dt.date(2020, 1, 1), "name")
    with pytest.raises(InputError, match="no acquisition date"):
        acquisition_date(tmp_path / "a.tif", {"TIFFTAG_DATETIME": "0000:00:00 00:00:00"})


def test_order_tag_then_stac_then_name(tmp_path: Path) -> None:
    p = tmp_path / "img_20200101.tif"
    (tmp_path / "img_20200101.json").write_text(
        json.dumps({"properties": {"datetime": "2019-05-05T00:00:00Z"}})
    )
    assert acquisition_date(p, {"ACQUISITION_DATE": "2018-01-02"}) == (dt.date(2018, 1, 2), "tag")
    assert acquisition_date(p, {}) == (dt.date(2019, 5, 5), "stac")
    (tmp_path / "img_20200101.json").unlink()
    assert acquisition_date(p, {}) == (dt.date(2020, 1, 1), "name")


def test_malformed_tag_and_missing_date(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="ACQUISITION_DATE"):
        acquisition_date(tmp_path / "a.tif", {"ACQUISITION_DATE": "yesterday"})
    with pytest.raises(InputError, match="no acquisition date"):
        acquisition_date(tmp_path / "a.tif", {})


def test_date_span() -> None:
    assert date_span(dt.date(2019, 2, 16), dt.date(2019, 3, 2)) == "between Feb 16 and Mar 2, 2019"
    assert (
        date_span(dt.date(2018, 8, 3), dt.date(2019, 2, 16))
        == "between Aug 3, 2018 and Feb 16, 2019"
    )
    # two acquisitions of one day (two sensors, or two passes): not "between Jul 20 and Jul 20"
    assert date_span(dt.date(2018, 7, 20), dt.date(2018, 7, 20)) == "on Jul 20, 2018"
