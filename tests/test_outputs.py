"""Output rasters: written tile by tile, then Cloud-Optimized where that is cheap."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS

from sohae_watch import outputs
from sohae_watch.grid import Grid
from sohae_watch.outputs import TileOutputs
from sohae_watch.stream import tiles


def _write_all(tmp_path: Path, grid: Grid) -> tuple[np.ndarray, np.ndarray, TileOutputs]:
    rng = np.random.default_rng(3)
    mask = rng.choice(np.array([0, 1, 255], np.uint8), size=grid.shape, p=[0.8, 0.1, 0.1])
    mag = rng.random(grid.shape, dtype=np.float32)
    mag[mask == 255] = np.nan
    out = TileOutputs(tmp_path, grid)
    for t in tiles(grid.shape, 0, 256):
        rows = slice(t.row, t.row + t.height)
        cols = slice(t.col, t.col + t.width)
        out.write(t, mask[rows, cols], mag[rows, cols])
    out.close()
    out.commit(out.cog_copies())
    return mask, mag, out


def _grid(n: int) -> Grid:
    return Grid(CRS.from_epsg(32651), Affine(0.5, 0, 400000, 0, -0.5, 4400000), n, n)


def _overview_of(mask: np.ndarray, f: int) -> np.ndarray:
    """The overview by its definition: every f-th pixel, 1 where any of its f x f changed."""
    ov = mask[::f, ::f].copy()
    for i in range(ov.shape[0]):
        for j in range(ov.shape[1]):
            if (mask[i * f : (i + 1) * f, j * f : (j + 1) * f] == 1).any():
                ov[i, j] = 1
    return ov


@pytest.mark.parametrize("side", [1024, 300, 97])
def test_the_overview_and_thumbnail_do_not_depend_on_where_tiles_fall(
    tmp_path: Path, side: int
) -> None:
    grid = _grid(2000)  # overview factor 3: tiles of 1024, 300 and 97 px are off its lattice
    rng = np.random.default_rng(5)
    mask = rng.choice(np.array([0, 1, 255], np.uint8), size=grid.shape, p=[0.97, 0.01, 0.02])
    after = rng.random((2, *grid.shape), dtype=np.float32)
    out = TileOutputs(tmp_path, grid, bands=2)
    f = out.factor
    assert f == 3
    for t in reversed(list(tiles(grid.shape, 0, side))):  # any order
        rows, cols = slice(t.row, t.row + t.height), slice(t.col, t.col + t.width)
        dr, dc = outputs.overview_lattice(t, f)
        out.note(t, mask[rows, cols], after[:, rows, cols][:, dr::f, dc::f])
    out.close()
    assert np.array_equal(out.overview, _overview_of(mask, f))
    assert np.array_equal(out.thumb, after[:, ::f, ::f])
    assert out.counts["changed"] == int((mask == 1).sum())


def test_outputs_become_cogs_with_the_same_pixels(tmp_path: Path) -> None:
    mask, mag, out = _write_all(tmp_path, _grid(700))
    for name, truth in (("change_mask", mask), ("change_magnitude", mag)):
        with rasterio.open(out.paths[name]) as src:
            assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
            assert src.overviews(1), name
            assert src.profile["tiled"] and src.compression is not None
            np.testing.assert_array_equal(src.read(1), truth)
    assert out.counts["changed"] == int((mask == 1).sum())
    assert not list(tmp_path.glob(".*.cog")), "no temporary file left behind"


def test_a_large_float_score_stays_a_plain_tiled_geotiff(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outputs, "COG_MAX_FLOAT_PIXELS", 100 * 100)
    _mask, mag, out = _write_all(tmp_path, _grid(300))
    with rasterio.open(out.paths["change_magnitude"]) as src:
        assert "LAYOUT" not in src.tags(ns="IMAGE_STRUCTURE")
        assert src.profile["tiled"]
        np.testing.assert_array_equal(src.read(1), mag)
    with rasterio.open(out.paths["change_mask"]) as src:
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"


def test_row_writer_writes_tiles_in_any_order_and_reports_write_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tiles arriving in any order come out as the rasters written whole (the score's rows by
    the writer's own thread); a failed score write is raised to the caller (by the next block
    row's write or by close()), and shutdown() when the caller is already handling an error
    does not raise another."""
    from sohae_watch.outputs import RowWriter

    grid = Grid(CRS.from_epsg(32651), Affine(0.5, 0, 400000, 0, -0.5, 4400000), 1300, 1100)
    rng = np.random.default_rng(4)
    mask = rng.choice(np.array([0, 1, 255], np.uint8), size=grid.shape, p=[0.8, 0.1, 0.1])
    mag = rng.random(grid.shape, dtype=np.float32)
    plan = list(tiles(grid.shape, 0, 300))
    (tmp_path / "a").mkdir()
    out = TileOutputs(tmp_path / "a", grid)
    rows = RowWriter(out, grid, 300, block=256)
    for t in reversed(plan):
        rows.put(t, mask[t.row : t.row + t.height, t.col : t.col + t.width],
                 mag[t.row : t.row + t.height, t.col : t.col + t.width])  # fmt: skip
    rows.close()
    out.close()
    with (
        rasterio.open(out.paths["change_mask"]) as m,
        rasterio.open(out.paths["change_magnitude"]) as g,
    ):
        np.testing.assert_array_equal(m.read(1), mask)
        np.testing.assert_array_equal(g.read(1), mag)

    def full(*args: object) -> None:
        raise OSError("No space left on device")

    (tmp_path / "b").mkdir()
    out = TileOutputs(tmp_path / "b", grid)
    monkeypatch.setattr(out, "write_magnitude_rows", full)
    first = [t for t in plan if t.row == 0]  # one row of tiles: one block row to write

    def put_first(rows: RowWriter) -> None:
        for t in first:
            rows.put(t, mask[t.row : t.row + t.height, t.col : t.col + t.width],
                     mag[t.row : t.row + t.height, t.col : t.col + t.width])  # fmt: skip

    rows = RowWriter(out, grid, 300, block=256)
    put_first(rows)  # its score rows are being written, and fail
    with pytest.raises(OSError, match="No space"):
        rows.close()
    rows = RowWriter(out, grid, 300, block=256)
    put_first(rows)
    rows.shutdown(raise_errors=False)  # a caller handling its own error: nothing raised here
    out.close()


