"""`watch`: the state machine (events against the last observed state), caching, late and
replaced acquisitions, corrupt files, concurrency and killed runs, STAC input, the CLI.

The state-machine tests use a scripted comparison (``FakeDiffer``) that reads each structure's
true state from a tag in the synthetic rasters, so they are fast and exact; the usability check,
catalog, fingerprints and database are the real ones. One end-to-end test runs the real
pipeline on the project's samples.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from pyproj import Transformer
from rasterio.transform import from_origin

from sohae_watch.errors import InputError
from sohae_watch.ingest import Acquisition
from sohae_watch.site import load_site
from sohae_watch.watch import Activity, Call, PairOutcome, WatchSummary, run_watch

TESTS = Path(__file__).parent
LON, LAT = 124.705, 39.66
TO_UTM = Transformer.from_crs("EPSG:4326", "EPSG:32651", always_xy=True)
TO_LONLAT = Transformer.from_crs("EPSG:32651", "EPSG:4326", always_xy=True)
CX, CY = TO_UTM.transform(LON, LAT)

# Scripted story: each structure's state per date ("cloud" hides it on that date).
STORY: dict[str, dict[str, str]] = {
    "2018-07-20": {"pad": "present", "stand": "present", "shed": "absent"},
    "2018-08-03": {"pad": "cloud", "stand": "present-2", "shed": "absent"},
    "2018-09-01": {"pad": "absent", "stand": "present-2", "shed": "absent"},
    "2019-02-16": {"pad": "absent", "stand": "present-2", "shed": "present"},
    "2019-03-02": {"pad": "present", "stand": "present-2", "shed": "present"},
}


def _box(dx: float, dy: float, half: float) -> list[list[list[float]]]:
    pts = [
        (dx - half, dy - half),
        (dx + half, dy - half),
        (dx + half, dy + half),
        (dx - half, dy + half),
    ]
    ring = [list(TO_LONLAT.transform(CX + x, CY + y)) for x, y in pts]
    return [[*ring, ring[0]]]


def make_site(folder: Path) -> Path:
    """A small site: a 120 m AOI with three structures; pad and stand stood at baseline."""
    folder.mkdir(parents=True, exist_ok=True)
    doc = {
        "id": "testsite",
        "name": "Test Site",
        "grid": {"crs": "EPSG:32651", "resolution": 2.0},
        "aoi": {"type": "Polygon", "coordinates": _box(0, 0, 60)},
        "structures": [
            {
                "id": "pad",
                "name": "launch pad structures",
                "baseline": "present",
                "geometry": {"type": "Polygon", "coordinates": _box(-30, 0, 10)},
            },
            {
                "id": "stand",
                "name": "engine test stand",
                "geometry": {"type": "Polygon", "coordinates": _box(30, 0, 10)},
            },
            {
                "id": "shed",
                "name": "assembly shed",
                "baseline": "absent",
                "geometry": {"type": "Polygon", "coordinates": _box(0, 30, 8)},
            },
        ],
    }
    path = folder / "site.yaml"
    path.write_text(json.dumps(doc), encoding="utf-8")  # JSON is YAML
    return path


def write_scene(
    folder: Path,
    date: str,
    states: Mapping[str, str],
    *,
    name: str | None = None,
    usable: bool = True,
    activity: bool = False,
    seed: int = 0,
    blank: bool = False,
) -> Path:
    """A 4-band 2 m raster over the AOI, dated by its name, the truth in a TRUTH tag;
    ``blank``: one value in every pixel (a failed product)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed + int(date.replace("-", "")))
    size = 80
    data = rng.integers(200, 4000, (4, size, size), dtype=np.uint16)
    if not usable:
        data[:, : size * 9 // 10, :] = 0
    if blank:
        data[:] = 1500
    path = folder / (name or f"scene_{date}.tif")
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=size,
        height=size,
        count=4,
        dtype="uint16",
        crs="EPSG:32651",
        transform=from_origin(CX - 80, CY + 80, 2.0, 2.0),
        nodata=0,
    ) as ds:
        ds.write(data)
        ds.update_tags(TRUTH=json.dumps(dict(states)), ACTIVITY="1" if activity else "0")
    return path


def _truth(acq: Acquisition) -> tuple[dict[str, str], bool]:
    with rasterio.open(acq.sources[0].path) as ds:
        tags = ds.tags()
    return json.loads(tags["TRUTH"]), tags.get("ACTIVITY") == "1"


