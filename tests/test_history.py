"""History: sentences, the contract's JSON, text, the timeline image, the `history` command."""

from __future__ import annotations

import datetime as dt
import io
import json
from pathlib import Path

from click.testing import CliRunner
from PIL import Image

from sohae_watch.history import (
    Cell,
    Event,
    activity_sentence,
    format_events,
    render_timeline,
    structure_sentence,
    write_history_files,
)

D = dt.date


def _event() -> Event:
    return Event(
        "launch-pad",
        "launch pad structures",
        "appeared",
        "rebuilt",
        D(2019, 2, 16),
        D(2019, 3, 2),
        0.934,
        structure_sentence("launch pad structures", "rebuilt", D(2019, 2, 16), D(2019, 3, 2)),
    )


def test_sentences() -> None:
    assert (
        structure_sentence("launch pad structures", "dismantled", D(2018, 7, 20), D(2018, 8, 3))
        == "Launch pad structures dismantled between Jul 20 and Aug 3, 2018."
    )
    assert (
        structure_sentence("shed", "built", D(2018, 9, 1), D(2019, 2, 16))
        == "Shed built between Sep 1, 2018 and Feb 16, 2019."
    )
    assert activity_sentence(124.70512, 39.66012, 1234.4, D(2019, 2, 16), D(2019, 3, 2)) == (
        "New activity at 39.66012 N, 124.70512 E (1,234 m²) between Feb 16 and Mar 2, 2019."
    )


def test_json_is_the_contract() -> None:
    (obj,) = json.loads(format_events([_event()], "json"))
    assert list(obj) == [
        "structure_id",
        "structure_name",
        "status",
        "event",
        "before_date",
        "after_date",
        "confidence",
        "sentence",
    ]
    assert obj["confidence"] == 0.934 and obj["before_date"] == "2019-02-16"
    assert obj["sentence"] == "Launch pad structures rebuilt between Feb 16 and Mar 2, 2019."


def test_text() -> None:
    assert format_events([_event()], "text") == (
        "Launch pad structures rebuilt between Feb 16 and Mar 2, 2019. (confidence 0.93)"
    )
    assert format_events([], "text", site_name="Sohae") == "No events recorded for Sohae."
    assert format_events([], "json") == "[]"


def test_timeline_png(tmp_path: Path) -> None:
    dates = [D(2019, 2, 16), D(2019, 3, 2), D(2019, 3, 6)]
    cells = {
        ("launch-pad", dates[0]): Cell("absent", True),
        ("launch-pad", dates[1]): Cell("present", True),
        ("launch-pad", dates[2]): Cell("present", False),
    }
    png = render_timeline(
        "Sohae", [("launch-pad", "launch pad structures")], dates, cells, [_event()]
    )
    img = Image.open(io.BytesIO(png))
    assert img.format == "PNG" and img.width > 300 and img.height > 100
    path = write_history_files(tmp_path / "out", "Sohae", [("launch-pad", "x")], dates, cells, [])
    assert path == tmp_path / "out" / "timeline.png" and path.is_file()
    assert json.loads((tmp_path / "out" / "history.json").read_text()) == []


def test_history_command_without_database(tmp_path: Path) -> None:
    from sohae_watch.cli.main import cli

    site = tmp_path / "site.yaml"
    site.write_text(
        "id: t\naoi: {type: Polygon, coordinates: [[[124.70, 39.65], [124.71, 39.65], "
        "[124.71, 39.66], [124.70, 39.66], [124.70, 39.65]]]}\n"
    )
    r = CliRunner().invoke(cli, ["history", "--site", str(site), "--state", str(tmp_path / "x.db")])
    assert r.exit_code == 2
    assert "no history database here" in r.output
