"""The distributed mode: a diff's tiles and a watch's sites on a Dask LocalCluster (loopback,
worker processes) give the same outputs and history as threads and the serial run."""

from __future__ import annotations

import json
import pickle
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from sohae_watch.cli.main import cli
from sohae_watch.distributed import (
    SiteRun,
    ThreadExecutor,
    release_readers,
    watch_sites,
)
from sohae_watch.ingest import catalog
from sohae_watch.site import load_site

distributed = pytest.importorskip("distributed", reason="dask.distributed is not installed")


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A 2-process LocalCluster on loopback for the module (as `--workers 2` starts it); its
    scheduler address."""
    from sohae_watch.distributed import dask_client

    try:
        ctx = dask_client(workers=2)
        client = ctx.__enter__()
    except Exception as exc:  # no processes, no loopback sockets, ...
        pytest.skip(f"dask cannot start a LocalCluster here: {type(exc).__name__}: {exc}")
    try:
        yield str(client.scheduler.address)
    finally:
        ctx.__exit__(None, None, None)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two random sample scenes (site.yaml + imagery/), cut to their first and last dates (one
    pair each, to stay fast)."""
    from sohae_watch.samples import generate_scene

    out = []
    for seed in (1, 2):
        folder = tmp_path_factory.mktemp(f"scene{seed}")
        generate_scene(folder, seed)
        acqs, _ = catalog(folder / "imagery", strict=False)
        for acq in acqs[1:-1]:
            for src in acq.sources:
                src.path.unlink()
                src.path.with_suffix(".json").unlink(missing_ok=True)
        out.append(folder)
    return out


def _report(path: Path) -> str:
    """report.json without its timings, as canonical JSON text (NaN equals NaN there)."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    doc.pop("timings_s", None)
    return json.dumps(doc, sort_keys=True)


def _same_outputs(a: Path, b: Path) -> None:
    """The contract's outputs of two runs are the same, bit for bit."""
    for name in ("change_mask.tif", "change_magnitude.tif"):
        with rasterio.open(a / name) as da, rasterio.open(b / name) as db:
            assert repr(da.profile) == repr(db.profile), name  # nodata NaN != NaN
            np.testing.assert_array_equal(da.read(), db.read(), err_msg=name)
    assert _report(a / "report.json") == _report(b / "report.json")
    assert (a / "changes.geojson").read_bytes() == (b / "changes.geojson").read_bytes()