def scripted_status(before: str, after: str) -> str:
    if "cloud" in (before, after):
        return "obscured"
    if before == after:
        return "unchanged"
    if before == "absent":
        return "appeared"
    if after == "absent":
        return "removed"
    return "modified"


class FakeDiffer:
    """A scripted comparison: statuses from the rasters' TRUTH tags; logs and can be slow."""

    def __init__(self, calls_log: Path | None = None, delay: float = 0.0) -> None:
        self.calls: list[tuple[str, str]] = []
        self.calls_log = calls_log
        self.delay = delay

    def __call__(
        self,
        before: Acquisition,
        after: Acquisition,
        *,
        stood_before: Mapping[str, bool],
        out_dir: Path,
    ) -> PairOutcome:
        pair = (before.date.isoformat(), after.date.isoformat())
        self.calls.append(pair)
        if self.calls_log is not None:
            with open(self.calls_log, "a", encoding="utf-8") as fh:
                fh.write(f"{os.getpid()} {pair[0]} {pair[1]}\n")
        time.sleep(self.delay)
        b, _ = _truth(before)
        a, act = _truth(after)
        calls = {sid: Call(scripted_status(b[sid], a[sid]), 0.9) for sid in a}
        activity = (Activity(LON + 0.0001, LAT, 120.0, 0.8, "new_structure"),) if act else ()
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "report.json").write_text(json.dumps({"pair": pair}), encoding="utf-8")
        return PairOutcome(calls, activity)


def watch(site: Path, imagery: Path, work: Path, differ: Any = None, **kw: Any) -> WatchSummary:
    return run_watch(
        load_site(site),
        imagery,
        work / "state.db",
        work / "out",
        differ=differ or FakeDiffer(),
        **kw,
    )


def history(work: Path) -> list[dict[str, Any]]:
    from sohae_watch.history import load_events

    con = sqlite3.connect(work / "state.db")
    try:
        return [e.to_dict() for e in load_events(con)]
    finally:
        con.close()


def sentences(work: Path) -> list[str]:
    return [e["sentence"] for e in history(work)]


def cli_args(site: Path, imagery: Path, state: Path, out: Path | None, *extra: str) -> list[str]:
    """A `watch` command line."""
    args = ["watch", "--site", str(site), "--imagery", str(imagery), "--state", str(state)]
    return [*args, *(["--out", str(out)] if out is not None else []), *extra]


def story(imagery: Path, dates: list[str] | None = None) -> None:
    for d in dates or list(STORY):
        write_scene(imagery, d, STORY[d], activity=d == "2019-02-16")


EXPECTED = [
    "Engine test stand modified between Jul 20 and Aug 3, 2018.",
    "Launch pad structures dismantled between Jul 20 and Sep 1, 2018.",
    "Assembly shed built between Sep 1, 2018 and Feb 16, 2019.",
    "Launch pad structures rebuilt between Feb 16 and Mar 2, 2019.",
]


@pytest.fixture
def site(tmp_path: Path) -> Path:
    return make_site(tmp_path / "site")


def test_story_with_obscured_date_bridged_and_second_run_does_nothing(
    site: Path, tmp_path: Path
) -> None:
    imagery = tmp_path / "imagery"
    story(imagery)
    first = FakeDiffer()
    s1 = watch(site, imagery, tmp_path, first)
    structure_sentences = [e["sentence"] for e in history(tmp_path) if e["structure_id"]]
    assert structure_sentences == EXPECTED
    # the pad was hidden on Aug 3: compared Jul 20 -> Sep 1 directly, dated across the cloud
    assert ("2018-07-20", "2018-09-01") in first.calls
    activity = [e for e in history(tmp_path) if e["structure_id"] is None]
    assert len(activity) == 1 and activity[0]["event"] == "new activity"
    assert activity[0]["sentence"].startswith("New activity at 39.66")
    assert {e.sentence for e in s1.new_events} >= set(EXPECTED)
    assert (tmp_path / "out" / "timeline.png").is_file()
    assert (tmp_path / "out" / "2019-02-16_2019-03-02" / "report.json").is_file()

    stamps = {
        n: (tmp_path / "out" / n).stat().st_mtime_ns for n in ("history.json", "timeline.png")
    }
    second = FakeDiffer()
    s2 = watch(site, imagery, tmp_path, second)
    assert second.calls == [] and s2.nothing_new and not s2.new_events
    # nothing new: the history files are left as they were, not rewritten alike
    assert stamps == {n: (tmp_path / "out" / n).stat().st_mtime_ns for n in stamps}
    assert structure_sentences == [e["sentence"] for e in history(tmp_path) if e["structure_id"]]


