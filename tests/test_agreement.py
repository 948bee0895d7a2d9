"""Whether two dates show the same ground: the share of the textured neighbourhoods whose dates
correlate, against scenes whose truth is known by construction."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage as ndi

from sohae_watch.agreement import (
    MOSTLY_DIFFERENT,
    mostly_different,
    noise_sigma,
    structure_agreement,
)

SHAPE = (240, 240)
SIGMA = 5.0  # neighbourhood, pixels


def _texture(seed: int) -> np.ndarray:
    """Blobs of about 3 px with a spread of ~100 DN on a level of 1000 (structure far above the
    noise the tests add)."""
    rng = np.random.default_rng(seed)
    t = ndi.gaussian_filter(rng.standard_normal(SHAPE), 3.0)
    return (1000.0 + 100.0 * t / t.std()).astype(np.float32)


def _noise(seed: int, sd: float) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, sd, SHAPE).astype(np.float32)


ALL = np.ones(SHAPE, dtype=bool)


@pytest.mark.parametrize("sd", [2.0, 10.0, 40.0])
def test_noise_sigma_of_white_noise_over_structure(sd: float) -> None:
    """The estimate ignores smooth structure and finds the added noise within 10 %."""
    img = _texture(0) + _noise(1, sd)
    assert noise_sigma(img, ALL) == pytest.approx(sd, rel=0.1)


def test_the_same_ground_under_another_sun_and_sensor_agrees() -> None:
    """Gain, offset and noise change nothing: every textured neighbourhood agrees."""
    before = _texture(0) + _noise(1, 5.0)
    after = 1.4 * _texture(0) - 300.0 + _noise(2, 5.0)
    assert structure_agreement(before, after, ALL, SIGMA) > 0.99


def test_unrelated_ground_does_not_agree() -> None:
    before = _texture(0) + _noise(1, 5.0)
    after = _texture(3) + _noise(2, 5.0)
    share = structure_agreement(before, after, ALL, SIGMA)
    assert share < 0.1
    assert mostly_different(share)


@pytest.mark.parametrize("changed", [0.25, 0.5, 0.75])
def test_the_share_follows_the_ground_that_changed(changed: float) -> None:
    """The left ``changed`` share of the columns holds other ground on AFTER: the agreeing share
    is the rest, within a neighbourhood's width at the border."""
    before = _texture(0) + _noise(1, 5.0)
    after = before.copy()
    k = int(changed * SHAPE[1])
    after[:, :k] = _texture(3)[:, :k]
    share = structure_agreement(before, after, ALL, SIGMA)
    assert abs(share - (1.0 - changed)) < 3 * SIGMA / SHAPE[1]
    assert mostly_different(share) == (1.0 - changed < MOSTLY_DIFFERENT)


def test_featureless_ground_gives_no_verdict() -> None:
    """Noise over flat ground on both dates: nothing is textured, so no verdict (NaN), which is
    not "mostly different"."""
    share = structure_agreement(1000 + _noise(1, 5.0), 1200 + _noise(2, 5.0), ALL, SIGMA)
    assert math.isnan(share)
    assert not mostly_different(share)


def test_flat_ground_that_became_textured_does_not_agree() -> None:
    """A bare field built over: flat on BEFORE, textured on AFTER; also with no noise at all
    (a flat date has no correlation to speak of, which is no agreement)."""
    share = structure_agreement(1000 + _noise(1, 5.0), _texture(0) + _noise(2, 5.0), ALL, SIGMA)
    assert share < 0.05
    flat = np.full(SHAPE, 1000.0, dtype=np.float32)
    assert structure_agreement(flat, _texture(0), ALL, SIGMA) == 0.0
    assert structure_agreement(_texture(0), flat, ALL, SIGMA) == 0.0


def test_only_valid_and_not_excluded_pixels_count() -> None:
    """Unrelated ground where the pixels are not valid (a cloud) or are excluded (vegetation)
    leaves the share of the rest: all of it agrees."""
    before = _texture(0) + _noise(1, 5.0)
    after = before + _noise(2, 5.0)
    after[:, :120] = _texture(3)[:, :120]
    valid = ALL.copy()
    valid[:, :120] = False
    assert structure_agreement(before, after, valid, SIGMA) > 0.99
    # excluded pixels still feed their neighbours' moments: the border band is left out too
    excluded = np.zeros(SHAPE, dtype=bool)
    excluded[:, : 120 + int(3 * SIGMA)] = True
    assert structure_agreement(before, after, ALL, SIGMA, exclude=excluded) > 0.99
    assert structure_agreement(before, after, ALL, SIGMA) < 0.6
