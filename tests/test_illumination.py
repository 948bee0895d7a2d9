"""Shadows that moved with the sun: their laws, and the change stage reading them as no change."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage as ndi

from sohae_watch.change import detect_changes
from sohae_watch.illumination import fit_shadow_laws
from sohae_watch.radiometry import BandFit
from test_change import BANDS4, fit_where_windows_agree, make_scene

# the share of each band's lit value a cast shadow keeps (red, green, blue, near infrared): the
# diffuse skylight, bluest; not the generator's own values
SKYLIGHT = np.array([0.24, 0.27, 0.36, 0.19])
OFFSET = np.array([180.0, 210.0, 250.0, 120.0])  # the sensor's offset and the haze, each date
GRASS = np.array([500.0, 800.0, 420.0, 3200.0])
PAVING = np.array([1500.0, 1550.0, 1500.0, 1700.0])
WHITE_ROOF = np.array([3400.0, 3450.0, 3500.0, 3300.0])
DARK_ROOF = np.array([700.0, 720.0, 760.0, 800.0])  # a dark grey paint on the paving
TEAL_ROOF = np.array([1300.0, 2100.0, 3200.0, 2900.0])
SNOW = np.array([5200.0, 5300.0, 5400.0, 4300.0])


def _shadow(
    shape: tuple[int, int], tower: tuple[slice, slice], azimuth: float, length: float
) -> np.ndarray:
    """Where a tower's shadow falls (sun ``azimuth`` degrees clockwise from north, ``length``
    px), not on the tower itself."""
    m = np.zeros(shape, bool)
    m[tower] = True
    out = np.zeros(shape, bool)
    dx, dy = -math.sin(math.radians(azimuth)), math.cos(math.radians(azimuth))  # away from sun
    for t in np.arange(0.0, length, 0.5):
        out |= ndi.shift(m, (dy * t, dx * t), order=0)
    return out & ~m


def _moved_shadow_pair(seed: int) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Grass and paving at 1 m with eight towers; BEFORE's sun in the south-east, AFTER's low in
    the south-west: the towers' shadows fall elsewhere. On AFTER a dark grey roof is new on the
    paving and a white roof on the grass."""
    rng = np.random.default_rng(seed)
    shape = (240, 240)
    tex = ndi.gaussian_filter(rng.normal(size=shape), 2.0)
    tex = 1.0 + 0.12 * tex / tex.std()
    paved = np.zeros(shape, bool)
    paved[:, 150:] = True
    ground = np.where(paved, PAVING[:, None, None], GRASS[:, None, None]) * tex
    spots = [(r, c) for r in (40, 110, 180) for c in (40, 100, 190)][:8]
    towers = [(slice(r, r + 10), slice(c, c + 10)) for r, c in spots]
    shade_b = np.zeros(shape, bool)
    shade_a = np.zeros(shape, bool)
    for t in towers:
        shade_b |= _shadow(shape, t, 135.0, 14.0)
        shade_a |= _shadow(shape, t, 215.0, 24.0)
    roofs = np.zeros(shape, bool)
    for t in towers:
        roofs[t] = True
    new_dark = np.zeros(shape, bool)
    new_dark[200:225, 160:190] = True
    new_white = np.zeros(shape, bool)
    new_white[195:225, 60:95] = True
    # a cast shadow keeps the skylight's share, a little more or less from pixel to pixel
    wobble = 1.0 + 0.06 * rng.normal(size=shape)
    before = np.where(shade_b, ground * SKYLIGHT[:, None, None] * wobble, ground)
    after = np.where(shade_a, ground * SKYLIGHT[:, None, None] * wobble, ground)
    before = np.where(roofs, WHITE_ROOF[:, None, None], before)
    after = np.where(roofs, WHITE_ROOF[:, None, None], after)
    after = np.where(new_dark, DARK_ROOF[:, None, None], after)
    after = np.where(new_white, WHITE_ROOF[:, None, None], after)
    before = 0.95 * before + OFFSET[:, None, None] + rng.normal(0, 20, before.shape)
    after = 1.1 * after + OFFSET[:, None, None] + rng.normal(0, 20, after.shape)
    moved = (shade_b ^ shade_a) & ~ndi.binary_dilation(roofs | new_dark | new_white, iterations=3)
    return before, after, {"moved": moved, "dark": new_dark, "white": new_white}