def test_a_full_device_is_told_in_one_line_and_leaves_the_outputs_as_they_were(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writing that fails on a full device (ENOSPC, or GDAL's errno-less error with the device
    left full) ends in one error naming the folder and the fix; the previous outputs stay, a
    folder made for the run goes; other errors pass through as they were."""
    import errno
    import shutil
    from collections import namedtuple

    from sohae_watch.errors import InputError, ProcessingError
    from sohae_watch.outputs import staged_dir

    out = tmp_path / "out"
    out.mkdir()
    (out / "report.json").write_text("previous")

    def fail(exc: BaseException, folder: Path) -> None:
        with staged_dir(folder) as tmp:
            (tmp / "report.json").write_text("partial")
            raise exc

    with pytest.raises(ProcessingError, match=r"out: no space left on the device.*another --out"):
        fail(OSError(errno.ENOSPC, "No space left on device"), out)
    assert [p.name for p in out.iterdir()] == ["report.json"]
    assert (out / "report.json").read_text() == "previous"
    with pytest.raises(RuntimeError, match="IO error"):  # space left: not the device
        fail(RuntimeError("IO error writing tag data"), out)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9, 4096))
    with pytest.raises(ProcessingError, match="no space left"):
        fail(RuntimeError("IO error writing tag data"), tmp_path / "new")
    assert not (tmp_path / "new").exists()
    with pytest.raises(InputError, match="bad site"):  # an error of ours stays itself
        fail(InputError("bad site"), out)
    assert (out / "report.json").read_text() == "previous"
    # a new nested --out: every folder the run made goes, not only the innermost
    with pytest.raises(InputError):
        fail(InputError("bad site"), tmp_path / "new" / "deeper" / "out")
    assert not (tmp_path / "new").exists()


def test_a_full_device_while_writing_a_file_keeps_the_previous_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno
    import os

    from sohae_watch import outputs
    from sohae_watch.errors import ProcessingError

    path = tmp_path / "history.json"
    path.write_text("previous")
    real = os.fdopen

    def full(fd: int, *args: object, **kwargs: object) -> object:
        fh = real(fd, *args, **kwargs)

        def write(text: str) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

        fh.write = write
        return fh

    monkeypatch.setattr(outputs.os, "fdopen", full)
    with pytest.raises(ProcessingError, match=r"history.json: no space left.*elsewhere"):
        outputs.atomic_write_text(path, "new")
    assert path.read_text() == "previous"
    assert [p.name for p in tmp_path.iterdir()] == ["history.json"]


def test_an_output_folder_that_cannot_be_written_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno
    import tempfile

    from sohae_watch.errors import InputError
    from sohae_watch.outputs import staged_dir

    def denied(*args: object, **kwargs: object) -> str:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(tempfile, "mkdtemp", denied)
    out = tmp_path / "out"
    out.mkdir()
    with (
        pytest.raises(InputError, match=r"out: cannot write in the output folder.*another --out"),
        staged_dir(out),
    ):
        pass
    assert out.is_dir()  # not made by the run: left
    with pytest.raises(InputError, match="cannot write"), staged_dir(tmp_path / "new"):
        pass
    assert not (tmp_path / "new").exists()  # made by the run: removed


def test_outputs_replace_the_previous_ones_all_or_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A move into the output folder that fails puts back the files already moved; a folder
    standing where an output goes is refused before anything moves."""
    import os

    from sohae_watch.errors import InputError

    out = tmp_path / "out"
    out.mkdir()
    names = ("a.json", "b.tif", "c.md")
    for name in names:
        (out / name).write_text(f"previous {name}")
    (out / "notes.txt").write_text("the user's")

    def run() -> None:
        with outputs.staged_dir(out) as tmp:
            for name in names:
                (tmp / name).write_text(f"new {name}")

    def contents() -> dict[str, str]:
        return {p.name: p.read_text() for p in sorted(out.iterdir()) if p.is_file()}

    before = contents()
    real = os.replace

    def fail_on_c(src: str | Path, dst: str | Path) -> None:
        if Path(dst) == out / "c.md" and ".previous-" not in str(src):
            raise OSError(5, "Input/output error")
        real(src, dst)

    monkeypatch.setattr(outputs.os, "replace", fail_on_c)
    with pytest.raises(OSError, match="Input/output"):
        run()
    assert contents() == before
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []
    monkeypatch.setattr(outputs.os, "replace", real)

    (out / "c.md").unlink()
    (out / "c.md").mkdir()
    with pytest.raises(InputError, match=r"c.md: a folder stands where this output goes"):
        run()
    assert contents() == {k: v for k, v in before.items() if k != "c.md"}
    (out / "c.md").rmdir()
    run()
    assert contents() == {**{n: f"new {n}" for n in names}, "notes.txt": "the user's"}


def test_a_terminated_run_leaves_the_previous_outputs_and_no_temporary_folder(
    tmp_path: Path,
) -> None:
    """SIGTERM (kill, timeout, a cron job's time limit) unwinds like Ctrl-C: the CLI's handler
    turns it into an exit, so the staged outputs are removed and the previous ones stay."""
    import signal
    import subprocess
    import sys

    from click.testing import CliRunner

    from sohae_watch.cli import main

    saved = signal.getsignal(signal.SIGTERM)
    try:
        assert CliRunner().invoke(main.cli, ["history", "--help"]).exit_code == 0
        assert signal.getsignal(signal.SIGTERM) is main._terminate
    finally:
        signal.signal(signal.SIGTERM, saved)
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.json").write_text("previous")
    code = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from sohae_watch.cli import main\n"
        "from sohae_watch.outputs import staged_dir\n"
        "signal.signal(signal.SIGTERM, main._terminate)\n"
        "with staged_dir(Path(sys.argv[1])) as tmp:\n"
        "    (tmp / 'report.json').write_text('partial')\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    signal.pause()\n"
    )
    res = subprocess.run([sys.executable, "-c", code, str(out)], timeout=60)
    assert res.returncode == 128 + signal.SIGTERM
    assert [p.name for p in out.iterdir()] == ["report.json"]
    assert (out / "report.json").read_text() == "previous"


