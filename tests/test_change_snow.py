"""Snow that came or went is neither change nor cloud; a saturating cloud is not observable."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from sohae_watch.change import ChangeResult, detect_changes
from test_change import make_scene, textured


def _site(seed: int) -> np.ndarray:
    """Half-metre ground with roads and roofs: strong edges that show through snow."""
    img = textured((240, 240), seed) * 0.5
    for r in (40, 120, 200):
        img[:, r : r + 6, :] -= 400  # dark roads
    img[:, 60:100, 150:200] += 900  # a roof
    return img.astype(np.float32)


def _snow(img: np.ndarray, cover: np.ndarray) -> np.ndarray:
    """Snow on the ground: bright, colourless, lower in the near infrared; roads and the roof stay
    darker than the snow around them (ploughed, melted)."""
    level = np.array([6000.0, 6100.0, 6200.0, 4800.0])[:, None, None]
    dark = (img.mean(axis=0) < np.percentile(img.mean(axis=0), 8))[None]
    snowy = np.where(dark, img, 0.3 * img + level)
    return np.where(cover[None], snowy, img).astype(np.float32)


def test_melting_snow_is_neither_change_nor_cloud() -> None:
    ground = _site(21)
    rng = np.random.default_rng(5)
    patchy = ndi.gaussian_filter(rng.normal(size=(240, 240)), 12) > 0
    before = _snow(ground, np.ones((240, 240), bool))  # all snow
    after = _snow(ground * 1.05 + 30, patchy)  # half of it melted
    res = _detect(before, after, 0.5)
    assert (res.mask == 255).mean() < 0.05, "melting snow is not cloud"
    assert (res.mask == 1).mean() < 0.02, "melting snow is not change"


def test_saturated_cloud_is_not_observable() -> None:
    before = _site(22)
    yy, xx = np.mgrid[:240, :240]
    blob = np.exp(-(((yy - 120) ** 2 + (xx - 120) ** 2) / (2 * 30.0**2)))
    alpha = np.clip(blob * 2.0 - 0.3, 0, 1).astype(np.float32)[None]
    after = np.minimum(before * (1 - alpha) + 20000 * alpha, 16383.0)
    res = _detect(before, after, 0.5)
    core = blob > 0.6
    assert (res.mask[core] == 255).mean() > 0.9
    assert (res.mask == 1).mean() < 0.02


def _detect(before: np.ndarray, after: np.ndarray, res_m: float) -> ChangeResult:
    return detect_changes(make_scene(before, res_m), make_scene(after, res_m))


@pytest.mark.parametrize("ceiling", [2047.0, 16383.0])  # 11-bit (WorldView, GeoEye), 14-bit
def test_soft_cloud_rim_is_not_observable(ceiling: float) -> None:
    """A soft cloud: a core at the sensor's ceiling in every band and a wide semi-transparent rim
    through which the ground's edges stay visible; all of it with opacity above 0.15 is 255."""
    before = _site(23)
    yy, xx = np.mgrid[:240, :240]
    blob = np.exp(-(((yy - 120) ** 2 + (xx - 110) ** 2) / (2 * 35.0**2)))
    alpha = np.clip(1.6 * blob - 0.1, 0, 1).astype(np.float32)[None]
    after = np.minimum(before * (1 - alpha) + ceiling * alpha, ceiling) + 1.0  # ceiling reached
    after = np.minimum(np.round(after), ceiling).astype(np.float32)
    res = _detect(before, after, 0.5)
    rim = (alpha[0] > 0.2) & (alpha[0] < 0.6)
    assert (res.mask[alpha[0] > 0.2] == 255).mean() > 0.9
    assert (res.mask[rim] == 255).mean() > 0.85, "the semi-transparent rim is not observable"
    clear = ndi.distance_transform_edt(alpha[0] == 0) > 20  # beyond the 10 m safety margin
    assert (res.mask[clear] == 255).mean() < 0.02, "clear ground stays observable"
    assert (res.mask == 1).mean() < 0.02


def test_new_pale_paving_is_change_not_snow() -> None:
    """A new pale car park on a vegetated 10 m scene: whiter, greyer, with a smaller near-infrared
    rise than the grass it replaced (NIR rising less than the visible bands, like snow), but
    alone in its neighbourhood: it is change, not snow. (A guard; the regression it was written
    for, measured on OSCD, needs real texture to show: see benchmarks/README.md.)"""
    rng = np.random.default_rng(8)
    veg = np.array([500.0, 800.0, 450.0, 1800.0])[:, None, None]
    field = ndi.gaussian_filter(rng.normal(size=(200, 200)), 3).astype(np.float32)
    before = veg * (1 + 0.15 * field[None]) + rng.normal(0, 20, (4, 200, 200))
    for c in range(84, 116, 4):
        before[:, 80:120, c] = 200.0  # field paths: strong edges that the paving keeps
    after = before * 1.05 + 20 + rng.normal(0, 20, (4, 200, 200))
    pave = np.array([2600.0, 2650.0, 2700.0, 2400.0])[:, None, None]
    after[:, 90:110, 80:112] = pave + rng.normal(0, 30, (4, 20, 32))
    after[:, 80:120, 84:116:4] = 200.0
    res = _detect(before.astype(np.float32), after.astype(np.float32), 10.0)
    assert (res.mask[92:108, 82:110] == 1).mean() > 0.7
    assert (res.mask == 255).mean() < 0.05


def test_a_new_pale_roof_at_half_a_metre_is_change_not_snow() -> None:
    """The same at 0.5 m: a 20 x 30 m pale roof on grass, whiter and greyer, its near infrared
    rising less than its visible bands. The snow test's ~200 m neighbourhood was bounded in
    input pixels (64 px, 32 m at 0.5 m), so the roof filled its neighbourhood like a snowfield
    and was taken out of the change (the input audit's 600 m² roof, score 225 against a
    threshold of 2.5, mask 0)."""
    rng = np.random.default_rng(9)
    n = 300
    veg = np.array([500.0, 800.0, 450.0, 1800.0])[:, None, None]
    field = ndi.gaussian_filter(rng.normal(size=(n, n)), 4).astype(np.float32)
    before = veg * (1 + 0.15 * field[None]) + rng.normal(0, 20, (4, n, n))
    for r in range(20, n, 50):
        before[:, r : r + 4, :] = 200.0  # paths: strong edges all over
    after = before * 1.05 + 20 + rng.normal(0, 20, (4, n, n))
    roof = np.array([2600.0, 2650.0, 2700.0, 2400.0])[:, None, None]
    after[:, 100:140, 120:180] = roof + rng.normal(0, 30, (4, 40, 60))
    res = _detect(before.astype(np.float32), after.astype(np.float32), 0.5)
    assert (res.mask[104:136, 124:176] == 1).mean() > 0.9
    assert (res.mask == 1).mean() < 0.05
    assert (res.mask == 255).mean() < 0.05
