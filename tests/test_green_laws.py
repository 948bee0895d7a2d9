"""Ground green on both dates that follows a season of its own (woods, crops) read with its law."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from scipy import ndimage as ndi

import sohae_watch.change as change
from sohae_watch.change import detect_changes
from sohae_watch.illumination import fit_green_laws
from sohae_watch.radiometry import fit_strata
from test_change import fit_where_windows_agree, make_scene, with_noise

# red, green, blue, near infrared (DN), late summer
GRASS = np.array([600.0, 1100.0, 500.0, 4200.0])
WOODS = np.array([350.0, 650.0, 300.0, 2600.0])
CROP = np.array([500.0, 1000.0, 450.0, 3800.0])
PAVING = np.array([3000.0, 3000.0, 2800.0, 3300.0])
GREEN_ROOF = np.array([1100.0, 2500.0, 1900.0, 2600.0])  # a roof painted green (NDVI 0.4)
GREY_ROOF = np.array([2700.0, 2800.0, 2900.0, 3100.0])
# each ground's gains from late summer to autumn: the grass yellows, the evergreen woods darken
# under the lower sun, the crop ripens; the paving changes only with the sensor's gain
GAINS = {
    "grass": np.array([1.5, 1.05, 1.3, 0.8]),
    "woods": np.array([0.9, 0.9, 0.9, 0.9]),
    "crop": np.array([2.0, 1.3, 1.6, 0.7]),
    "paving": np.array([1.2, 1.2, 1.2, 1.2]),
}


def _autumn_pair(seed: int) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """At 10 m: grass over most of the scene, a wood (15 %), a field of crops (10 %) and paving
    (8 %), each ground with its own change of colour from late summer to autumn. On AFTER a roof
    painted green (green by its NDVI) and a grey roof are new on the grass."""
    rng = np.random.default_rng(seed)
    shape = (240, 240)
    tex = ndi.gaussian_filter(rng.normal(size=shape), 2.0)
    tex = 1.0 + 0.08 * tex / tex.std()
    zone = np.zeros(shape, np.uint8)  # 0 grass, 1 woods, 2 crop, 3 paving
    zone[20:110, 20:110] = 1
    zone[150:230, 140:210] = 2
    zone[30:100, 150:180] = 3
    zone[180:230, 30:60] = 3
    names = ("grass", "woods", "crop", "paving")
    spectra = (GRASS, WOODS, CROP, PAVING)
    before = np.choose(zone, [s[:, None, None] for s in spectra]) * tex
    after = (
        np.choose(
            zone, [(s * GAINS[n])[:, None, None] for n, s in zip(names, spectra, strict=True)]
        )
        * tex
    )
    where = {n: zone == k for k, n in enumerate(names)}
    for name, spectrum, rows, cols in (
        ("green roof", GREEN_ROOF, slice(130, 150), slice(40, 60)),
        ("grey roof", GREY_ROOF, slice(130, 150), slice(90, 110)),
    ):
        roof = np.zeros(shape, bool)
        roof[rows, cols] = True
        after[:, roof] = spectrum[:, None] * 0.9
        where[name] = roof
    before, after = with_noise(rng, before, after)
    return before, after, where


def test_woods_and_crops_with_a_season_of_their_own_are_no_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The vegetated stratum's fit follows the grass, which holds most of the green ground, and
    misreads the woods and the crops; read with their own laws, they are no change. New roofs on
    the grass stay change, a green one included."""
    before, after, where = _autumn_pair(1)
    b, a = make_scene(before), make_scene(after)
    inner = {k: ndi.binary_erosion(v, iterations=2) for k, v in where.items()}
    # the grass beyond the new roofs' reach (the decision's neighbourhood)
    inner["grass"] &= ndi.distance_transform_edt(~(where["green roof"] | where["grey roof"])) > 5

    res = detect_changes(b, a)
    assert res.stats["green_laws"] is not None and len(res.stats["green_laws"]) == 2
    flagged = res.mask == 1
    for name in ("woods", "crop", "grass", "paving"):
        assert flagged[inner[name]].mean() < 0.02, f"the {name} did not change"
    for name in ("green roof", "grey roof"):
        assert flagged[inner[name]].mean() > 0.95, f"the {name} is change"

    monkeypatch.setattr(change, "fit_green_laws", lambda *args, **kwargs: None)
    without = detect_changes(b, a).mask == 1
    for name in ("woods", "crop"):
        assert without[inner[name]].mean() > 0.5, f"the grass's fit misreads the {name}"


