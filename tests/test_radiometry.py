"""Relative normalisation fitted on the pixels that did not change."""

from __future__ import annotations

import numpy as np
import pytest

from sohae_watch.radiometry import fit_normalisation


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