def test_files_written_atomically_get_a_new_files_permissions(tmp_path: Path) -> None:
    """history.json and timeline.png were owner-only (a temporary file's 0600) beside reports
    readable by all: a served or shared report folder showed the reports but not the history."""
    import os
    import stat

    old = os.umask(0o022)
    try:
        outputs.atomic_write_text(tmp_path / "history.json", "[]")
        outputs.atomic_write_bytes(tmp_path / "timeline.png", b"png")
    finally:
        os.umask(old)
    for name in ("history.json", "timeline.png"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644
    assert (tmp_path / "history.json").read_text() == "[]"


def test_a_cog_copy_that_fails_for_want_of_space_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GDAL's COG driver fails with 'TIFFRewriteDirectory: Error fetching directory count' on a
    full device, no errno, its temporary file already removed: that ended in 'unexpected
    failure'. Less free than twice the source now reads as a full device."""
    import shutil
    from collections import namedtuple

    from rasterio.errors import RasterioError

    from sohae_watch.errors import DeviceFullError

    src = tmp_path / "change_magnitude.tif"  # 2 MB, uncompressed: above FULL_BYTES
    with rasterio.open(
        src,
        "w",
        driver="GTiff",
        width=1024,
        height=512,
        count=1,
        dtype="float32",
        crs="EPSG:32651",
        transform=Affine(0.5, 0, 500000.0, 0, -0.5, 4390000.0),
    ) as ds:
        ds.write(np.ones((1, 512, 1024), np.float32))

    def fails(*args: object, **kwargs: object) -> None:
        raise RasterioError("TIFFRewriteDirectory:Error fetching directory count")

    monkeypatch.setattr(outputs.rasterio.shutil, "copy", fails)
    usage = namedtuple("usage", "total used free")
    size = src.stat().st_size
    assert size > 2 * outputs.FULL_BYTES
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**10, 10**9, 5 * size))
    with pytest.raises(RasterioError):  # room enough: not the device
        outputs.cog_copy(src, "AVERAGE")
    free = 3 * size // 2  # above FULL_BYTES, below what the copy needs
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**10, 10**9, free))
    with pytest.raises(DeviceFullError, match="no space left on the device"):
        outputs.cog_copy(src, "AVERAGE")
    assert [p.name for p in tmp_path.iterdir()] == ["change_magnitude.tif"]