def test_history_json_fields(site: Path, tmp_path: Path) -> None:
    imagery = tmp_path / "imagery"
    story(imagery)
    watch(site, imagery, tmp_path)
    rebuilt = next(e for e in history(tmp_path) if e["event"] == "rebuilt")
    assert rebuilt == {
        "structure_id": "pad",
        "structure_name": "launch pad structures",
        "status": "appeared",
        "event": "rebuilt",
        "before_date": "2019-02-16",
        "after_date": "2019-03-02",
        "confidence": 0.9,
        "sentence": "Launch pad structures rebuilt between Feb 16 and Mar 2, 2019.",
    }


def test_new_acquisition_processes_only_new_pairs(site: Path, tmp_path: Path) -> None:
    imagery = tmp_path / "imagery"
    story(imagery, list(STORY)[:3])
    watch(site, imagery, tmp_path)
    story(imagery, list(STORY)[3:])
    differ = FakeDiffer()
    s = watch(site, imagery, tmp_path, differ)
    assert differ.calls == [("2018-09-01", "2019-02-16"), ("2019-02-16", "2019-03-02")]
    assert [e["sentence"] for e in history(tmp_path) if e["structure_id"]] == EXPECTED
    assert [e.sentence for e in s.new_events if e.structure_id] == EXPECTED[2:]


@pytest.mark.parametrize(
    ("kind", "why"),
    [("mostly nodata", "cloud, no data or a blank image"), ("blank", "only 0% of the AOI")],
)
def test_unusable_acquisition_skipped_with_reason(
    site: Path, tmp_path: Path, kind: str, why: str
) -> None:
    """An acquisition mostly without data, or a blank product (one value everywhere, cloud-like
    all over; compared, it would have every structure dismantled), is set aside as unusable
    with its reason; the history is what it is without it."""
    imagery = tmp_path / "imagery"
    story(imagery)
    write_scene(
        imagery,
        "2018-12-01",
        {"pad": "present", "stand": "absent", "shed": "present"},
        usable=kind != "mostly nodata",
        blank=kind == "blank",
    )
    differ = FakeDiffer()
    s = watch(site, imagery, tmp_path, differ)
    assert all("2018-12-01" not in pair for pair in differ.calls)
    assert [d for d, _ in s.unusable] == [dt.date(2018, 12, 1)]
    con = sqlite3.connect(tmp_path / "state.db")
    status, reason = con.execute(
        "SELECT status, reason FROM acquisitions WHERE date = '2018-12-01'"
    ).fetchone()
    assert status == "unusable" and "min_usable_fraction" in reason and why in reason
    assert [e["sentence"] for e in history(tmp_path) if e["structure_id"]] == EXPECTED


def test_late_acquisition_corrects_history(site: Path, tmp_path: Path) -> None:
    imagery = tmp_path / "imagery"
    story(imagery, ["2018-07-20", "2018-09-01", "2019-02-16", "2019-03-02"])
    watch(site, imagery, tmp_path)
    assert "Engine test stand modified between Jul 20 and Sep 1, 2018." in sentences(tmp_path)
    story(imagery, ["2018-08-03"])  # arrives late
    differ = FakeDiffer()
    s = watch(site, imagery, tmp_path, differ)
    assert sorted(differ.calls) == [("2018-07-20", "2018-08-03"), ("2018-08-03", "2018-09-01")]
    assert [e["sentence"] for e in history(tmp_path) if e["structure_id"]] == EXPECTED
    assert [e.sentence for e in s.withdrawn_events] == [
        "Engine test stand modified between Jul 20 and Sep 1, 2018."
    ]
    assert any("late acquisition" in n for n in s.notes)
    con = sqlite3.connect(tmp_path / "state.db")
    kinds = [r[0] for r in con.execute("SELECT kind FROM log")]
    assert "late" in kinds and "corrected" in kinds


def test_replaced_file_recomputes_its_pairs(site: Path, tmp_path: Path) -> None:
    imagery = tmp_path / "imagery"
    story(imagery)
    watch(site, imagery, tmp_path)
    # the 2019-03-02 file is replaced by a corrected delivery: the pad was not rebuilt yet
    write_scene(imagery, "2019-03-02", {**STORY["2019-03-02"], "pad": "absent"}, seed=7)
    differ = FakeDiffer()
    s = watch(site, imagery, tmp_path, differ)
    assert differ.calls == [("2019-02-16", "2019-03-02")]
    assert "Launch pad structures rebuilt between Feb 16 and Mar 2, 2019." not in sentences(
        tmp_path
    )
    assert [e.event for e in s.withdrawn_events] == ["rebuilt"]
    assert any("files changed" in n for n in s.notes)


