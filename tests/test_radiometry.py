"""Relative normalisation fitted on the pixels that did not change."""

from __future__ import annotations

import numpy as np
import pytest

from sohae_watch.radiometry import (
    COLLAPSED,
    BandFit,
    agreeing_share,
    fit_normalisation,
    fit_strata,
    follows_neither,
    matched,
    scatter_shares,
    units_factor,
)


def _pair(changed: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Four bands of 200 000 pixels: AFTER = 1.25 BEFORE + 40 + noise (sd 30), except a share
    ``changed`` of the pixels, which hold unrelated values."""
    rng = np.random.default_rng(seed)
    n = 200_000
    before = rng.gamma(4.0, 300.0, (4, n)).astype(np.float32)
    after = (1.25 * before + 40.0 + rng.normal(0.0, 30.0, (4, n))).astype(np.float32)
    k = int(changed * n)
    after[:, :k] = rng.gamma(4.0, 400.0, (4, k)).astype(np.float32)
    return before, after


@pytest.mark.parametrize("changed", [0.0, 0.3, 0.6])
def test_gain_and_offset_of_the_unchanged_pixels(changed: float) -> None:
    """Up to most of the pixels changed (a least-squares line through them all: gain 0.87,
    offset 511 at 30 %), the fit is that of the pixels that did not."""
    before, after = _pair(changed)
    for fit in fit_normalisation(before, after):
        assert abs(fit.gain - 1.25) < 0.01
        assert abs(fit.offset - 40.0) < 15.0  # against a band spread of ~750
        # the noise's 30, a little less from the no-change set's trimming (above the floor, 2 %
        # of the band's spread: ~14 here)
        assert 24.0 < fit.sigma < 32.0


def _two_grounds(vegetated: float) -> tuple[np.ndarray, np.ndarray]:
    """A share ``vegetated`` of 100 000 pixels is grass (NDVI ~0.6), which by AFTER dried
    (gain 1.4 in the visible, 0.8 in the near infrared); the rest is bare (NDVI ~0), which
    changed only by a gain of 1.1. Bands red, green, blue, nir; noise sd 10."""
    rng = np.random.default_rng(1)
    n = 100_000
    k = int(vegetated * n)
    level = rng.gamma(6.0, 1.0 / 6.0, n)  # brightness around 1
    grass = np.array([300.0, 500.0, 250.0, 1200.0])[:, None]
    bare = np.array([1200.0, 1150.0, 1100.0, 1250.0])[:, None]
    before = np.where(np.arange(n) < k, grass, bare) * level
    gain = np.where(np.arange(n) < k, np.array([1.4, 1.4, 1.4, 0.8])[:, None], 1.1)
    after = before * gain + rng.normal(0.0, 10.0, (4, n))
    return before.astype(np.float32), after.astype(np.float32)


def test_vegetated_and_bare_ground_get_a_fit_each() -> None:
    before, after = _two_grounds(0.6)
    strata = fit_strata(before, after, ("red", "green", "blue", "nir"))
    assert strata is not None
    for b, want in enumerate((1.4, 1.4, 1.4, 0.8)):
        assert abs(strata.vegetated[b].gain - want) < 0.02
        assert abs(strata.bare[b].gain - 1.1) < 0.02
    # the scene-wide fit follows the grass, the larger stratum: the bare ground is off its line
    assert abs(fit_normalisation(before, after)[0].gain - 1.1) > 0.1
    classes = strata.classes(before, after)
    assert (classes[:60_000] == 1).mean() > 0.99 and (classes[60_000:] == 2).mean() > 0.99


@pytest.mark.parametrize(
    ("vegetated", "bands"),
    [
        (0.02, ("red", "green", "blue", "nir")),
        (0.98, ("red", "green", "blue", "nir")),
        (0.6, ("red", "green", "blue", "alpha")),
    ],
)
def test_no_strata_without_two_grounds_or_a_near_infrared_band(
    vegetated: float, bands: tuple[str, ...]
) -> None:
    before, after = _two_grounds(vegetated)
    assert fit_strata(before, after, bands) is None


def _matched(before: np.ndarray, after: np.ndarray) -> bool:
    return matched(*scatter_shares(after, fit_normalisation(before, after)))


def test_a_pair_that_shares_no_ground_is_not_matched() -> None:
    """With most of the pixels changed the unchanged rest is still found; with every pixel
    unrelated (snow over one date's ground, change everywhere) no line explains any band."""
    assert _matched(*_pair(0.6))
    rng = np.random.default_rng(2)
    before = rng.gamma(4.0, 300.0, (4, 50_000)).astype(np.float32)
    after = rng.gamma(4.0, 400.0, (4, 50_000)).astype(np.float32)
    assert not _matched(before, after)
    spread, level = scatter_shares(after, fit_normalisation(before, after))
    assert min(spread) >= 1.0 and min(level) >= 0.1


def test_a_featureless_pair_is_matched() -> None:
    """Two dates of the same flat ground differ by noise only: the scatter is as large as the
    band's spread, but a few per cent of its level, so the pair is matched."""
    rng = np.random.default_rng(3)
    before = (1000.0 + rng.normal(0.0, 10.0, (4, 50_000))).astype(np.float32)
    after = (1000.0 + rng.normal(0.0, 10.0, (4, 50_000))).astype(np.float32)
    spread, level = scatter_shares(after, fit_normalisation(before, after))
    assert min(spread) >= 1.0 and max(level) < 0.05
    assert _matched(before, after)


def test_a_scene_wide_fit_far_from_both_strata_follows_neither() -> None:
    """The scene-wide line near the grass's or the paving's in every band follows one of them;
    more than twice as steep or flat as both in any band (the samples' Aug 3 -> Feb 16 pair,
    where it runs through snow: red gain 3.0 against the strata's 0.64 and 0.83), neither."""
    before, after = _two_grounds(0.5)
    strata = fit_strata(before, after, ("red", "green", "blue", "nir"))
    assert strata is not None
    assert not follows_neither(strata, fit_normalisation(before, after))

    def scene(*gains: float) -> list[BandFit]:
        return [BandFit(g, 0.0, 1.0) for g in gains]

    # grass 1.4 / 1.4 / 1.4 / 0.8, paving 1.1 in every band
    assert not follows_neither(strata, scene(1.1, 1.4, 2.7, 0.6))
    assert follows_neither(strata, scene(1.1, 1.4, 3.0, 0.8))  # 3.0 / 1.4 > 2
    assert follows_neither(strata, scene(1.1, 1.4, 1.4, 0.35))  # 0.8 / 0.35 > 2


def test_the_agreeing_share_counts_the_pixels_within_the_fitted_law() -> None:
    """With nothing changed, most pixels lie within the law's 90 % quantile (83 % here: the
    trimmed fit's sigma is a little under the noise's); with 60 % changed, most of the other
    40 %; with lines that describe no population (each offset ten sigmas off), hardly any: a
    collapsed fit, which is not matched."""
    before, after = _pair(0.0)
    assert 0.8 < agreeing_share(before, after, fit_normalisation(before, after)) <= 0.9
    before, after = _pair(0.6)
    fits = fit_normalisation(before, after)
    assert 0.3 < agreeing_share(before, after, fits) < 0.42
    off = [BandFit(f.gain, f.offset + 10 * f.sigma, f.sigma) for f in fits]
    assert agreeing_share(before, after, off) < COLLAPSED
    assert not matched(*scatter_shares(after, fits), agreeing_share(before, after, off))


def test_an_8_bit_product_against_an_11_bit_one_is_fitted_as_units() -> None:
    """A level ratio of 8 is beyond the gain any sun, season or sensor gives (4): the fit was
    clipped there and the mask flagged what the clip left (4.8 % of the samples' Jul 20 -> Aug 3
    AOI against 0.8 %, with no warning). Every decile and quartile scaled alike: units."""
    before, after = _pair(0.3)
    after = after / np.float32(8.0)
    assert units_factor(before, after) == pytest.approx(1.25 / 8, rel=0.1)
    for fit in fit_normalisation(before, after):
        assert fit.gain == pytest.approx(1.25 / 8, rel=0.01)
        assert fit.offset == pytest.approx(40.0 / 8, abs=15.0 / 8)


def test_snow_over_dark_ground_is_not_taken_for_units() -> None:
    """Snow lifts dark ground many times and bright ground little: the level ratio passes 4, but
    the quantiles did not scale alike (the samples' Aug 3 -> Feb 16: 4.0x, quantile ratios 24x
    apart; generated snow pairs 5.8-27x apart, pairs without snow or cloud at most 3.3x)."""
    rng = np.random.default_rng(3)
    n = 100_000
    before = rng.gamma(4.0, 100.0, (4, n)).astype(np.float32)
    after = 1.1 * before + rng.normal(0.0, 10.0, (4, n))
    snow = rng.random(n) < 0.7
    after[:, snow] = rng.normal(6000.0, 300.0, (4, int(snow.sum())))
    assert np.median(after) / np.median(before) > 4
    assert units_factor(before, after.astype(np.float32)) == 1.0


def test_strata_take_the_scenes_units() -> None:
    """A stratum's own level ratio can fall inside the gain bound while its gains fall outside
    it: decided per stratum, the dried grass's near infrared was clipped at 1/4."""
    before, after = _two_grounds(0.6)
    s = np.float32(0.21)
    units = units_factor(before, after * s)
    assert units == pytest.approx(1.1 * s, rel=0.1)
    strata = fit_strata(before, after * s, ("red", "green", "blue", "nir"), units=units)
    assert strata is not None
    for b, want in enumerate((1.4, 1.4, 1.4, 0.8)):
        assert strata.vegetated[b].gain == pytest.approx(want * s, rel=0.03)
        assert strata.bare[b].gain == pytest.approx(1.1 * s, rel=0.03)
