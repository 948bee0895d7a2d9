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
    out.finish()
    return mask, mag, out


def _grid(n: int) -> Grid:
    return Grid(CRS.from_epsg(32651), Affine(0.5, 0, 400000, 0, -0.5, 4400000), n, n)


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
