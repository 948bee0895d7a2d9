"""The two-pass change stage (each input pixel decoded once) gives the one-piece result bit for
bit: clouds, snow, nodata, grids off the block lattice, bands and tiles of any size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from affine import Affine
from scipy import ndimage as ndi

import sohae_watch.change_passes as passes
from sohae_watch.areas import ChangeArea, change_areas_on, join_pieces
from sohae_watch.change import (
    ChangeModel,
    ChangeResult,
    apply_change_model,
    change_areas,
    detect_changes_tiled,
    fit_change_model,
)
from sohae_watch.change_passes import SceneChange, band_pass, detect_changes_passes
from sohae_watch.grid import Grid
from sohae_watch.scene import Scene
from test_change import add_structure, field_and_paving, make_scene, textured
from test_change_snow import _site, _snow

WHOLE_PIXELS = passes.WHOLE_PIXELS  # the module's own value, before the fixture below


@pytest.fixture(autouse=True)
def _in_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Small grids are read in one window by default: here in chunks, as large ones are."""
    monkeypatch.setattr(passes, "WHOLE_PIXELS", 0)


def _shifted(data: np.ndarray, res: float, shift: int) -> Scene:
    s = make_scene(data.astype(np.float32), res)
    g = Grid(s.grid.crs, s.grid.transform * Affine.translation(shift, shift), *s.grid.shape[::-1])
    return Scene(s.data, s.valid, s.bands, g, s.date)


