"""The change stage on synthetic pairs with exact masks, on no-change pairs made from a real
Sentinel-2 image, and windowed against one-piece processing."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
from affine import Affine
from rasterio.crs import CRS
from scipy import ndimage as ndi

from sohae_watch.change import (
    CHANGE_TYPES,
    ChangeModel,
    ChangeResult,
    apply_change_model,
    change_areas,
    detect_changes,
    detect_changes_tiled,
    fit_change_model,
    pixel_size_m,
)
from sohae_watch.change_passes import detect_changes_passes
from sohae_watch.grid import Grid
from sohae_watch.radiometry import VEGETATED_NDVI, ndvi
from sohae_watch.scene import Scene

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
BANDS4 = ("red", "green", "blue", "nir")


def make_scene(data: np.ndarray, res: float = 10.0, bands: tuple[str, ...] = BANDS4) -> Scene:
    data = data.astype(np.float32)
    valid = np.isfinite(data).all(axis=0)
    grid = Grid(
        CRS.from_epsg(32651), Affine(res, 0, 500_000, 0, -res, 4_400_000), *data.shape[:0:-1]
    )
    return Scene(data=data, valid=valid, bands=bands, grid=grid, date=dt.date(2020, 1, 1))


def assert_windows_agree(model: ChangeModel, b: Scene, a: Scene) -> None:
    """The two passes (three bands of rows, 64 px tiles) and 64 px tiles give the one-piece
    result: the same mask, and from the passes the same scores bit for bit."""
    whole = apply_change_model(model, b, a)
    res = detect_changes_passes(model, b, a, bands=3, tile=64)
    np.testing.assert_array_equal(res.mask, whole.mask)
    np.testing.assert_array_equal(res.magnitude.view(np.uint32), whole.magnitude.view(np.uint32))
    tiled = detect_changes_tiled(model, b, a, tile=64)
    np.testing.assert_array_equal(tiled.mask, whole.mask)


def fit_where_windows_agree(
    monkeypatch: pytest.MonkeyPatch, before: np.ndarray, after: np.ndarray, res: float = 10.0
) -> ChangeModel:
    """The model fitted on the pair with AFTER's corner cut off (nodata), once the passes read
    in chunks (as a large grid is), the tiles and one piece are shown to agree on it
    (:func:`assert_windows_agree`)."""
    import sohae_watch.change_passes as passes

    monkeypatch.setattr(passes, "WHOLE_PIXELS", 0)
    after = after.copy()
    after[:, 200:, :40] = np.nan
    b, a = make_scene(before, res), make_scene(after, res)
    model = fit_change_model(b, a)
    assert_windows_agree(model, b, a)
    return model


def with_noise(
    rng: np.random.Generator, before: np.ndarray, after: np.ndarray, sigma: float = 20.0
) -> tuple[np.ndarray, np.ndarray]:
    """The two dates plus sensor noise of ``sigma`` DN, as float32."""
    noisy = (img + rng.normal(0, sigma, img.shape) for img in (before, after))
    b, a = (img.astype(np.float32) for img in noisy)
    return b, a


def textured(shape: tuple[int, int], seed: int, bands: int = 4) -> np.ndarray:
    """A landscape-like image: smooth fields plus fine texture, per-band gains."""
    rng = np.random.default_rng(seed)
    base = ndi.gaussian_filter(rng.normal(size=shape), 6) * 40
    base += ndi.gaussian_filter(rng.normal(size=shape), 1.2) * 15
    gains = np.array([1.0, 1.1, 0.9, 1.6])[:bands]
    return np.stack([1000 + 300 * g + g * base * 10 for g in gains]).astype(np.float32)


ROOF = np.array([900.0, 350.0, 250.0, 100.0])  # a red tile roof: brighter, most in red


def add_structure(img: np.ndarray, r: slice, c: slice) -> np.ndarray:
    """A new building: a reddish roof with a ridge line and dark walls at its edges."""
    out = img.copy()
    roof = ROOF[: img.shape[0], None, None]
    out[:, r, c] = out[:, r, c].mean(axis=(1, 2), keepdims=True) + roof
    mid = (r.start + r.stop) // 2
    out[:, mid, c] -= 0.5 * roof[:, 0]
    out[:, r.start, c] -= 600
    out[:, r.stop - 1, c] -= 600
    out[:, r, c.start] -= 600
    out[:, r, c.stop - 1] -= 600
    return out


def false_alarm_rate(res: ChangeResult) -> float:
    return float((res.mask == 1).mean())


def not_observable_rate(res: ChangeResult) -> float:
    return float((res.mask == 255).mean())


# --- synthetic pairs with exact masks -------------------------------------------------------


def test_finds_new_structure_and_types_it() -> None:
    before = textured((200, 200), 1)
    rng = np.random.default_rng(2)
    after = 1.2 * before + 50 + rng.normal(0, 8, before.shape).astype(np.float32)
    truth = np.zeros((200, 200), bool)
    r, c = slice(80, 110), slice(60, 100)
    truth[r, c] = True
    after = add_structure(after, r, c)
    res = detect_changes(make_scene(before), make_scene(after))
    flagged = res.mask == 1
    tp = (flagged & truth).sum()
    assert tp / truth.sum() > 0.7, "the new structure is found"
    assert (flagged & ~truth).sum() / (~truth).sum() < 0.01, "little else is flagged"
    assert res.mask.dtype == np.uint8 and res.magnitude.dtype == np.float32
    assert np.isfinite(res.threshold)
    areas = change_areas(res, make_scene(before), make_scene(after))
    assert areas, "the change becomes an area"
    big = areas[0]
    assert big.change_type in CHANGE_TYPES
    assert big.change_type in ("new_structure", "brighter")
    assert 0.5 * 30 * 40 * 100 < big.area_m2 < 2.0 * 30 * 40 * 100
    assert 0.0 <= big.confidence <= 1.0
    assert big.geometry.intersects(make_scene(before).grid.footprint())


def test_nodata_is_not_observable() -> None:
    before = textured((120, 120), 3)
    after = before.copy()
    after[:, :20, :] = np.nan
    res = detect_changes(make_scene(before), make_scene(after))
    assert (res.mask[:20] == 255).all()
    assert np.isnan(res.magnitude[:20]).all()
    assert not res.observable[:20].any()
    assert (res.mask[20:] == 1).mean() < 0.005


def test_cloud_over_structure_is_not_observable() -> None:
    before = textured((200, 200), 4)
    r, c = slice(90, 120), slice(90, 130)
    after = add_structure(before.copy(), r, c)
    yy, xx = np.mgrid[:200, :200]
    blob = np.exp(-(((yy - 105) ** 2 + (xx - 110) ** 2) / (2 * 25.0**2)))
    cloud_alpha = np.clip(blob * 2.5 - 0.5, 0, 0.97).astype(np.float32)
    cloudy = after * (1 - cloud_alpha) + 6000 * cloud_alpha
    res = detect_changes(make_scene(before), make_scene(cloudy))
    assert (res.mask[r, c] == 255).mean() > 0.95, "the structure under the cloud is not observable"
    assert (res.mask == 1).mean() < 0.01, "the cloud is not reported as change"
    assert res.stats["cloud_fraction_after"] > 0.02


def _billowy_cloud(
    seed: int, ground: float, billows: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """At 0.5 m: ground of ``ground`` times :func:`textured`'s level with dark roads (strong
    edges), a new building, and on AFTER an opaque cloud of 15000 DN whose brightness varies by
    about ``billows`` of itself over a few metres. Returns BEFORE, AFTER and the cloud's core."""
    h = w = 600
    before = textured((h, w), seed) * ground
    for r0 in (150, 420):
        before[:, r0 : r0 + 12, :] *= 0.35
    before[:, :, 300:312] *= 0.35
    after = add_structure(1.05 * before + 20, slice(260, 300), slice(260, 320))
    rng = np.random.default_rng(seed + 1)
    yy, xx = np.mgrid[:h, :w]
    blob = np.exp(-(((yy - 280) ** 2 + (xx - 290) ** 2) / (2 * 110.0**2)))
    alpha = np.clip(blob * 2.5 - 0.5, 0, 1.0).astype(np.float32)
    noise = ndi.gaussian_filter(rng.normal(size=(h, w)), 4)
    cloud = 15000.0 * (1 + billows * noise / noise.std())
    return before, after * (1 - alpha) + cloud * alpha, alpha > 0.9


