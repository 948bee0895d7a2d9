"""Confidence of structure calls: the joint model of the two dates, its discounts, and what the
summary says when a call rests on part of the footprint or on a doubtful co-registration.

The calibration itself (calls made at confidence c right about c of the time) is measured on
generated scenes by ``benchmarks/eval_scenes.py``; these tests pin the model's properties.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import pytest
from rasterio.crs import CRS
from shapely.geometry import box

from sohae_watch.classify import (
    Evidence,
    StructureCall,
    decide,
    discounted,
    posterior,
)
from sohae_watch.coregister import CoregResult
from sohae_watch.grid import Grid
from sohae_watch.pipeline import DiffResult, Side
from sohae_watch.report import summary_sentences

NAN = float("nan")


def _ev(cb: float, ca: float, pattern: float, observed: float = 1.0) -> Evidence:
    return Evidence(observed, 0.0, cb, ca, pattern, 0.0, NAN, NAN, 0.0, 0.0)


@pytest.mark.parametrize(
    ("cb", "ca", "pattern"),
    [(0.05, 0.95, 3.0), (0.95, 0.9, 0.2), (0.5, 0.5, 0.3), (0.9, 0.05, 2.5), (0.9, 0.9, 2.0)],
)
def test_posterior_is_a_distribution_over_the_statuses(
    cb: float, ca: float, pattern: float
) -> None:
    post = posterior(_ev(cb, ca, pattern))
    assert set(post) == {"unchanged", "modified", "appeared", "removed"}
    assert math.isclose(sum(post.values()), 1.0) and min(post.values()) >= 0.0


def test_clear_evidence_gives_the_called_status_most_of_the_mass() -> None:
    for ev, want in [
        (_ev(0.05, 0.95, 3.0), "appeared"),
        (_ev(0.95, 0.02, 3.0), "removed"),
        (_ev(0.95, 0.93, 2.5), "modified"),
        (_ev(0.95, 0.93, 0.1), "unchanged"),
        (_ev(0.02, 0.04, 2.0), "unchanged"),  # bare ground on both dates, cells reordered
    ]:
        status, conf = decide(ev, min_observed=0.5)
        assert status == want and conf > 0.9, (ev, status, conf)


def test_ambiguous_outlines_with_the_interior_kept_are_likely_unchanged() -> None:
    """Dates taken jointly: an outline half there on both dates with the footprint's interior
    unchanged is one state seen twice, not two coin flips (the independent-dates model gave about
    even odds to such footprints, nearly all of which are unchanged on the generated scenes)."""
    status, conf = decide(_ev(0.5, 0.5, 0.3), min_observed=0.5)
    assert status == "unchanged" and conf > 0.8
    # the same outlines with the interior reordered: much less sure nothing happened
    status2, conf2 = decide(_ev(0.5, 0.5, 2.5), min_observed=0.5)
    assert status2 == "unchanged" and conf2 < conf - 0.3


def test_a_weaker_outline_change_is_called_with_less_confidence() -> None:
    confs = [decide(_ev(0.05, ca, 3.0), min_observed=0.5) for ca in (0.99, 0.9, 0.8)]
    assert [s for s, _ in confs] == ["appeared"] * 3
    assert confs[0][1] > confs[1][1] > confs[2][1]


def test_chance_edges_weaken_the_confidence_of_the_date_they_inflate() -> None:
    # the same measured outline after, once clean and once mostly the ground's chance edges
    clean = Evidence(1.0, 0.0, 0.05, 0.85, 3.0, 0.0, NAN, NAN, 0.0, 0.0, 0.05, 0.85)
    busy = Evidence(1.0, 0.0, 0.05, 0.62, 3.0, 0.0, NAN, NAN, 0.0, 0.0, 0.05, 0.85)
    (s1, c1), (s2, c2) = decide(clean, min_observed=0.5), decide(busy, min_observed=0.5)
    assert s1 == s2 == "appeared" and c2 < c1


@pytest.mark.parametrize("conf", [0.55, 0.8, 0.97, 0.3])
def test_discounts_pull_towards_even_odds_without_crossing(conf: float) -> None:
    assert discounted(conf, 1.0, 0.9) == pytest.approx(conf)
    assert discounted(conf, 1.0, 0.4) == pytest.approx(conf)  # an `ok` registration: no discount
    partly = discounted(conf, 0.6, 0.9)
    doubtful = discounted(conf, 1.0, 0.1)
    failed = discounted(conf, 1.0, 0.0)
    for c in (partly, doubtful, failed):
        assert abs(c - 0.5) < abs(conf - 0.5) and (c - 0.5) * (conf - 0.5) > 0
    assert abs(failed - 0.5) <= abs(doubtful - 0.5)


def _result(
    observed: float, coreg_status: str, reliability: float, confidence: float = 0.71
) -> DiffResult:
    grid = Grid.from_bounds(CRS.from_epsg(32651), (500000.0, 4390000.0, 500100.0, 4390100.0), 1.0)
    before, after = dt.date(2019, 2, 16), dt.date(2019, 3, 2)
    call = StructureCall(
        "pad",
        "launch pad structures",
        "appeared",
        "rebuilt",
        confidence,
        0.5,
        observed,
        "Launch pad structures rebuilt between Feb 16 and Mar 2, 2019.",
    )
    coreg = CoregResult("phase", coreg_status, reliability, 0.0, 0.0, None, 10, 10, ())  # type: ignore[arg-type]
    return DiffResult(
        site=None,
        grid=grid,
        area=box(*grid.bounds),
        before=Side(before, ("b.tif",), None),
        after=Side(after, ("a.tif",), None),
        coreg=coreg,
        threshold=1.0,
        counts={},
        areas=[],
        structures=[call],
        new_activity=[],
        chips={},
        rasters={"change_mask": Path("m.tif")},
    )


def test_summary_says_when_a_call_rests_on_part_of_the_footprint() -> None:
    partly = summary_sentences(_result(0.62, "ok", 0.9))
    assert partly[0] == "Launch pad structures rebuilt between Feb 16 and Mar 2, 2019."
    assert (
        "Only 62% of the footprint of the launch pad structures was observable on both Feb 16 "
        "and Mar 2: its call (appeared) carries lower confidence (0.71)."
    ) in partly
    whole = summary_sentences(_result(1.0, "ok", 0.9))
    assert not any("observable" in s or "Co-registration" in s for s in whole)


def test_summary_says_when_co_registration_was_doubtful() -> None:
    sentences = summary_sentences(_result(1.0, "low-confidence", 0.31))
    assert (
        "Co-registration low-confidence (reliability 0.31): structure calls of this pair carry "
        "lower confidence."
    ) in sentences


def test_events_of_a_pair_that_failed_co_registration_are_unconfirmed() -> None:
    """Past co-registration's reach a structure the georeference moved reads as one that went:
    the event says so where it is read, and the pair's line says why."""
    sentences = summary_sentences(_result(1.0, "failed", 0.0))
    assert sentences[0] == (
        "Launch pad structures rebuilt between Feb 16 and Mar 2, 2019 (unconfirmed: the dates "
        "could not be co-registered)."
    )
    assert any(s.startswith("Co-registration failed") for s in sentences)
    # a registration that merely doubts keeps the event as it is
    doubtful = summary_sentences(_result(1.0, "low-confidence", 0.31))
    assert doubtful[0] == "Launch pad structures rebuilt between Feb 16 and Mar 2, 2019."