def test_corrupt_file_skipped_then_retried(site: Path, tmp_path: Path) -> None:
    imagery = tmp_path / "imagery"
    story(imagery, list(STORY)[:4])
    good = write_scene(tmp_path / "staging", "2019-03-02", STORY["2019-03-02"])
    half = imagery / good.name
    half.write_bytes(good.read_bytes()[: good.stat().st_size // 3])  # a half-copied file
    s = watch(site, imagery, tmp_path)
    assert [p.name for p, _ in s.skipped_files] == [good.name]
    assert "rebuilt" not in {e["event"] for e in history(tmp_path)}
    assert len([e for e in history(tmp_path) if e["structure_id"]]) == 3
    half.write_bytes(good.read_bytes())  # the copy completes
    differ = FakeDiffer()
    watch(site, imagery, tmp_path, differ)
    assert differ.calls == [("2019-02-16", "2019-03-02")]
    assert [e["sentence"] for e in history(tmp_path) if e["structure_id"]] == EXPECTED


def test_file_being_replaced_keeps_history(site: Path, tmp_path: Path) -> None:
    imagery = tmp_path / "imagery"
    story(imagery)
    watch(site, imagery, tmp_path)
    before = history(tmp_path)
    target = imagery / "scene_2019-03-02.tif"
    target.write_bytes(target.read_bytes()[:2000])  # a new delivery half-copied over it
    differ = FakeDiffer()
    s = watch(site, imagery, tmp_path, differ)
    assert differ.calls == [] and not s.withdrawn_events and not s.new_events
    assert history(tmp_path) == before
    assert [k for k, _ in s.failed] == ["2019-03-02"]


def test_date_with_an_unreadable_tile_waits(site: Path, tmp_path: Path) -> None:
    imagery = tmp_path / "imagery"
    story(imagery)
    (imagery / "tile2_2019-03-02.tif").write_bytes(b"II*\x00 truncated")
    differ = FakeDiffer()
    s = watch(site, imagery, tmp_path, differ)
    assert all("2019-03-02" not in pair for pair in differ.calls)
    assert [k for k, _ in s.failed] == ["2019-03-02"]


def test_comparison_failure_sets_acquisition_aside(site: Path, tmp_path: Path) -> None:
    imagery = tmp_path / "imagery"
    story(imagery)

    class Failing(FakeDiffer):
        def __call__(self, before: Acquisition, after: Acquisition, **kw: Any) -> PairOutcome:
            if after.date == dt.date(2019, 2, 16):
                raise InputError(f"{after.sources[0].path}: pixels cannot be decoded; replace it")
            return super().__call__(before, after, **kw)

    s = watch(site, imagery, tmp_path, Failing())
    assert [k for k, _ in s.failed] == ["2019-02-16"]
    assert "Launch pad structures rebuilt between Sep 1, 2018 and Mar 2, 2019." in sentences(
        tmp_path
    )
    watch(site, imagery, tmp_path)  # retried: it reads now
    assert [e["sentence"] for e in history(tmp_path) if e["structure_id"]] == EXPECTED


def test_stac_item_collection(site: Path, tmp_path: Path) -> None:
    assets = tmp_path / "stac" / "assets"
    features = []
    for d in STORY:
        p = write_scene(assets, d, STORY[d], name=f"img_{d.replace('-', '')}.tif")
        features.append(
            {
                "type": "Feature",
                "id": d,
                "properties": {"datetime": f"{d}T02:00:00Z"},
                "assets": {
                    "image": {
                        "href": f"assets/{p.name}",
                        "type": "image/tiff; application=geotiff",
                    },
                    "thumb": {"href": "assets/thumb.png", "roles": ["thumbnail"]},
                },
            }
        )
    coll = tmp_path / "stac" / "items.json"
    coll.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    watch(site, coll, tmp_path)
    assert [e["sentence"] for e in history(tmp_path) if e["structure_id"]] == EXPECTED


def test_stac_catalog_with_child_links(site: Path, tmp_path: Path) -> None:
    root = tmp_path / "stac"
    links = []
    for d in STORY:
        folder = root / d
        p = write_scene(folder, d, STORY[d], name="image.tif")
        item = {
            "type": "Feature",
            "id": d,
            "properties": {"datetime": f"{d}T02:00:00Z"},
            "assets": {"data": {"href": "./image.tif", "roles": ["data"]}},
        }
        (folder / "item.json").write_text(json.dumps(item))
        links.append({"rel": "item", "href": f"./{d}/item.json"})
        assert p.is_file()
    (root / "catalog.json").write_text(json.dumps({"type": "Catalog", "id": "c", "links": links}))
    watch(site, root / "catalog.json", tmp_path)
    assert [e["sentence"] for e in history(tmp_path) if e["structure_id"]] == EXPECTED


def test_vanished_imagery_does_not_wipe_history(site: Path, tmp_path: Path) -> None:
    imagery = tmp_path / "imagery"
    story(imagery)
    watch(site, imagery, tmp_path)
    for p in imagery.iterdir():
        p.unlink()
    with pytest.raises(InputError, match="is the imagery folder mounted"):
        watch(site, imagery, tmp_path)
    assert [e["sentence"] for e in history(tmp_path) if e["structure_id"]] == EXPECTED


def test_archived_imagery_keeps_its_history_until_forgotten(site: Path, tmp_path: Path) -> None:
    """Imagery pruned from the folder once processed (archived to save space) keeps its events:
    its comparisons come from the database, a new acquisition is compared with the latest one
    still there. Removing it withdrew every event it carried. `forget` drops a date on purpose,
    and the history is corrected without it."""
    imagery = tmp_path / "imagery"
    story(imagery, list(STORY)[:4])
    watch(site, imagery, tmp_path)
    before = sentences(tmp_path)
    for d in list(STORY)[:3]:
        (imagery / f"scene_{d}.tif").unlink()
    differ = FakeDiffer()
    s = watch(site, imagery, tmp_path, differ)
    assert differ.calls == [] and not s.withdrawn_events
    assert sentences(tmp_path) == before
    assert sum("no longer in the imagery folder; its results are kept" in n for n in s.notes) == 3
    assert watch(site, imagery, tmp_path).nothing_new  # said once
    story(imagery, ["2019-03-02"])
    differ = FakeDiffer()
    watch(site, imagery, tmp_path, differ)
    assert differ.calls == [("2019-02-16", "2019-03-02")]
    assert [e["sentence"] for e in history(tmp_path) if e["structure_id"]] == EXPECTED

    s = watch(site, imagery, tmp_path, forget=[dt.date(2018, 8, 3)])
    assert "2018-08-03: forgotten; history corrected without it" in s.notes
    assert "Engine test stand modified between Jul 20 and Sep 1, 2018." in sentences(tmp_path)
    with pytest.raises(InputError, match="still in the imagery folder"):
        watch(site, imagery, tmp_path, forget=[dt.date(2019, 3, 2)])
    with pytest.raises(InputError, match="no acquisition of that date"):
        watch(site, imagery, tmp_path, forget=[dt.date(2018, 8, 3)])


# --- concurrency and killed runs -------------------------------------------------------------------

RUNNER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    from test_watch import FakeDiffer, watch
    watch(Path({site!r}), Path({imagery!r}), Path({work!r}),
          FakeDiffer(Path({log!r}), delay={delay}), lock_wait={wait})
    """
)


def _spawn(
    site: Path, imagery: Path, work: Path, log: Path, delay: float, wait: float
) -> subprocess.Popen[bytes]:
    code = RUNNER.format(
        tests=str(TESTS),
        site=str(site),
        imagery=str(imagery),
        work=str(work),
        log=str(log),
        delay=delay,
        wait=wait,
    )
    return subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def test_two_concurrent_runs_never_compute_a_pair_twice(site: Path, tmp_path: Path) -> None:
    imagery = tmp_path / "imagery"
    story(imagery)
    log = tmp_path / "calls.log"
    procs = [_spawn(site, imagery, tmp_path, log, 0.15, 60) for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    pairs = [tuple(line.split()[1:]) for line in log.read_text().splitlines()]
    assert len(pairs) == len(set(pairs)) == 5  # 4 chain pairs + 1 bridge, each once
    assert [e["sentence"] for e in history(tmp_path) if e["structure_id"]] == EXPECTED


def test_busy_lock_gives_up_without_work(site: Path, tmp_path: Path) -> None:
    from sohae_watch.state import LockBusy, run_lock

    imagery = tmp_path / "imagery"
    story(imagery)
    with run_lock(tmp_path / "state.db"), pytest.raises(LockBusy, match="another watch run"):
        watch(site, imagery, tmp_path)


def test_killed_run_then_clean_run_gives_same_history(site: Path, tmp_path: Path) -> None:
    imagery = tmp_path / "imagery"
    story(imagery)
    reference = tmp_path / "reference"
    reference.mkdir()
    watch(site, imagery, reference)

    work = tmp_path / "killed"
    work.mkdir()
    log = tmp_path / "calls.log"
    proc = _spawn(site, imagery, work, log, 0.4, 0)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if log.exists() and len(log.read_text().splitlines()) >= 3:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    con = sqlite3.connect(work / "state.db")
    done = con.execute("SELECT count(*) FROM pairs").fetchone()[0]
    events = con.execute("SELECT count(*) FROM events").fetchone()[0]
    con.close()
    assert 1 <= done < 5 and events == 0  # killed in the middle: pairs stored, events not yet

    differ = FakeDiffer()
    s = watch(site, imagery, work, differ)
    assert len(differ.calls) == 5 - done  # only the missing pairs
    assert history(work) == history(reference)
    assert len(s.new_events) == len(history(reference))
    assert watch(site, imagery, work).nothing_new


# --- the CLI ---------------------------------------------------------------------------------------


@pytest.fixture
def fake_pipeline(monkeypatch: pytest.MonkeyPatch) -> None:
    import sohae_watch.watch as watch_mod

    monkeypatch.setattr(watch_mod, "pipeline_differ", lambda site: FakeDiffer())


def test_cli_watch_twice_and_exit_code(site: Path, tmp_path: Path, fake_pipeline: None) -> None:
    from sohae_watch.cli.main import cli

    imagery = tmp_path / "imagery"
    story(imagery)
    args = cli_args(site, imagery, tmp_path / "s.db", tmp_path / "out", "--exit-code")
    runner = CliRunner()
    r1 = runner.invoke(cli, args)
    assert r1.exit_code == 3, r1.output
    assert "New event: Launch pad structures rebuilt between Feb 16 and Mar 2, 2019." in r1.output
    r2 = runner.invoke(cli, args)
    assert r2.exit_code == 0, r2.output
    assert r2.output.startswith("Nothing new: 5 acquisition(s)")
    r3 = runner.invoke(cli, ["history", "--site", str(site), "--state", str(tmp_path / "s.db")])
    assert r3.exit_code == 0
    assert (
        "Launch pad structures rebuilt between Feb 16 and Mar 2, 2019. (confidence 0.90)"
        in r3.output
    )
    r4 = runner.invoke(
        cli, ["history", "--site", str(site), "--state", str(tmp_path / "s.db"), "--format", "json"]
    )
    assert [e["event"] for e in json.loads(r4.output)][:2] == ["modified", "dismantled"]


def test_cli_watch_state_from_xdg(
    site: Path, tmp_path: Path, fake_pipeline: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sohae_watch.cli.main import cli

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    imagery = tmp_path / "imagery"
    story(imagery)
    r = CliRunner().invoke(cli, ["watch", "--site", str(site), "--imagery", str(imagery)])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "xdg" / "sohae-watch" / "testsite.db").is_file()
    assert (tmp_path / "xdg" / "sohae-watch" / "testsite-reports" / "timeline.png").is_file()


def test_cli_watch_bad_imagery(site: Path, tmp_path: Path) -> None:
    from sohae_watch.cli.main import cli

    r = CliRunner().invoke(cli, cli_args(site, tmp_path / "nope", tmp_path / "s.db", None))
    assert r.exit_code == 2
    assert "nope: imagery folder or STAC catalog not found" in r.output


def test_history_never_writes_into_a_database_that_is_not_a_history(
    site: Path, tmp_path: Path
) -> None:
    """Another program's SQLite file (or an empty one) given as --state is refused as it is: it
    was given sohae-watch's schema and reported as a history without events."""
    from sohae_watch.cli.main import cli

    other = tmp_path / "other.db"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE foo (x)")
    con.commit()
    con.close()
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    for path, says in (
        (other, "not a sohae-watch history database (it holds other tables: foo)"),
        (empty, "no history recorded in this database"),
    ):
        data = path.read_bytes()
        r = CliRunner().invoke(cli, ["history", "--site", str(site), "--state", str(path)])
        assert r.exit_code == 2 and says in r.output, r.output
        assert path.read_bytes() == data
    story(tmp_path / "imagery", list(STORY)[:2])
    data = other.read_bytes()
    with pytest.raises(InputError, match="it holds other tables: foo"):
        run_watch(load_site(site), tmp_path / "imagery", other, tmp_path / "out")
    assert other.read_bytes() == data


def test_a_full_device_stops_the_run_and_a_withdrawal_is_a_change(
    site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every pair after a full device would fail alike: the run stops with exit 1 instead of
    setting the dates aside and exiting 0; pairs done before it are kept. A run that withdraws
    recorded events (--forget) changed the history, which --exit-code reports as 3."""
    from sohae_watch.cli.main import cli
    from sohae_watch.errors import DeviceFullError

    imagery = tmp_path / "imagery"
    story(imagery)

    class Full(FakeDiffer):
        def __call__(self, before: Acquisition, after: Acquisition, **kw: Any) -> PairOutcome:
            if len(self.calls) == 2:
                raise DeviceFullError("out: no space left on the device")
            return super().__call__(before, after, **kw)

    full = Full()
    with pytest.raises(DeviceFullError):
        watch(site, imagery, tmp_path, full)
    assert len(full.calls) == 2  # stopped at the third pair, not set aside
    again = FakeDiffer()
    watch(site, imagery, tmp_path, again)
    assert again.calls and not set(full.calls) & set(again.calls)  # the two kept
    assert [e["sentence"] for e in history(tmp_path) if e["structure_id"]] == EXPECTED

    import sohae_watch.watch as watch_mod

    monkeypatch.setattr(watch_mod, "pipeline_differ", lambda site: FakeDiffer())
    args = cli_args(site, imagery, tmp_path / "state.db", tmp_path / "out", "--exit-code")
    assert CliRunner().invoke(cli, args).exit_code == 0  # nothing new
    (imagery / "scene_2018-08-03.tif").unlink()
    assert CliRunner().invoke(cli, args).exit_code == 0  # archived: its results are kept
    r = CliRunner().invoke(cli, [*args, "--forget", "2018-08-03"])
    assert r.exit_code == 3 and "Withdrawn (history corrected)" in r.output, r.output


def test_an_out_or_state_where_nothing_can_be_written_is_refused_before_any_work(
    site: Path, tmp_path: Path
) -> None:
    from sohae_watch.cli.main import cli

    imagery = tmp_path / "imagery"
    story(imagery, list(STORY)[:2])
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    for option, value in (("--out", a_file / "sub"), ("--state", a_file / "s.db")):
        args = cli_args(site, imagery, tmp_path / "s.db", tmp_path / "out", option, str(value))
        r = CliRunner().invoke(cli, args)
        assert r.exit_code == 2, r.output
        assert f"notes.txt is a file, not a folder; give another {option}" in r.output
        assert "Compared" not in r.output and not (tmp_path / "out").exists()


# --- end to end on the project's samples ------------------------------------------------------------


@pytest.mark.slow
def test_samples_full_story(tmp_path: Path, samples: Path) -> None:
    """From an empty state, `watch` on the samples tells truth.json's 2018-2019 story."""
    from sohae_watch.cli.main import cli

    site = Path(__file__).resolve().parents[1] / "configs" / "sohae.yaml"
    args = cli_args(site, samples / "imagery", tmp_path / "s.db", tmp_path / "out")
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    h = CliRunner().invoke(
        cli, ["history", "--site", str(site), "--state", str(tmp_path / "s.db"), "--format", "json"]
    )
    assert h.exit_code == 0, h.output
    got = {e["sentence"] for e in json.loads(h.output) if e["structure_id"]}
    assert (tmp_path / "out" / "timeline.png").is_file()
    assert CliRunner().invoke(cli, args).output.startswith("Nothing new")

    # the story told by truth.json's consecutive pairs (no structure is hidden across a change)
    from sohae_watch.history import structure_sentence

    truth = json.loads((samples / "truth.json").read_text())
    names = {st.id: st.name for st in load_site(site).structures}
    dates = [a["date"] for a in truth["acquisitions"]]
    chain = [p for p in truth["pairs"] if dates.index(p["after"]) == dates.index(p["before"]) + 1]
    expected = {
        structure_sentence(
            names[sid],
            v["event"],
            dt.date.fromisoformat(p["before"]),
            dt.date.fromisoformat(p["after"]),
        )
        for p in chain
        for sid, v in p["structures"].items()
        if v["event"]
    }
    assert "Launch pad structures rebuilt between Feb 16 and Mar 2, 2019." in expected
    if expected <= got:
        return
    # watch records what the pipeline calls; tell a pipeline miss from a watch bug
    wrong = []
    for p in chain:
        report = json.loads(
            (tmp_path / "out" / f"{p['before']}_{p['after']}" / "report.json").read_text()
        )
        calls = {c["id"]: c["status"] for c in report["structures"]}
        wrong += [
            f"{p['before']}..{p['after']} {sid}: pipeline {calls.get(sid)}, truth {v['status']}"
            for sid, v in p["structures"].items()
            if v["event"] and calls.get(sid) != v["status"]
        ]
    assert wrong, f"watch lost events the pipeline found: {sorted(expected - got)}"
    pytest.fail("the diff pipeline misses events on the samples: " + "; ".join(wrong))


def test_progress_is_told_after_each_acquisition(site: Path, tmp_path: Path) -> None:
    imagery = tmp_path / "imagery"
    story(imagery)
    seen: list[tuple[int, int]] = []
    watch(site, imagery, tmp_path, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(k, len(STORY) - 1) for k in range(1, len(STORY))]


def test_a_broken_site_file_stops_only_its_own_site(
    site: Path, tmp_path: Path, fake_pipeline: None
) -> None:
    """With --sites, one malformed file among many stopped every site's watch; now its error is
    printed, the others run, and the exit status is 2."""
    from sohae_watch.cli.main import cli

    imagery = tmp_path / "imagery"
    story(imagery)
    folder = tmp_path / "sites"
    folder.mkdir()
    doc = json.loads(site.read_text())
    doc.update(imagery=str(imagery), state=str(tmp_path / "good.db"))
    (folder / "good.yaml").write_text(json.dumps(doc))
    (folder / "broken.yaml").write_text("id: [unclosed\n")
    r = CliRunner().invoke(cli, ["watch", "--sites", str(folder), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2, r.output
    assert "broken.yaml: not valid YAML" in r.output
    assert "New event: Launch pad structures rebuilt" in r.output


def test_copied_imagery_and_a_comment_in_the_site_file_recompute_nothing(
    site: Path, tmp_path: Path
) -> None:
    """The fingerprints held the files' modification times and the site file's bytes: a copy
    without -p, a touch or a comment had every pair recomputed."""
    import shutil

    imagery = tmp_path / "imagery"
    story(imagery)
    watch(site, imagery, tmp_path)
    copy = tmp_path / "copy"
    shutil.copytree(imagery, copy, copy_function=shutil.copyfile)  # new modification times
    site.write_text(site.read_text() + "\n# reviewed by the analyst\n")
    differ = FakeDiffer()
    s = watch(site, copy, tmp_path, differ)
    assert differ.calls == [] and s.nothing_new
    # a footprint moved is a change of what the comparisons measured: all recomputed
    doc = json.loads(site.read_text().split("\n#")[0])
    doc["structures"][0]["geometry"]["coordinates"] = _box(-28, 0, 10)
    site.write_text(json.dumps(doc))
    differ = FakeDiffer()
    watch(site, copy, tmp_path, differ)
    assert len(differ.calls) == 5


def test_a_schema_1_history_is_rekeyed_not_recomputed(site: Path, tmp_path: Path) -> None:
    """Its fingerprints held modification times and the site file's bytes; upgrading must not
    recompute an archive's every pair."""
    import hashlib

    from sohae_watch.imagery import acquisition_fingerprint
    from sohae_watch.ingest import open_acquisition

    imagery = tmp_path / "imagery"
    story(imagery)
    watch(site, imagery, tmp_path)
    con = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    legacy_site = hashlib.sha1(site.read_bytes()).hexdigest()
    con.execute("UPDATE pairs SET site_fp = ?", (legacy_site,))
    for f in sorted(imagery.iterdir()):
        acq = open_acquisition(f)
        key = acq.date.isoformat()
        new, old = acquisition_fingerprint(acq), acquisition_fingerprint(acq, with_mtime=True)
        con.execute("UPDATE acquisitions SET fingerprint = ? WHERE date = ?", (old, key))
        con.execute("UPDATE pairs SET before_fp = ? WHERE before_fp = ?", (old, new))
        con.execute("UPDATE pairs SET after_fp = ? WHERE after_fp = ?", (old, new))
    con.close()
    differ = FakeDiffer()
    s = watch(site, imagery, tmp_path, differ)
    assert differ.calls == [] and s.nothing_new
    assert [e["sentence"] for e in history(tmp_path) if e["structure_id"]] == EXPECTED
