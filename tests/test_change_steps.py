"""The change stage's shared steps against the plain scipy filters they stand for."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from sohae_watch.change_steps import gradient_magnitude, near_nodata


@pytest.mark.parametrize("sigma", [0.5, 1.0, 1.7, 3.0])
def test_gradient_magnitude_is_scipy_gaussian_gradient(sigma: float) -> None:
    rng = np.random.default_rng(3)
    img = rng.normal(100, 20, (37, 53)).astype(np.float32)
    gx = ndi.gaussian_filter1d(img, sigma, axis=1, order=1, mode="nearest")
    gx = ndi.gaussian_filter1d(gx, sigma, axis=0, order=0, mode="nearest")
    gy = ndi.gaussian_filter1d(img, sigma, axis=0, order=1, mode="nearest")
    gy = ndi.gaussian_filter1d(gy, sigma, axis=1, order=0, mode="nearest")
    expected = np.sqrt(gx * gx + gy * gy)
    got = gradient_magnitude(img, sigma)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("size", [1, 3, 5, 9])
@pytest.mark.parametrize(
    "where", ["none", "middle", "corner", "edge", "scattered", "sides", "near runs"]
)
def test_near_nodata_is_minimum_filter(size: int, where: str) -> None:
    rng = np.random.default_rng(size)
    obs = np.ones((40, 60), bool)
    if where == "middle":
        obs[18:21, 30] = False
    elif where == "corner":
        obs[0, 0] = False
    elif where == "edge":
        obs[:, -2:] = False
    elif where == "scattered":
        obs[rng.random(obs.shape) < 0.01] = False
    elif where == "sides":  # a registered date: a few columns missing at each side
        obs[:, :3] = False
        obs[5:, -2:] = False
    elif where == "near runs":  # bad columns 2 r + 1 apart (one run), 2 r + 2 (two), r + 1
        r = 2 * (size // 2)
        obs[10:12, [5, 5 + 2 * r + 1, 30, 30 + 2 * r + 2]] = False
        obs[30, [50, 51 + r]] = False
    x = rng.normal(size=obs.shape).astype(np.float32) + 5
    expected = x.copy()
    expected[~ndi.minimum_filter(obs, size=size, mode="nearest")] = 0
    near_nodata(x, obs, size)
    np.testing.assert_array_equal(x, expected)
    if where != "none":
        assert (x == 0).any()