def test_summary_says_when_a_call_is_uncertain() -> None:
    """An event the evidence rates below even odds said so a line later, after a sentence that
    stated it as fact ('Gantry tower dismantled ...' at 0.02, found by the structure audit):
    the event's own sentence says it now, once. A call without an event keeps its line."""
    sentences = summary_sentences(_result(1.0, "ok", 0.9, confidence=0.34))
    assert sentences[0] == (
        "Launch pad structures rebuilt between Feb 16 and Mar 2, 2019 (uncertain: confidence 0.34)."
    )
    assert not any("is uncertain" in s for s in sentences)
    import dataclasses

    r = _result(1.0, "ok", 0.9, confidence=0.34)
    quiet = dataclasses.replace(r.structures[0], status="unchanged", event=None)
    sentences = summary_sentences(dataclasses.replace(r, structures=[quiet]))
    assert "The call on the launch pad structures (unchanged) is uncertain: confidence 0.34." in (
        sentences
    )


def test_a_failed_registration_without_structures_says_what_it_does_to_the_mask() -> None:
    """A run with no site has no structure calls to lower: the line says what a failed
    registration means for the mask instead."""
    import dataclasses

    failed = dataclasses.replace(_result(1.0, "failed", 0.0), structures=[])
    (line,) = [s for s in summary_sentences(failed) if s.startswith("Co-registration")]
    assert line == (
        "Co-registration failed (reliability 0.00): the dates were compared as delivered, so "
        "edges that only moved may show as change."
    )


def test_no_change_on_a_footprint_where_nothing_stands_says_so() -> None:
    """A footprint drawn 10 m off, twice too large, or only 2 x 2 px was called unchanged at
    0.69-0.99 and read 'No change at the launch pad' (the structure audit): the evidence was
    that nothing stood there on either date. The sentence now says so, and that the structure
    went before or the footprint is off; a structure seen on both dates keeps the plain one."""
    import dataclasses

    r = _result(1.0, "ok", 0.9, confidence=0.95)
    base = dataclasses.replace(r.structures[0], status="unchanged", event=None)
    gone = dataclasses.replace(base, evidence={"presence_before": -0.9, "presence_after": -5.0})
    stands = dataclasses.replace(
        base, id="s2", name="gantry tower", evidence={"presence_before": 4.1, "presence_after": 3.2}
    )
    sentences = summary_sentences(dataclasses.replace(r, structures=[gone, stands]))
    assert "No change at the gantry tower between Feb 16 and Mar 2, 2019." in sentences
    assert (
        "No change at the launch pad structures between Feb 16 and Mar 2, 2019: no structure was "
        "seen there on either date (gone before, or its footprint is off)." in sentences
    )


def test_new_activity_of_a_pair_that_failed_co_registration_is_unconfirmed() -> None:
    """Compared as delivered, edges that only moved read as change: new activity says it is
    unconfirmed, as the events do (a 10 m AFTER against a 0.5 m site reported two areas)."""
    import dataclasses

    from sohae_watch.areas import ChangeArea

    area = ChangeArea(box(500010.0, 4390010.0, 500030.0, 4390020.0), 200.0, 5.0, "other", 0.8)
    for status, said in (("failed", True), ("ok", False)):
        r = dataclasses.replace(_result(1.0, status, 0.9), new_activity=[area])
        (line,) = [s for s in summary_sentences(r) if s.startswith("New activity")]
        assert line.endswith("(unconfirmed: the dates could not be co-registered).") is said