def _cloudy_pair(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    before = textured((h, w), 9) * 0.5
    after = add_structure(1.05 * before + 20, slice(h // 2, h // 2 + 60), slice(200, 290))
    after = add_structure(after, slice(30, 70), slice(w - 120, w - 60))
    yy, xx = np.mgrid[:h, :w]
    blob = np.exp(-(((yy - h // 2) ** 2 + (xx - 2 * w // 3) ** 2) / (2 * 60.0**2)))
    alpha = np.clip(blob * 2.5 - 0.5, 0, 0.97).astype(np.float32)
    after = np.minimum(after * (1 - alpha) + 16383 * alpha, 16383)  # a saturating cloud
    after[:, h - 90 :, w - 100 :] = np.nan
    before[:, :20, 40:90] = np.nan
    return before, after


def _same(
    model_res: tuple[np.ndarray, np.ndarray], whole_mask: np.ndarray, whole_mag: np.ndarray
) -> None:
    mask, mag = model_res
    np.testing.assert_array_equal(mask, whole_mask)
    np.testing.assert_array_equal(mag.view(np.uint32), whole_mag.astype(np.float32).view(np.uint32))


@pytest.mark.parametrize(("shift", "bands", "tile"), [(3, 3, 300), (0, 1, 1024), (5, 7, 257)])
def test_passes_equal_one_piece_at_half_metre(shift: int, bands: int, tile: int) -> None:
    before, after = _cloudy_pair(1000, 900)
    b, a = _shifted(before, 0.5, shift), _shifted(after, 0.5, shift)
    model = fit_change_model(b, a)
    assert (model.work_step, model.evidence_step) == (2, 4)
    whole = apply_change_model(model, b, a)
    assert (whole.mask == 255).sum() > 5000 and (whole.mask == 1).sum() > 2000
    res = detect_changes_passes(model, b, a, bands=bands, tile=tile)
    _same((res.mask, res.magnitude), whole.mask, whole.magnitude)


def test_passes_equal_one_piece_at_ten_metres_and_with_snow() -> None:
    before = textured((300, 260), 5)
    after = add_structure(1.1 * before + 20, slice(100, 140), slice(30, 80))
    after[:, 250:, 200:] = np.nan
    b, a = make_scene(before), make_scene(after)
    model = fit_change_model(b, a)
    whole = apply_change_model(model, b, a)
    res = detect_changes_passes(model, b, a, bands=4, tile=128)
    _same((res.mask, res.magnitude), whole.mask, whole.magnitude)
    # melting snow at 0.5 m: snow blocks take the score without colour
    ground = _site(21)
    rng = np.random.default_rng(5)
    patchy = ndi.gaussian_filter(rng.normal(size=(240, 240)), 12) > 0
    b = make_scene(_snow(ground, np.ones((240, 240), bool)), 0.5)
    a = make_scene(_snow(ground * 1.05 + 30, patchy), 0.5)
    model = fit_change_model(b, a)
    whole = apply_change_model(model, b, a)
    res = detect_changes_passes(model, b, a, bands=2, tile=100)
    _same((res.mask, res.magnitude), whole.mask, whole.magnitude)


def test_passes_and_tiles_equal_one_piece_with_strata() -> None:
    """Vegetated and bare ground normalised each with its fit: per pixel, so any window agrees."""
    before, after, _, _ = field_and_paving()
    after[:, 170:, 150:] = np.nan
    b, a = make_scene(before), make_scene(after)
    model = fit_change_model(b, a)
    assert model.strata is not None
    whole = apply_change_model(model, b, a)
    assert (whole.mask == 1).sum() > 500
    res = detect_changes_passes(model, b, a, bands=1, tile=64)
    _same((res.mask, res.magnitude), whole.mask, whole.magnitude)
    tiled = detect_changes_tiled(model, b, a, tile=64)
    np.testing.assert_array_equal(tiled.mask, whole.mask)


def test_passes_areas_and_spilled_layers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Change areas of a window from the stored typing evidence; layers in a file beyond the
    budget, and the evidence grid computed on two threads, give the same result."""
    before, after = _cloudy_pair(600, 560)
    b, a = _shifted(before, 0.5, 1), _shifted(after, 0.5, 1)
    model = fit_change_model(b, a)
    whole = apply_change_model(model, b, a)
    expected = change_areas(whole, b, a)
    assert expected
    monkeypatch.setattr(passes, "LAYER_BUDGET", 0)
    change = SceneChange(model, b.grid)
    assert change.spilled

    def read(r0: int, r1: int) -> tuple[Scene, Scene]:
        return b.crop(r0, 0, r1 - r0, 560), a.crop(r0, 0, r1 - r0, 560)

    for band in reversed(change.bands(3)):  # in any order
        change.add(band_pass(model, change.layout, read, band))
    change.prepare(threads=2)  # the evidence grid's parts side by side: the same result
    mask, mag, areas = change.tile(0, 0, 600, 560)
    _same((mask, mag), whole.mask, whole.magnitude)
    assert [(x.geometry.wkt, x.change_type, x.mean_magnitude) for x in join_pieces(areas)] == [
        (x.geometry.wkt, x.change_type, x.mean_magnitude) for x in expected
    ]
    # windows cut anywhere (odd offsets from the 2 px working lattice, through changed pixels,
    # at the grid's last row and column): the areas of the one-piece result there, from typing
    # evidence equal to the one-piece result's under every changed pixel
    seen: list[ChangeResult] = []

    def spy(res: ChangeResult, grid: Grid, window: bool = False) -> list[ChangeArea]:
        seen.append(res)
        return change_areas_on(res, grid, window=window)

    monkeypatch.setattr(passes, "change_areas_on", spy)
    for row, col, h, w in ((30, 202, 301, 358), (298, 98, 302, 301), (44, 450, 101, 59)):
        window = (slice(row, row + h), slice(col, col + w))
        part = ChangeResult(
            whole.magnitude[window],
            whole.mask[window],
            whole.threshold,
            whole.observable[window],
            {},
            {k: v[window] for k, v in whole.layers.items()},
        )
        want = change_areas_on(part, b.grid.crop(row, col, h, w), window=True)
        assert want, (row, col)
        got = change.tile(row, col, h, w)[2]
        assert [(x.geometry.wkt, x.mean_magnitude, x.confidence, x.piece) for x in got] == [
            (x.geometry.wkt, x.mean_magnitude, x.confidence, x.piece) for x in want
        ]
        changed = part.mask == 1
        assert set(seen[-1].layers) == set(part.layers)
        for k, v in part.layers.items():
            np.testing.assert_array_equal(seen[-1].layers[k][changed], v[changed], err_msg=k)


def test_evidence_budget_sends_large_grids_by_tiles() -> None:
    """At 10 m the evidence grid is the input grid: a Sentinel-2 tile would hold gigabytes of
    it, so such grids go tile by tile; a 0.5 m grid of the same size holds 1/64 of it."""
    from affine import Affine as A
    from rasterio.crs import CRS

    def model_at(res: float) -> ChangeModel:
        before = textured((200, 200), 3).astype(np.float32)
        return fit_change_model(make_scene(before, res), make_scene(1.1 * before + 20, res))

    model, model10 = model_at(0.5), model_at(10.0)
    s2 = Grid(CRS.from_epsg(32651), A(10.0, 0, 0, 0, -10.0, 0), 10980, 10980)
    fine = Grid(CRS.from_epsg(32651), A(0.5, 0, 0, 0, -0.5, 0), 10980, 10980)
    assert passes.evidence_bytes(model10, s2) > 8 * passes.EVIDENCE_BUDGET
    assert not passes.two_passes_fit(model10, s2)
    assert passes.two_passes_fit(model, fine)


def test_diff_by_tiles_equals_diff_by_passes(
    samples: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tile path (scenes over the evidence budget) writes what the two passes write (on the
    site's grid, read in one window by both: a warped read's values depend on its window)."""
    import json

    import rasterio
    from click.testing import CliRunner

    import sohae_watch.pipeline as pipeline
    from sohae_watch.cli.main import cli

    root = tmp_path
    site = Path(__file__).resolve().parents[1] / "configs" / "sohae.yaml"
    args = ["diff", "2019-02-16", "2019-03-02", "--site", str(site)]
    args += ["--imagery", str(samples / "imagery")]
    # the site's warped grid read in one window, as in a real run (not in chunks as above)
    monkeypatch.setattr(passes, "WHOLE_PIXELS", WHOLE_PIXELS)
    res = CliRunner().invoke(cli, [*args, "--out", str(root / "passes")])
    assert res.exit_code == 0, res.output
    # output tiles of 128 px (8 x 7) cut change areas: those of another pair (this one has none)
    # must come out as from one tile (the tile path's reads would be windows of the warped date,
    # whose values depend on the window)
    other = ["diff", "2018-07-20", "2018-08-03", "--site", str(site)]
    other += ["--imagery", str(samples / "imagery")]
    res = CliRunner().invoke(cli, [*other, "--out", str(root / "other")])
    assert res.exit_code == 0, res.output
    monkeypatch.setattr(pipeline, "TILE", 128)
    res = CliRunner().invoke(cli, [*other, "--out", str(root / "other-128")])
    assert res.exit_code == 0, res.output
    monkeypatch.undo()
    monkeypatch.setattr(passes, "WHOLE_PIXELS", WHOLE_PIXELS)
    monkeypatch.setattr(pipeline, "two_passes_fit", lambda model, grid: False)
    res = CliRunner().invoke(cli, [*args, "--out", str(root / "tiles")])
    assert res.exit_code == 0, res.output
    runs = ("passes", "tiles")
    for name in ("change_mask", "change_magnitude"):
        with rasterio.open(root / "passes" / f"{name}.tif") as a:
            want = a.read(1)
        for run in runs[1:]:
            with rasterio.open(root / run / f"{name}.tif") as b:
                np.testing.assert_array_equal(b.read(1), want, err_msg=f"{run} {name}")
    geo = [json.loads((root / d / "changes.geojson").read_text()) for d in runs]
    assert geo[0] == geo[1]  # one tile each
    with rasterio.open(root / "other" / "change_mask.tif") as a:
        labels = ndi.label(a.read(1) == 1, structure=np.ones((3, 3), bool))[0]
    cut = [
        k
        for k, (rr, cc) in enumerate(ndi.find_objects(labels), start=1)
        if rr.start // 128 != (rr.stop - 1) // 128 or cc.start // 128 != (cc.stop - 1) // 128
    ]
    assert cut, "no change area crosses a tile border"
    geo = [json.loads((root / d / "changes.geojson").read_text()) for d in ("other", "other-128")]
    # cut by tile borders, the areas are joined into the one-tile result's (polygons simplified
    # from their pieces' union: the same pixels, within a pixel)
    from shapely.geometry import shape

    def key(f: dict) -> tuple:
        p = f["properties"]
        return (p["area_m2"], p["change_type"], round(p["mean_magnitude"], 9))

    whole = sorted(geo[0]["features"], key=key)
    assert len(whole) >= 3
    joined = sorted(geo[1]["features"], key=key)
    assert [key(f) for f in joined] == [key(f) for f in whole]
    for a, b in zip(joined, whole, strict=True):
        assert a["properties"]["confidence"] == pytest.approx(b["properties"]["confidence"])
        assert shape(a["geometry"]).hausdorff_distance(shape(b["geometry"])) < 1e-4
