"""Block reductions of the change stage's coarser grids against the plain reshape forms."""

import numpy as np
import pytest

from sohae_watch.blocks import block_all, block_mean


@pytest.mark.parametrize("s", [1, 2, 3, 4, 8])
def test_block_mean_and_all_match_reshape(s: int) -> None:
    rng = np.random.default_rng(s)
    x = rng.random((3, 24 * 3, 24 * 5), dtype=np.float32)
    x[0, 5, 7] = np.nan  # NaN spreads to its block
    m = rng.random((24 * 3, 24 * 5)) > 0.1
    h, w = x.shape[1] // s, x.shape[2] // s
    want = x.reshape(3, h, s, w, s).astype(np.float64).mean(axis=(2, 4))
    got = block_mean(x, s)
    assert got.dtype == np.float32 and got.shape == (3, h, w)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert np.isnan(got[0, 5 // s, 7 // s]) and np.isfinite(got).sum() == got.size - 1
    np.testing.assert_array_equal(block_all(m, s), m.reshape(h, s, w, s).all(axis=(1, 3)))
