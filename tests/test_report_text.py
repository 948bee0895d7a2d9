"""What the reports write for a reader and a GIS: Markdown that shows names as given, shifts in
compass words, and change polygons as RFC 7946 asks."""

from __future__ import annotations

import math
import re

import pytest
from affine import Affine
from rasterio.crs import CRS
from shapely.geometry import Polygon, shape

from sohae_watch.grid import Grid
from sohae_watch.report import (
    lean_sentence,
    lonlat_geometry,
    md_escape,
    render_markdown,
    shift_words,
)
from sohae_watch.scene import ViewAngle

HOSTILE = "pad <img src=x onerror=alert(1)> | [link](http://x) *b* &amp; _x_ 발사대 sohae_a.tif"


def _report(name: str) -> dict:
    structure = {
        "id": "s",
        "name": name,
        "status": "unchanged",
        "event": None,
        "confidence": 0.9,
        "changed_fraction": 0.0,
        "observed_fraction": 1.0,
        "evidence": {},
    }
    return {
        "site": {"id": "x", "name": name},
        "before": {"date": "2019-02-16", "sources": ["a|b.tif"]},
        "after": {"date": "2019-03-02", "sources": ["c.tif"]},
        "summary": [f"No change at the {name} between Feb 16 and Mar 2, 2019."],
        "coregistration": {
            "method": "m",
            "status": "ok",
            "reliability": 0.9,
            "shift_x_px": -1.15,
            "shift_y_px": -1.99,
        },
        "structures": [structure],
        "change": {"areas": 0, "changed_fraction": 0.0, "not_observable_fraction": 0.0},
    }


def _unescaped(text: str, char: str) -> int:
    return len(re.findall(r"(?<!\\)" + re.escape(char), text))


def test_markdown_shows_user_names_as_text() -> None:
    """A '|' in a structure's name split its table row (every later cell a column off), and tags
    and links passed through to renderers that allow inline HTML."""
    md = render_markdown(_report(HOSTILE))
    row = next(line for line in md.splitlines() if line.startswith("| pad"))
    header = next(line for line in md.splitlines() if line.startswith("| structure"))
    assert _unescaped(row, "|") == _unescaped(header, "|")
    named = [
        line for line in md.splitlines() if "발사대" in line or "a|b" in line.replace("\\", "")
    ]
    assert len(named) == 4  # the title, the summary, the table row, the sources
    for line in named:
        for char in "<>[]*&":
            assert _unescaped(line, char) == 0, (char, line)
    assert "sohae_a.tif" in md  # an underscore inside a word is text already
    assert "\\_x\\_" in md
    assert "발사대" in md


def test_md_escape_round_trips_through_a_commonmark_reading() -> None:
    """Unescaping every backslash-escaped punctuation mark gives the text back."""
    escaped = md_escape(HOSTILE)
    assert re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", escaped) == HOSTILE


def test_shift_is_in_compass_words() -> None:
    assert shift_words({"shift_x_px": 1.15, "shift_y_px": -1.99}) == (
        "shift 1.15 px east, 1.99 px north"
    )
    assert (
        shift_words({"shift_x_px": -0.5, "shift_y_px": 2.0}) == "shift 0.50 px west, 2.00 px south"
    )
    assert shift_words({"shift_x_px": None, "shift_y_px": None}) == "no shift measured"
    assert "1.99 px north" in render_markdown(_report("pad"))


def test_change_polygons_follow_rfc_7946() -> None:
    """Outer rings anticlockwise and holes clockwise whatever the area's outline had (areas
    joined across windows came out clockwise), coordinates to a centimetre, and valid."""
    grid = Grid(CRS.from_epsg(32651), Affine(0.5, 0, 400000, 0, -0.5, 4400000), 100, 100)
    outer = [(400000, 4399950), (400000, 4400000), (400050, 4400000), (400050, 4399950)]  # cw
    hole = [(400010, 4399960), (400020, 4399960), (400020, 4399970), (400010, 4399970)]  # ccw
    poly = Polygon(outer, [hole])
    assert not poly.exterior.is_ccw and poly.interiors[0].is_ccw
    geo = lonlat_geometry(grid, poly)
    got = shape(geo)
    assert got.is_valid
    assert got.exterior.is_ccw and not got.interiors[0].is_ccw
    for x, y in geo["coordinates"][0]:
        assert round(x, 7) == x and round(y, 7) == y
        assert -180 <= x <= 180 and -90 <= y <= 90


def test_a_small_share_of_alike_ground_reads_as_english() -> None:
    """'only less than 1% of the ground' read wrong; the share says 'only' when it is one."""
    from sohae_watch.report import DIFFERENT_SENTENCE, _percent

    assert DIFFERENT_SENTENCE.format(share=_percent(0.002)).startswith(
        "The change mask cannot be trusted on this pair: less than 1% of the ground"
    )
    assert "pair: only 5% of the ground" in DIFFERENT_SENTENCE.format(share=_percent(0.05))


def test_two_views_apart_are_said_with_the_height_that_leans_past_the_tolerance() -> None:
    """A point h m up is drawn h tan(off-nadir) away from the satellite: 20 degrees from the
    east against nadir puts a roof 0.364 m west per metre of height, so from about 8 m up it
    leans more than the footprints' 3 m tolerance apart; the same view twice, or two views
    whose roofs stay within 3 m below 60 m, are not said."""
    nadir, east20 = ViewAngle(0.0, 0.0), ViewAngle(20.0, 90.0)
    assert east20.lean()[0] == pytest.approx(-math.tan(math.radians(20.0)))
    said = lean_sentence(nadir, east20)
    assert said is not None
    assert "0° and 20° off nadir" in said and "taller than about 8 m" in said
    # opposite sides of nadir add up: 10 degrees from the east and 10 from the west
    both = lean_sentence(ViewAngle(10.0, 90.0), ViewAngle(10.0, 270.0))
    assert both is not None and "taller than about 9 m" in both
    assert lean_sentence(east20, east20) is None
    assert lean_sentence(ViewAngle(1.0, 90.0), ViewAngle(3.0, 90.0)) is None  # 3 m at 86 m
    assert lean_sentence(None, east20) is None