@pytest.mark.parametrize(("ground", "billows"), [(0.4, 0.03), (0.4, 0.06), (1.0, 0.03)])
def test_a_cloud_with_billows_over_darker_ground_is_not_observable(
    ground: float, billows: float
) -> None:
    """A cloud 10-30 times brighter than the ground: billows of a few per cent of its
    brightness are, in the scene's units, more texture than the ground has, and strong wherever
    the ground's roads run. The cloud was taken for change (49-96 % of its core flagged, nothing
    not observable). Its texture in proportion to its brightness is the ground's or less, and its
    gradients do not follow the roads: not observable."""
    before, after, core = _billowy_cloud(1, ground, billows)
    res = detect_changes(make_scene(before, 0.5), make_scene(after, 0.5))
    assert (res.mask[core] == 255).mean() > 0.85
    assert (res.mask[core] == 1).mean() < 0.15


def _cumulus(seed: int, billows: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """At 10 m: a landscape and, on AFTER, a cumulus about 1.4 km across that lets 15 % of
    the ground's light through at its core and whose own brightness varies by ``billows`` of
    itself from pixel to pixel: its texture is many times the ground's. Returns BEFORE, AFTER
    and where the cloud gives at least as much light as the ground (1.2 km across)."""
    h = w = 300
    before = textured((h, w), seed)
    rng = np.random.default_rng(seed + 1)
    yy, xx = np.mgrid[:h, :w]
    blob = np.exp(-(((yy - 150) ** 2 + (xx - 140) ** 2) / (2 * 40.0**2)))
    alpha = np.clip(blob * 2.0 - 0.4, 0, 0.85).astype(np.float32)
    noise = ndi.gaussian_filter(rng.normal(size=(h, w)), 1.5)
    cloud = 3.0 * before.mean() * (1 + billows * noise / noise.std())
    after = (1.05 * before + 20) * (1 - alpha) + cloud * alpha
    return before, after, alpha * cloud.mean() >= (1 - alpha) * before.mean()


@pytest.mark.parametrize("billows", [0.1, 0.25])
def test_a_billowed_cumulus_is_not_observable(billows: float) -> None:
    """A cumulus at 10 m (Sentinel-2) is not flat: its billows are far more texture than the
    town or fields under it, so the flat-patch test missed it and it was reported as change
    (oscd-paris: two such clouds were most of the false alarms). Where it gives at least as
    much light as the ground, over a whole landscape neighbourhood, hiding the ground's edges
    and with texture at every pixel, it is cloud."""
    before, after, core = _cumulus(2, billows)
    assert core.sum() > 2000  # over 200 m across
    res = detect_changes(make_scene(before), make_scene(after))
    assert (res.mask[core] == 255).mean() > 0.95
    assert (res.mask == 1).mean() < 0.01


def test_windowed_equals_one_piece_with_a_billowed_cumulus() -> None:
    """The billowed-cloud test looks over a 200 m neighbourhood before the cloud's core, rim
    and margin: tiles whose halo holds that too give the one-piece result."""
    before, after, core = _cumulus(2, 0.25)
    b, a = make_scene(before), make_scene(after)
    model = fit_change_model(b, a)
    whole = apply_change_model(model, b, a)
    assert (whole.mask[core] == 255).mean() > 0.95
    tiled = detect_changes_tiled(model, b, a, tile=96)
    np.testing.assert_array_equal(tiled.mask, whole.mask)
    np.testing.assert_allclose(tiled.magnitude, whole.magnitude, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("side", [10, 20, 30])
def test_a_new_white_roof_as_large_as_a_cloud_stays_change(side: int) -> None:
    """A flat white roof 100-300 m across on a field at 10 m: brighter in every band, many
    times, colourless, and the field had no edges for it to hide. Its inside has no texture
    (its edges do), so it is change, not cloud."""
    before = textured((200, 200), 4)
    after = 1.05 * before + 20
    r = slice(100 - side // 2, 100 - side // 2 + side)
    after[:, r, r] = np.array([6000.0, 6100.0, 6200.0, 6500.0])[:, None, None]
    res = detect_changes(make_scene(before), make_scene(after))
    assert (res.mask[r, r] == 1).mean() > 0.95


def test_windowed_equals_one_piece() -> None:
    before = textured((300, 260), 5)
    after = add_structure(1.1 * before + 20, slice(100, 140), slice(30, 80))
    yy, xx = np.mgrid[:300, :260]
    blob = np.exp(-(((yy - 200) ** 2 + (xx - 150) ** 2) / (2 * 20.0**2)))
    alpha = np.clip(blob * 2.5 - 0.5, 0, 0.97).astype(np.float32)
    after = after * (1 - alpha) + 6000 * alpha  # a cloud across tile borders
    after[:, 250:, 200:] = np.nan
    b, a = make_scene(before), make_scene(after)
    model = fit_change_model(b, a)
    whole = apply_change_model(model, b, a)
    assert (whole.mask == 255).sum() > 500 and (whole.mask == 1).sum() > 500
    tiled = detect_changes_tiled(model, b, a, tile=128)
    np.testing.assert_array_equal(tiled.mask, whole.mask)
    np.testing.assert_allclose(tiled.magnitude, whole.magnitude, rtol=1e-5, atol=1e-5)


def test_windowed_equals_one_piece_at_half_metre() -> None:
    """At 0.5 m the scores are computed on 1 m block means and the cloud, snow and decision
    neighbourhoods on 4 m ones: windows not on that lattice (a grid origin 3 px off it, tiles
    smaller than the halo) still give the one-piece result."""
    h, w = 1000, 900
    before = textured((h, w), 9) * 0.5
    after = add_structure(1.05 * before + 20, slice(500, 560), slice(470, 560))
    yy, xx = np.mgrid[:h, :w]
    blob = np.exp(-(((yy - 520) ** 2 + (xx - 700) ** 2) / (2 * 60.0**2)))
    alpha = np.clip(blob * 2.5 - 0.5, 0, 0.97).astype(np.float32)
    after = np.minimum(after * (1 - alpha) + 16383 * alpha, 16383)  # a saturating cloud
    after[:, 900:, 800:] = np.nan

    def scene(data: np.ndarray) -> Scene:
        s = make_scene(data.astype(np.float32), 0.5)
        g = Grid(s.grid.crs, s.grid.transform * Affine.translation(3, 3), w, h)
        return Scene(s.data, s.valid, s.bands, g, s.date)

    b, a = scene(before), scene(after)
    model = fit_change_model(b, a)
    assert (model.work_step, model.evidence_step) == (2, 4)
    whole = apply_change_model(model, b, a)
    assert (whole.mask == 255).sum() > 5000 and (whole.mask == 1).sum() > 2000
    tiled = detect_changes_tiled(model, b, a, tile=300)
    np.testing.assert_array_equal(tiled.mask, whole.mask)
    np.testing.assert_allclose(tiled.magnitude, whole.magnitude, rtol=1e-5, atol=1e-5)


def test_a_cloud_whose_core_the_grid_cuts_is_not_observable() -> None:
    """At 0.5 m, a saturating cloud centred just beyond the grid's edge: a sliver of its core
    is inside, at the sensor's ceiling in every band, and no 4 m block of it averages within
    3 % of the ceiling. The saturated pixels are not observable, and most of the cloud is not
    reported as change (the evidence grid's blocks are at the ceiling within 10 %)."""
    h, w = 600, 600
    before = textured((h, w), 9) * 0.5
    after = 1.05 * before + 20
    yy, xx = np.mgrid[:h, :w]
    blob = np.exp(-(((yy - 300) ** 2 + (xx - (w + 78)) ** 2) / (2 * 80.0**2)))
    alpha = np.clip(blob * 2.5 - 0.5, 0, 1.0).astype(np.float32)
    after = np.minimum(after * (1 - alpha) + 16383 * alpha, 16383)
    saturated = (after >= 0.97 * 16383).all(axis=0)
    assert 50 < saturated.sum() < 300  # a sliver of the core inside the grid (138 px)
    res = detect_changes(make_scene(before, 0.5), make_scene(after, 0.5))
    assert (res.mask[saturated] == 255).mean() > 0.95
    cloud = alpha > 0.3
    assert (res.mask[cloud] == 1).mean() < 0.05


def test_a_ceiling_below_a_value_the_product_holds_is_not_its_ceiling() -> None:
    """A white roof at 4000 DN in every band is at a 12-bit ceiling within 10 %; in a product
    whose brightest values pass 4095 (a 14-bit one, with or without a cloud seen) it is not,
    while 16383 and 65535 stay possible ceilings there."""
    from sohae_watch.cloud import at_ceiling, lowest_ceiling

    roof = np.full((4, 2, 2), 4000.0, np.float32)
    cloud = np.full((4, 2, 2), 65535.0, np.float32)
    assert lowest_ceiling((16383.0,) * 4) == 16383.0
    assert lowest_ceiling((5120.0, 4800.0, 4700.0, 3900.0)) == 16383.0  # no cloud seen
    assert lowest_ceiling((4095.0,) * 4) == 4095.0
    assert lowest_ceiling((0.7, 0.8, 1.2e5, 0.6)) == float("inf")
    assert lowest_ceiling(()) == 0.0
    assert at_ceiling(roof, 0.1).all()
    assert at_ceiling(roof, 0.03, lowest_ceiling((4095.0,) * 4)).all()
    assert not at_ceiling(roof, 0.1, lowest_ceiling((5120.0,) * 4)).any()
    assert at_ceiling(cloud, 0.03, lowest_ceiling((5120.0,) * 4)).all()


def test_model_fitted_on_a_sample_transfers() -> None:
    before = textured((256, 256), 6)
    after = add_structure(0.8 * before + 100, slice(40, 70), slice(40, 70))
    b, a = make_scene(before), make_scene(after)
    full = fit_change_model(b, a)
    half = fit_change_model(make_scene(before[:, :, :128]), make_scene(after[:, :, :128]))
    assert half.threshold == pytest.approx(full.threshold, rel=0.15)
    res = apply_change_model(half, b, a)
    assert (res.mask[40:70, 40:70] == 1).mean() > 0.7


def test_pixel_size_on_geographic_grid() -> None:
    g = Grid(CRS.from_epsg(4326), Affine(0.0001, 0, 2.0, 0, -0.0001, 48.0), 100, 100)
    assert 7.0 < pixel_size_m(g) < 9.5


def test_rgb_only_half_metre_pair() -> None:
    before = textured((256, 256), 7, bands=3)
    after = add_structure(before * 0.9 + 10, slice(100, 160), slice(100, 150))
    res = detect_changes(
        make_scene(before, 0.5, ("red", "green", "blue")),
        make_scene(after, 0.5, ("red", "green", "blue")),
    )
    assert (res.mask[105:155, 105:145] == 1).mean() > 0.7
    assert (res.mask[:80] == 1).mean() < 0.01


def field_and_paving() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Grass on the left 120 columns (NDVI ~0.7), paving on the right; by AFTER the grass dried
    (visible x1.35 + 100, near infrared x0.75) while the paving changed only by the sensor's
    gain (x1.1 + 30), and a building went up on the paving. Returns before, after, the
    building's truth mask and the margin around the field's edge and the building (where the
    edge's contrast did change)."""
    rng = np.random.default_rng(7)
    shape = (200, 200)
    tex = ndi.gaussian_filter(rng.normal(size=shape), 6) * 400
    tex += ndi.gaussian_filter(rng.normal(size=shape), 1.2) * 150
    grass = np.array([400.0, 600.0, 350.0, 2500.0])[:, None, None]
    paving = np.array([1300.0, 1400.0, 1250.0, 1500.0])[:, None, None]
    field = np.zeros(shape, bool)
    field[:, :120] = True
    before = np.where(field, grass, paving) + tex * np.array([0.3, 0.35, 0.3, 0.8])[:, None, None]
    dried = before * np.array([1.35, 1.3, 1.35, 0.75])[:, None, None]
    dried += np.array([100.0, 100.0, 100.0, 0.0])[:, None, None]
    after = np.where(field, dried, 1.1 * before + 30) + rng.normal(0, 8, (4, *shape))
    r, c = slice(80, 110), slice(140, 180)
    after = add_structure(after.astype(np.float32), r, c)
    truth = np.zeros(shape, bool)
    truth[r, c] = True
    margin = ndi.binary_dilation(truth, iterations=3)
    margin[:, 114:126] = True
    return before.astype(np.float32), after, truth, margin


def test_grass_that_changed_with_the_season_leaves_the_paving_quiet(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Vegetated and bare ground get a normalisation each: the dried grass and the paving are
    no change, the new building is. With one line per band through both (strata and the pale
    ground's law switched off), the paving reads as changed."""
    before, after, truth, margin = field_and_paving()
    res = detect_changes(make_scene(before), make_scene(after))
    assert res.stats["strata"] is not None
    flagged = res.mask == 1
    assert (flagged & truth).sum() / truth.sum() > 0.7, "the building is found"
    assert flagged[~margin].mean() < 0.005, "the grass and the paving are no change"
    monkeypatch.setattr("sohae_watch.change.fit_strata", lambda *args, **kwargs: None)
    monkeypatch.setattr("sohae_watch.change.fit_pale_law", lambda *args, **kwargs: None)
    res = detect_changes(make_scene(before), make_scene(after))
    assert res.stats["strata"] is None
    assert ((res.mask == 1) & ~margin)[:, 126:].mean() > 0.5, "the paving reads as changed"


def test_a_blue_roof_green_by_its_ndvi_is_read_with_the_fit_that_explains_it() -> None:
    """A blue roof paint reflects near infrared (NDVI ~0.38 on both dates, above the cut at
    0.3), so its NDVI puts it with the grass; but it changed as the paving did (the sensor's
    gain), not as the grass that dried. Read with the vegetated fit, the whole roof was flagged;
    a pixel vegetated on both dates now takes whichever stratum's fit explains it better."""
    rng = np.random.default_rng(11)
    shape = (200, 200)
    tex = ndi.gaussian_filter(rng.normal(size=shape), 3) * 1500
    grass = np.array([400.0, 600.0, 350.0, 2500.0])[:, None, None]
    paving = np.array([1300.0, 1400.0, 1250.0, 1500.0])[:, None, None]
    concrete = np.array([2800.0, 2900.0, 3000.0, 3100.0])[:, None, None]
    blue = np.array([1300.0, 2100.0, 3200.0, 2900.0])[:, None, None]
    field = np.zeros(shape, bool)
    field[:, :120] = True
    roof = np.zeros(shape, bool)
    roof[20:60, 140:185] = True
    apron = np.zeros(shape, bool)  # bright concrete: the bare ground spans the roof's levels
    apron[150:195, 130:195] = True
    before = np.where(field, grass, np.where(roof, blue, np.where(apron, concrete, paving)))
    before = before + tex * np.array([0.3, 0.35, 0.3, 0.8])[:, None, None]
    dried = before * np.array([1.35, 1.3, 1.35, 0.75])[:, None, None]
    dried += np.array([100.0, 100.0, 100.0, 0.0])[:, None, None]
    after = np.where(field, dried, 1.1 * before + 30) + rng.normal(0, 8, (4, *shape))
    for x in (before, after):  # the roof is green by its NDVI on both dates
        assert (ndvi(x[0], x[3])[roof] > VEGETATED_NDVI).all()
    res = detect_changes(
        make_scene(before.astype(np.float32)), make_scene(after.astype(np.float32))
    )
    assert res.stats["strata"] is not None
    flagged = res.mask == 1
    assert flagged[ndi.binary_erosion(roof, iterations=3)].mean() < 0.01, "the roof is no change"
    # the margins of the field, the roof and the apron are left out: an edge between grounds
    # whose gains differ changes its contrast (as in field_and_paving)
    edges = ndi.binary_dilation(roof | apron, iterations=4) & ~ndi.binary_erosion(
        roof | apron, iterations=4
    )
    edges[:, 114:126] = True
    assert flagged[~edges].mean() < 0.005, "the grass, the paving and the apron are no change"


# --- no-change pairs made from a real Sentinel-2 image --------------------------------------


def _real_before() -> np.ndarray:
    rasterio = pytest.importorskip("rasterio")
    path = REAL / "oscd-rennes" / "before.tif"
    if not path.exists():
        pytest.skip("../shared/data/real is not available")
    with rasterio.open(path) as src:
        return src.read().astype(np.float32)


def _sun_shading(shape: tuple[int, int]) -> np.ndarray:
    """A smooth illumination field as from a new sun angle over gentle relief (±8 %)."""
    rng = np.random.default_rng(11)
    relief = ndi.gaussian_filter(rng.normal(size=shape), 25)
    relief /= np.abs(relief).max()
    return (1.0 + 0.08 * relief).astype(np.float32)


def _shift(x: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Content moved by (dy, dx) pixels; the strip uncovered at the edge is nodata (NaN)."""
    out = np.roll(x, (dy, dx), axis=(1, 2)).astype(np.float32)
    if dy > 0:
        out[:, :dy] = np.nan
    elif dy < 0:
        out[:, dy:] = np.nan
    if dx > 0:
        out[:, :, :dx] = np.nan
    elif dx < 0:
        out[:, :, dx:] = np.nan
    return out


NO_CHANGE = {
    "gain_offset": lambda x, rng: x * np.array([1.3, 1.2, 1.15, 0.9])[:, None, None] + 150,
    "noise": lambda x, rng: x + rng.normal(0, 0.02 * x.std(), x.shape),
    "shift_1px": lambda x, rng: _shift(x, 1, -1),
    "sun_angle": lambda x, rng: (x * 0.85 + 40) * _sun_shading(x.shape[1:]),
    "snow": lambda x, rng: 0.45 * x + 0.55 * np.percentile(x, 99.5, axis=(1, 2), keepdims=True),
    "all_at_once": lambda x, rng: _shift(
        (x * 1.2 + 100) * _sun_shading(x.shape[1:]) + rng.normal(0, 0.02 * x.std(), x.shape), 0, 1
    ),
}


@pytest.mark.parametrize("kind", sorted(NO_CHANGE))
def test_no_change_pair_stays_quiet(kind: str) -> None:
    before = _real_before()
    rng = np.random.default_rng(3)
    after = NO_CHANGE[kind](before, rng).astype(np.float32)
    res = detect_changes(make_scene(before), make_scene(after))
    assert false_alarm_rate(res) < 0.005, f"{kind}: {false_alarm_rate(res):.4f} flagged"
    assert not_observable_rate(res) < 0.05, f"{kind}: {not_observable_rate(res):.4f} not observable"


def test_real_oscd_beats_cva_otsu() -> None:
    rasterio = pytest.importorskip("rasterio")
    from sohae_watch.threshold import otsu

    case = REAL / "oscd-rennes"
    if not case.exists():
        pytest.skip("../shared/data/real is not available")
    with rasterio.open(case / "before.tif") as s:
        b = s.read().astype(np.float32)
    with rasterio.open(case / "after.tif") as s:
        a = s.read().astype(np.float32)
    with rasterio.open(case / "truth.tif") as s:
        t = s.read(1) == 1

    def f1(pred: np.ndarray) -> float:
        tp = (pred & t).sum()
        return float(2 * tp / (pred.sum() + t.sum()))

    res = detect_changes(make_scene(b), make_scene(a))
    mag = np.sqrt(((a - b) ** 2).sum(0))
    assert f1(res.mask == 1) > f1(mag > otsu(mag)) + 0.15


@pytest.mark.parametrize("units", [1e-4, 1e4, 255.0 / 65535.0, 1.0 / 8.0, 6.0])
def test_dates_in_other_units_give_the_same_mask(units: float) -> None:
    """AFTER in reflectance (0-1) against BEFORE in counts: the fit's gain bound (4x) took
    the units for a collapsed fit, and the mask was reported untrusted ('snow, haze or change
    almost everywhere'). Units are now told from the ground by a level ratio beyond 100x, or
    beyond 4x with every band's quantiles scaled alike (an 8-bit product against an 11-bit
    one), and the mask is that of the pair in one unit."""
    before = textured((200, 200), 1)
    rng = np.random.default_rng(2)
    after = 1.2 * before + 50 + rng.normal(0, 8, before.shape).astype(np.float32)
    after = add_structure(after, slice(80, 110), slice(60, 100))
    same = detect_changes(make_scene(before), make_scene(after))
    other = detect_changes(make_scene(before), make_scene(after * np.float32(units)))
    assert (same.mask == 1).sum() > 600
    assert other.stats["units_factor"] == pytest.approx(units, rel=0.5)
    assert (other.mask != same.mask).sum() <= 0.001 * same.mask.size