def test_a_shadow_that_moved_with_the_sun_is_no_change() -> None:
    """Ground a tower's shadow came over or left keeps the skylight's share of its light: read
    with the scene's normalisation it was far darker (or brighter) than predicted in every band
    and flagged; read with the law of such ground, it is no change. The new dark roof on the
    paving (a grey darkening, but not to a shadow's depth nor with its blue) and the new white
    roof on the grass stay change."""
    before, after, where = _moved_shadow_pair(3)
    res = detect_changes(make_scene(before, 1.0), make_scene(after, 1.0))
    assert res.stats["shadow_laws"] is not None
    flagged = res.mask == 1
    assert flagged[where["moved"]].mean() < 0.05, "the moved shadows are no change"
    for name in ("dark", "white"):
        inner = ndi.binary_erosion(where[name], iterations=2)
        assert flagged[inner].mean() > 0.95, f"the new {name} roof is change"


def test_passes_and_tiles_equal_one_piece_with_shadow_laws(monkeypatch: pytest.MonkeyPatch) -> None:
    """A shadow's law is read per pixel, so any window agrees with the whole scene."""
    before, after, _ = _moved_shadow_pair(4)
    assert fit_where_windows_agree(monkeypatch, before, after, 1.0).shadows is not None


SCENE_FITS = tuple(BandFit(1.0, 0.0, 20.0) for _ in range(4))


def _population(
    rng: np.random.Generator, lit: np.ndarray, other: np.ndarray, n: int, share: float
) -> tuple[np.ndarray, np.ndarray]:
    """Unchanged grass (``1 - share`` of ``n``) and a population that went from ``lit`` to
    ``other``, each with a little texture and noise, as (bands, n) samples of both dates."""
    k = int(share * n)
    tex = 1.0 + 0.1 * rng.normal(size=n)
    b = GRASS[:, None] * tex
    a = b.copy()
    b[:, :k] = lit[:, None] * tex[:k]
    a[:, :k] = other[:, None] * tex[:k]
    b += OFFSET[:, None] + rng.normal(0, 20, b.shape)
    a += OFFSET[:, None] + rng.normal(0, 20, a.shape)
    return b, a


def test_the_law_of_shadowed_ground_keeps_the_skylights_share() -> None:
    rng = np.random.default_rng(5)
    b, a = _population(rng, GRASS, GRASS * SKYLIGHT, 60_000, 0.05)  # 5 % now in shadow
    laws = fit_shadow_laws(b, a, SCENE_FITS, BANDS4)
    assert laws is not None and laws.came is not None and laws.left is None
    # the law's line predicts the shadowed grass: D + s (lit - D), D the dark level near OFFSET
    lit = GRASS + OFFSET
    for k, f in enumerate(laws.came):
        want = OFFSET[k] + SKYLIGHT[k] * GRASS[k]
        assert f.gain * lit[k] + f.offset == pytest.approx(want, rel=0.08)
    # and a shadow that left: the reverse law
    laws = fit_shadow_laws(a, b, SCENE_FITS, BANDS4)
    assert laws is not None and laws.left is not None and laws.came is None


@pytest.mark.parametrize(
    ("lit", "other", "why"),
    [
        (SNOW, GRASS, "snow that melted: darker, but keeping more red than blue"),
        (TEAL_ROOF, WHITE_ROOF, "a teal roof painted white: brighter, but never dark"),
    ],
)
def test_what_is_not_a_shadow_gets_no_law(lit: np.ndarray, other: np.ndarray, why: str) -> None:
    """(Not tested, as it does not hold: a population of new grey roofs on paving that darkens
    about as a shadow does, with no moved shadow beside it, gets a law; see the README.)"""
    rng = np.random.default_rng(7)
    b, a = _population(rng, lit, other, 60_000, 0.05)
    laws = fit_shadow_laws(b, a, SCENE_FITS, BANDS4)
    assert laws is None, why


@pytest.mark.parametrize("bands", [("red", "green", "blue"), ("pan",)])
def test_a_shadow_law_without_near_infrared_or_colour(bands: tuple[str, ...]) -> None:
    """RGB only (LEVIR-like), or a single panchromatic band (no blue to compare with red): the
    law of shadowed grass is found all the same, each band keeping the skylight's share."""
    idx = {"red": 0, "green": 1, "blue": 2, "pan": 1}
    rows = [idx[b] for b in bands]
    rng = np.random.default_rng(5)
    b, a = _population(rng, GRASS, GRASS * SKYLIGHT, 60_000, 0.05)
    fits = tuple(BandFit(1.0, 0.0, 20.0) for _ in bands)
    laws = fit_shadow_laws(b[rows], a[rows], fits, bands)
    assert laws is not None and laws.came is not None
    lit = GRASS + OFFSET
    for k, f in zip(rows, laws.came, strict=True):
        want = OFFSET[k] + SKYLIGHT[k] * GRASS[k]
        assert f.gain * lit[k] + f.offset == pytest.approx(want, rel=0.08)
