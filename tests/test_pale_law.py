"""Ground pale on both dates (paving, roofs) read with its own law across the seasons."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

import sohae_watch.change as change
from sohae_watch.change import detect_changes
from sohae_watch.illumination import fit_pale_law
from sohae_watch.radiometry import BandFit
from test_change import fit_where_windows_agree, make_scene, with_noise

# red, green, blue, near infrared (DN)
BROWN_GRASS = np.array([1500.0, 1300.0, 900.0, 2100.0])
GREEN_GRASS = np.array([600.0, 1100.0, 500.0, 4200.0])
PAVING = np.array([3000.0, 3000.0, 2800.0, 3300.0])
WHITE_ROOF = np.array([4200.0, 4250.0, 4300.0, 4100.0])
RED_ROOF = np.array([3400.0, 1500.0, 1100.0, 3600.0])
SUN = 1.2  # AFTER's sun, higher: every surface that did not change is this much brighter


def _season_pair(seed: int) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """At 10 m: dormant grass brown on both dates whose colour shifts with the season (redder
    light, more near infrared), a field greening by spring (in places more than others), and
    paving that changes only with the higher sun. On AFTER a white roof is new on the grass and
    a paving block is painted red."""
    rng = np.random.default_rng(seed)
    shape = (240, 240)
    tex = ndi.gaussian_filter(rng.normal(size=shape), 2.0)
    tex = 1.0 + 0.08 * tex / tex.std()
    zone = np.zeros(shape, np.uint8)  # 0 dormant grass, 1 greening field, 2 paving
    zone[:, 110:160] = 1
    for r in range(10, 240, 60):
        zone[r : r + 30, 190:235] = 2
        zone[r : r + 30, 20:60] = 2
    greening = np.clip(0.5 + 0.2 * ndi.gaussian_filter(rng.normal(size=shape), 6) / 0.05, 0, 1)
    field = BROWN_GRASS[:, None, None] * (1 - greening) + GREEN_GRASS[:, None, None] * greening
    dormant = BROWN_GRASS * np.array([0.95, 1.0, 0.9, 1.25]) * SUN
    before = np.choose(zone, [BROWN_GRASS[:, None, None]] * 2 + [PAVING[:, None, None]]) * tex
    after = np.choose(zone, [dormant[:, None, None], field, SUN * PAVING[:, None, None]]) * tex
    where = {"paving": zone == 2}
    white = np.zeros(shape, bool)
    white[100:125, 70:95] = True
    after[:, white] = WHITE_ROOF[:, None] * SUN
    red = np.zeros(shape, bool)
    red[130:160, 195:230] = True
    after[:, red] = RED_ROOF[:, None] * SUN
    where["paving"] &= ~red
    where["white"], where["red"] = white, red
    before, after = with_noise(rng, before, after)
    return before, after, where


def test_paving_under_a_new_sun_across_the_seasons_is_no_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The scene's normalisation follows the grass and stubble, which green or shift with the
    season, and read every paving block as changed; read with the law of the ground pale on both
    dates, paving is no change. A new white roof on the grass and a paving block painted red
    stay change."""
    before, after, where = _season_pair(1)
    b, a = make_scene(before), make_scene(after)
    inner = {k: ndi.binary_erosion(v, iterations=2) for k, v in where.items()}

    res = detect_changes(b, a)
    assert res.stats["pale_law"] is not None
    flagged = res.mask == 1
    assert flagged[inner["paving"]].mean() < 0.02, "paving under a new sun is no change"
    for name in ("white", "red"):
        assert flagged[inner[name]].mean() > 0.95, f"the {name} roof is change"

    monkeypatch.setattr(change, "fit_pale_law", lambda *args, **kwargs: None)
    without = detect_changes(b, a).mask == 1
    assert without[inner["paving"]].mean() > 0.5, "the scene's fit misreads the paving"


def test_passes_and_tiles_equal_one_piece_with_a_pale_law(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pale law is read per pixel, so any window agrees with the whole scene."""
    before, after, _ = _season_pair(2)
    assert fit_where_windows_agree(monkeypatch, before, after).pale is not None


def _sample(after_of: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sampled pixels: 70 % brown grass, 30 % paving; AFTER = ``after_of`` (4, 2) gains for
    (the grass, the paving) times BEFORE, plus noise."""
    rng = np.random.default_rng(seed)
    n = 20000
    pale = rng.random(n) < 0.3
    base = np.where(pale, PAVING[:, None], BROWN_GRASS[:, None])
    before = base * (1 + 0.08 * rng.normal(size=n))
    after = before * np.where(pale, after_of[:, 1:2], after_of[:, 0:1])
    return before + rng.normal(0, 20, before.shape), after + rng.normal(0, 20, after.shape)


def test_no_pale_law_where_the_fits_read_the_paving() -> None:
    """When the paving follows the scene's line (the same light on everything), the fits read
    it, and no law of its own is kept; when it follows another line, one is."""
    bands = ("red", "green", "blue", "nir")
    same = np.full((4, 2), SUN)
    before, after = _sample(same, 3)
    scene = tuple(BandFit(SUN, 0.0, 20.0 * SUN) for _ in bands)
    assert fit_pale_law(before, after, scene, bands) is None
    season = np.array([[0.8, SUN], [1.0, SUN], [0.7, SUN], [1.6, SUN]])
    before, after = _sample(season, 4)
    grass = tuple(BandFit(g, 0.0, 40.0) for g in season[:, 0])
    law = fit_pale_law(before, after, grass, bands)
    assert law is not None
    np.testing.assert_allclose([f.gain for f in law.fits], SUN, rtol=0.03)