def _winter_pair(seed: int) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """At 10 m, in winter: grass brown on both dates (bare by its NDVI) and an evergreen wood on
    4 % of the scene, deeper in shade under AFTER's lower sun; a grey roof is new on the grass."""
    rng = np.random.default_rng(seed)
    shape = (240, 240)
    tex = ndi.gaussian_filter(rng.normal(size=shape), 2.0)
    tex = 1.0 + 0.08 * tex / tex.std()
    brown = np.array([1500.0, 1300.0, 900.0, 2100.0])
    woods = np.zeros(shape, bool)
    woods[30:78, 30:78] = True
    before = np.where(woods, WOODS[:, None, None], brown[:, None, None]) * tex
    after = (
        np.where(
            woods,
            (WOODS * np.array([0.7, 0.75, 0.7, 0.6]))[:, None, None],
            (brown * np.array([1.1, 1.0, 1.05, 0.9]))[:, None, None],
        )
        * tex
    )
    roof = np.zeros(shape, bool)
    roof[150:170, 150:170] = True
    after[:, roof] = GREY_ROOF[:, None] * 0.9
    before, after = with_noise(rng, before, after)
    return before, after, {"woods": woods, "roof": roof}


def test_winter_woods_beside_dormant_grass_without_strata(monkeypatch: pytest.MonkeyPatch) -> None:
    """The wood is all the ground green on both dates: too little for strata, so the scene's
    fit, which follows the grass, reads it. It gets a law of its own; the new roof stays change."""
    before, after, where = _winter_pair(5)
    b, a = make_scene(before), make_scene(after)
    inner = {k: ndi.binary_erosion(v, iterations=2) for k, v in where.items()}

    res = detect_changes(b, a)
    assert res.stats["strata"] is None and res.stats["green_laws"] is not None
    # 3.3 % flagged, through the texture term: the wood's texture fades with its own gain (0.7
    # against the ground's 1.05), a relative loss that counts in full where the ground is flatter
    # than the scene's typical texture (change_steps.texture_change; 1.0 % with the plain
    # difference of gradients, whose scale the textured ground widens)
    assert (res.mask == 1)[inner["woods"]].mean() < 0.05, "the wood did not change"
    assert (res.mask == 1)[inner["roof"]].mean() > 0.95, "the roof is change"
    monkeypatch.setattr(change, "fit_green_laws", lambda *args, **kwargs: None)
    without = detect_changes(b, a).mask == 1
    assert without[inner["woods"]].mean() > 0.5, "the scene's fit misreads the wood"


@pytest.mark.parametrize("pair", [_autumn_pair, _winter_pair])
def test_passes_and_tiles_equal_one_piece_with_green_laws(
    monkeypatch: pytest.MonkeyPatch, pair: Callable[[int], tuple[np.ndarray, np.ndarray, Any]]
) -> None:
    """The green laws are read per pixel (with strata and without), so any window agrees with
    the whole scene."""
    before, after, _ = pair(2)
    assert fit_where_windows_agree(monkeypatch, before, after).green is not None


def _sample(woods_gains: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sampled pixels: 60 % grass, 25 % paving, 15 % woods with ``woods_gains``."""
    rng = np.random.default_rng(seed)
    n = 20000
    kind = rng.choice(3, size=n, p=[0.6, 0.25, 0.15])
    base = np.choose(kind, [GRASS[:, None], PAVING[:, None], WOODS[:, None]])
    gains = np.choose(
        kind, [GAINS["grass"][:, None], GAINS["paving"][:, None], woods_gains[:, None]]
    )
    before = base * (1 + 0.08 * rng.normal(size=n))
    after = before * gains
    return before + rng.normal(0, 20, before.shape), after + rng.normal(0, 20, after.shape)


def test_no_green_law_where_the_stratum_reads_all_green_ground() -> None:
    """Woods that change as the grass does leave nothing misread, and no law is fitted; woods
    with a season of their own get one, which predicts them."""
    bands = ("red", "green", "blue", "nir")
    before, after = _sample(GAINS["grass"], 3)
    strata = fit_strata(before, after, bands)
    assert strata is not None
    reads = (strata.vegetated, strata.bare)
    assert fit_green_laws(before, after, reads, 0, 3) is None
    before, after = _sample(GAINS["woods"], 4)
    strata = fit_strata(before, after, bands)
    assert strata is not None
    laws = fit_green_laws(before, after, (strata.vegetated, strata.bare), 0, 3)
    assert laws is not None and len(laws) == 1
    predicted = [f.gain * v + f.offset for f, v in zip(laws[0], WOODS, strict=True)]
    np.testing.assert_allclose(predicted, WOODS * GAINS["woods"], rtol=0.03)