@pytest.mark.parametrize("path", ["passes", "tiles"])
def test_diff_tiles_on_a_local_cluster_match_threads(
    cluster: str, scenes: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    """Bands of rows (the two passes) or, for scenes over their evidence budget, tiles with the
    model's halo: on a cluster as on threads."""
    import sohae_watch.pipeline as pipeline

    # a 600 x 560 grid in 4 tiles (the change model's halo makes each read most of the grid)
    monkeypatch.setattr(pipeline, "TILE", 320)
    if path == "tiles":
        monkeypatch.setattr(pipeline, "two_passes_fit", lambda model, grid: False)
    imagery = scenes[0] / "imagery"
    dates = [a.date.isoformat() for a in catalog(imagery, strict=False)[0]]
    runner = CliRunner()
    base = ["diff", dates[0], dates[-1], "--imagery", str(imagery)]
    threads = runner.invoke(cli, [*base, "--out", str(tmp_path / "threads"), "--threads", "2"])
    assert threads.exit_code == 0, threads.output
    dask = runner.invoke(cli, [*base, "--out", str(tmp_path / "dask"), "--workers", "2"])
    assert dask.exit_code == 0, dask.output
    assert dask.output == threads.output.replace("/threads/", "/dask/")
    report = json.loads((tmp_path / "dask" / "report.json").read_text(encoding="utf-8"))
    assert report["grid"]["width"] > 320 and report["grid"]["height"] > 320  # several tiles
    _same_outputs(tmp_path / "threads", tmp_path / "dask")


def _events(db_path: Path) -> list[dict[str, Any]]:
    from sohae_watch.history import load_events

    con = sqlite3.connect(db_path)
    try:
        return [e.to_dict() for e in load_events(con)]
    finally:
        con.close()


def test_watch_sites_on_a_cluster_match_the_serial_run(
    cluster: str, scenes: list[Path], tmp_path: Path
) -> None:
    sites = [load_site(s / "site.yaml") for s in scenes]
    serial = watch_sites(
        [
            SiteRun(s, s.imagery, tmp_path / "serial" / f"{s.id}.db", tmp_path / "serial" / s.id)
            for s in sites
            if s.imagery is not None
        ]
    )
    assert [o.error for o in serial] == [None, None]

    # the same sites through the CLI, one Dask task per site, on the cluster at --scheduler
    for s in scenes:
        with open(s / "site.yaml", "a", encoding="utf-8") as fh:
            fh.write("state: state.db\n")
    listed = ",".join(str(s / "site.yaml") for s in scenes)
    res = CliRunner().invoke(
        cli, ["watch", "--sites", listed, "--scheduler", cluster, "--out", str(tmp_path / "dask")]
    )
    assert res.exit_code == 0, res.output
    for site, o in zip(sites, serial, strict=True):
        assert f"{site.id} ({site.name}):" in res.output
        assert o.summary is not None
        pairs = [f"{b}_{a}" for b, a in o.summary.pairs_computed]
        assert len(pairs) == 1
        for pair in pairs:
            assert f"{tmp_path / 'dask' / site.id / pair}/" in res.output
            _same_outputs(o.run.out_dir / pair, tmp_path / "dask" / site.id / pair)
        cluster_events = _events(o.run.site.path.parent / "state.db")  # type: ignore[union-attr]
        assert cluster_events == _events(o.run.db_path)
        for e in o.summary.new_events:
            assert f"New event: {e.sentence}" in res.output
    assert any(o.summary and o.summary.events for o in serial)  # a history worth comparing

    # a second run on the cluster finds nothing new, for every site
    again = CliRunner().invoke(cli, ["watch", "--sites", listed, "--scheduler", cluster])
    assert again.exit_code == 0, again.output
    assert again.output.count("Nothing new:") == 2


def test_band_jobs_pickle_and_readers_are_released(scenes: list[Path]) -> None:
    """A BandJob (pass 1 of the change stage on a band of rows) crosses a process boundary; a
    thread's readers last one run, then close."""
    from sohae_watch.distributed import BandJob, _readers, process_band
    from sohae_watch.pipeline import compute_diff

    seen: list[BandJob] = []

    class Recording(ThreadExecutor):
        def map_unordered(self, fn: Any, items: Any) -> Iterator[Any]:
            def record(job: Any) -> Any:
                if isinstance(job, BandJob):
                    seen.append(job)
                    job = pickle.loads(pickle.dumps(job))
                return fn(job)

            return super().map_unordered(record, items)

    acqs, _ = catalog(scenes[1] / "imagery", strict=False)
    result = compute_diff(acqs[0], acqs[-1], executor=Recording(2))
    assert seen and result.counts["observable"] > 0
    assert not any(seen[0].run in cache for cache in _readers.values())  # released
    band = process_band(seen[0])  # readers reopened on demand ...
    assert band.band == seen[0].band and band.strips and band.pair
    assert release_readers(seen[0].run) == 1  # ... and closed by run


def test_usage_errors(runner: CliRunner, tmp_path: Path) -> None:
    res = runner.invoke(
        cli,
        ["diff", "a.tif", "b.tif", "--out", str(tmp_path), "--workers", "2", "--scheduler", "x"],
    )
    assert res.exit_code == 2 and "either --scheduler or --workers" in res.output
    res = runner.invoke(
        cli, ["diff", "a.tif", "b.tif", "--out", str(tmp_path), "--workers", "2", "--threads", "2"]
    )
    assert res.exit_code == 2 and "--threads" in res.output
    res = runner.invoke(cli, ["watch", "--site", "a", "--sites", "b"])
    assert res.exit_code == 2 and "one of them" in res.output
    res = runner.invoke(cli, ["watch", "--sites", str(tmp_path)])
    assert res.exit_code == 2 and "no site file" in res.output


def test_unreachable_scheduler_is_one_line_exit_2(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sohae_watch.distributed as dist

    monkeypatch.setattr(dist, "CONNECT_TIMEOUT_S", 0.5)
    res = runner.invoke(
        cli,
        ["diff", "a.tif", "b.tif", "--out", str(tmp_path), "--scheduler", "tcp://127.0.0.1:9"],
    )
    assert res.exit_code == 2
    assert "tcp://127.0.0.1:9: cannot connect to the Dask scheduler" in res.output
    assert "Traceback" not in res.output


def test_threads_stop_at_the_first_error_without_running_what_waits() -> None:
    """An error (or Ctrl-C) in the caller's loop: the items not started are dropped, not run."""
    import time

    from sohae_watch.distributed import ThreadExecutor

    started: list[int] = []

    def work(x: int) -> int:
        started.append(x)
        if x == 0:
            raise ValueError("item 0 failed")
        time.sleep(0.3)  # the worker is busy when the caller stops
        return x

    with pytest.raises(ValueError, match="item 0"):
        list(ThreadExecutor(1).map_unordered(work, range(6)))
    assert 0 in started and len(started) <= 2, started
