"""Unattended monitoring: catalog the imagery, compare each new usable acquisition with the one
before, and keep the site's history in the state database.

The history is a pure function of (the usable acquisitions in date order, the comparisons of
pairs of them). Comparisons are cached in the database, keyed by both dates, both content
fingerprints and the site file's fingerprint; every run replays the state machine over the
whole catalog, computing only the comparisons not cached yet, and rewrites observations and
events in one transaction. So a killed run loses nothing (the next one computes what is
missing), an event is never recorded twice, and a late or replaced acquisition simply changes
the replay's input: the affected pairs are computed and the history corrected. An acquisition
removed from the folder after it was processed (archived) stays in the replay with its cached
comparisons, later ones compared with the latest acquisition still there, until it is
forgotten on purpose (``forget``).

The event rule (the contract's): each structure is compared with its *last observed* state.
Its anchor is the last acquisition in which it was observable; when that is not the previous
acquisition, the new one is also compared with the anchor directly, so a change hidden by cloud
on one date is dated across that date.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import logging
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from sohae_watch import state as db
from sohae_watch.dates import date_from_name
from sohae_watch.errors import DeviceFullError, InputError, SohaeError
from sohae_watch.history import (
    NEW_ACTIVITY,
    Cell,
    Event,
    activity_place,
    activity_sentence,
    sort_key,
    structure_sentence,
    write_history_files,
)
from sohae_watch.imagery import (
    acquisition_fingerprint,
    legacy_site_fingerprint,
    load_imagery,
    site_fingerprint,
)
from sohae_watch.ingest import Acquisition
from sohae_watch.outputs import check_writable, outside_imagery
from sohae_watch.site import Site

log = logging.getLogger(__name__)

EVENTS = {"appeared": "built", "removed": "dismantled", "modified": "modified"}
ACTIVITY_STATUS = {"new_structure": "appeared", "removed_structure": "removed"}


# --- what a comparison yields -------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One structure's status in one pair, with its confidence."""

    status: str
    confidence: float
    changed_fraction: float | None = None
    observed_fraction: float | None = None


@dataclass(frozen=True)
class Activity:
    """A new-activity area of one pair (outside every listed structure)."""

    lon: float
    lat: float
    area_m2: float
    confidence: float
    change_type: str | None = None


@dataclass(frozen=True)
class PairOutcome:
    calls: Mapping[str, Call]
    activity: tuple[Activity, ...] = ()


class Differ(Protocol):
    """Compares two acquisitions, writes the pair's reports into ``out_dir``, returns the calls."""

    def __call__(
        self,
        before: Acquisition,
        after: Acquisition,
        *,
        stood_before: Mapping[str, bool],
        out_dir: Path,
    ) -> PairOutcome: ...


Usability = Callable[[Acquisition], float]


def pipeline_differ(site: Site) -> Differ:
    """The real comparison: ``compute_diff`` and the contract's six outputs."""

    def run(
        before: Acquisition,
        after: Acquisition,
        *,
        stood_before: Mapping[str, bool],
        out_dir: Path,
    ) -> PairOutcome:
        from sohae_watch.pipeline import compute_diff
        from sohae_watch.report import write_outputs

        result = compute_diff(before, after, site=site, stood_before=stood_before)
        report = write_outputs(result, out_dir)
        calls = {
            c.id: Call(c.status, float(c.confidence), c.changed_fraction, c.observed_fraction)
            for c in result.structures
        }
        activity = tuple(
            Activity(
                float(a["lon"]),
                float(a["lat"]),
                float(a["area_m2"]),
                float(a["confidence"]),
                a.get("change_type"),
            )
            for a in report.get("new_activity", [])
        )
        return PairOutcome(calls, activity)

    return run


def pipeline_usability(site: Site) -> Usability:
    """Share of the site's AOI observable in an acquisition (valid and not cloud)."""
    from rasterio.warp import transform_geom
    from shapely.geometry import mapping, shape

    from sohae_watch.area import coverage
    from sohae_watch.inventory import coarse_grid, usable_fraction

    grid = site.grid()
    aoi = shape(transform_geom("EPSG:4326", grid.crs, mapping(site.aoi)))
    cg = coarse_grid(grid)
    mask = cg.rasterize(aoi, all_touched=True)

    def measure(acq: Acquisition) -> float:
        if coverage(acq, grid.crs).intersection(aoi).area <= 0:
            return 0.0
        return usable_fraction(acq, cg, mask)

    return measure


# --- the run --------------------------------------------------------------------------------------


@dataclass
class WatchSummary:
    """What one run did, for the CLI's summary."""

    db_path: Path
    out_dir: Path
    acquisitions: int = 0
    usable: list[dt.date] = field(default_factory=list)
    unusable: list[tuple[dt.date, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    skipped_files: list[tuple[Path, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    pairs_computed: list[tuple[dt.date, dt.date]] = field(default_factory=list)
    new_events: list[Event] = field(default_factory=list)
    withdrawn_events: list[Event] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    timeline: Path | None = None
    changed_inputs: bool = False

    @property
    def nothing_new(self) -> bool:
        return not (
            self.changed_inputs or self.pairs_computed or self.new_events or self.withdrawn_events
        )


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _log(con: sqlite3.Connection, kind: str, message: str) -> None:
    con.execute("INSERT INTO log (at, kind, message) VALUES (?, ?, ?)", (_now(), kind, message))


class _Failed(Exception):
    """A comparison failed on an input; the acquisition is set aside for this run."""

    def __init__(self, date: dt.date, reason: str) -> None:
        super().__init__(reason)
        self.date = date
        self.reason = reason


class _Watcher:
    """One run over one site's catalog and state database (the caller holds the run lock)."""

    def __init__(
        self,
        site: Site,
        con: sqlite3.Connection,
        summary: WatchSummary,
        differ: Differ,
        usability: Usability,
    ) -> None:
        self.site = site
        self.con = con
        self.summary = summary
        self.differ = differ
        self.usability = usability
        self.site_fp = site_fingerprint(site)
        self.fps: dict[dt.date, str] = {}
        legacy = legacy_site_fingerprint(site)
        if (
            legacy is not None
            and con.execute("SELECT 1 FROM pairs WHERE site_fp = ? LIMIT 1", (legacy,)).fetchone()
        ):
            with db.transaction(con):  # stored by schema 1: the same site, a new key
                con.execute(
                    "UPDATE pairs SET site_fp = ? WHERE site_fp = ?", (self.site_fp, legacy)
                )

    # acquisitions -------------------------------------------------------------------------------

    def refresh_acquisitions(
        self,
        acqs: Sequence[Acquisition],
        skipped: Sequence[tuple[Path, str]],
        forget: Sequence[dt.date] = (),
    ) -> list[Acquisition]:
        """Fingerprint, check usability of new or changed ones, record them; the usable ones.

        An acquisition processed before and no longer in the imagery folder (archived, pruned)
        keeps its results: it stays in the history, its comparisons come from the database,
        and later acquisitions are compared with the latest one still there. ``forget`` drops
        such dates from the history (their events are withdrawn, the history corrected)."""
        con, summary = self.con, self.summary
        self._forget(forget, {a.date for a in acqs})
        known = {r["date"]: r for r in con.execute("SELECT * FROM acquisitions")}
        archived = {r["date"] for r in con.execute("SELECT date FROM archived")}
        processed = [d for d, r in known.items() if r["status"] == "usable"]
        newest = max(processed) if processed else None
        incomplete: dict[dt.date, str] = {}
        for path, why in skipped:
            d = date_from_name(path.name)
            if d is not None:
                incomplete.setdefault(d, why)
        usable = []
        seen = set()
        for acq in acqs:
            key = acq.date.isoformat()
            seen.add(key)
            try:
                fp = acquisition_fingerprint(acq)
            except OSError as exc:
                log.warning("%s: set aside, cannot read its files: %s", key, exc)
                summary.failed.append((key, f"cannot read: {exc}"))
                continue
            row = known.get(key)
            if row is not None and row["fingerprint"] != fp:
                row = self._rekeyed(acq, row, fp)
            self.fps[acq.date] = fp
            if key in archived:
                with db.transaction(con):
                    con.execute("DELETE FROM archived WHERE date = ?", (key,))
                    _log(con, "restored", f"{key}: back in the imagery folder")
            if row is not None and row["fingerprint"] == fp and row["status"] != "failed":
                if row["status"] == "usable":
                    usable.append(acq)
                    summary.usable.append(acq.date)
                else:
                    summary.unusable.append((acq.date, row["reason"] or "not usable"))
                continue
            status, frac, reason = self._check(acq, incomplete.get(acq.date))
            if status == "failed" and row is not None and row["status"] == "usable":
                # being replaced (or broken) after it was processed: keep its last good
                # version's cached comparisons rather than withdraw and re-alert its events
                log.warning(
                    "%s: its files changed and do not read now (%s); keeping the results of "
                    "the version processed before, retried next run",
                    key,
                    reason,
                )
                self.fps[acq.date] = row["fingerprint"]
                usable.append(acq)
                summary.usable.append(acq.date)
                summary.failed.append((key, reason or ""))
                continue
            with db.transaction(con):
                if row is None:
                    con.execute(
                        "INSERT INTO acquisitions VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (key, fp, json.dumps(acq.paths), frac, status, reason, _now(), _now()),
                    )
                else:
                    con.execute(
                        "UPDATE acquisitions SET fingerprint = ?, files = ?, usable_fraction = ?, "
                        "status = ?, reason = ?, updated = ? WHERE date = ?",
                        (fp, json.dumps(acq.paths), frac, status, reason, _now(), key),
                    )
                note = self._note_change(acq.date, row, fp, status, reason, newest)
                if note:
                    _log(con, note[0], note[1])
            if status == "usable":
                usable.append(acq)
                summary.usable.append(acq.date)
            elif status == "unusable":
                summary.unusable.append((acq.date, reason or ""))
            else:
                summary.failed.append((key, reason or ""))
        gone = []
        for d in known:
            if d in seen:
                continue
            day = dt.date.fromisoformat(d)
            if day in incomplete and known[d]["status"] == "usable":
                # its only files no longer read (a new delivery being copied over them): hold
                # the results of the version processed before
                log.warning(
                    "%s: its files do not read now (%s); keeping the results of the version "
                    "processed before, retried next run",
                    d,
                    incomplete[day],
                )
                self.fps[day] = known[d]["fingerprint"]
                usable.append(Acquisition(day, (), ()))
                summary.usable.append(day)
                summary.failed.append((d, incomplete[day]))
            elif known[d]["status"] == "usable":
                # archived or pruned: its results stay (see the docstring)
                self.fps[day] = known[d]["fingerprint"]
                usable.append(Acquisition(day, (), ()))
                summary.usable.append(day)
                if d not in archived:
                    msg = (
                        f"{d}: no longer in the imagery folder; its results are kept (`watch "
                        f"--forget {d}` drops it from the history)"
                    )
                    with db.transaction(con):
                        con.execute("INSERT INTO archived VALUES (?, ?)", (d, _now()))
                        _log(con, "archived", msg)
                    summary.notes.append(msg)
                    summary.changed_inputs = True
            else:
                gone.append(d)
        usable.sort(key=lambda a: a.date)
        summary.usable.sort()
        if gone:
            with db.transaction(con):
                for d in gone:
                    con.execute("DELETE FROM acquisitions WHERE date = ?", (d,))
                    msg = f"{d}: no longer in the imagery folder (it was not usable)"
                    _log(con, "removed", msg)
                    summary.notes.append(msg)
                    summary.changed_inputs = True
        return usable

    def _rekeyed(self, acq: Acquisition, row: sqlite3.Row, fp: str) -> sqlite3.Row:
        """``row`` under the fingerprint ``fp`` when it holds the same files' fingerprint in the
        form of schema 1 (with modification times), its pairs re-keyed; else ``row``."""
        try:
            legacy = acquisition_fingerprint(acq, with_mtime=True)
        except OSError:
            return row
        if row["fingerprint"] != legacy:
            return row
        key = acq.date.isoformat()
        con = self.con
        with db.transaction(con):
            con.execute("UPDATE acquisitions SET fingerprint = ? WHERE date = ?", (fp, key))
            con.execute(
                "UPDATE pairs SET before_fp = ? WHERE before_date = ? AND before_fp = ?",
                (fp, key, legacy),
            )
            con.execute(
                "UPDATE pairs SET after_fp = ? WHERE after_date = ? AND after_fp = ?",
                (fp, key, legacy),
            )
        new = con.execute("SELECT * FROM acquisitions WHERE date = ?", (key,)).fetchone()
        return new if new is not None else row

    def _forget(self, dates: Sequence[dt.date], present: set[dt.date]) -> None:
        """Drop acquisitions no longer in the imagery folder from the history."""
        con = self.con
        for day in dates:
            key = day.isoformat()
            if day in present:
                raise InputError(
                    f"--forget {key}: that acquisition is still in the imagery folder; remove its "
                    "files first (a date in the folder is always part of the history)"
                )
            if con.execute("SELECT 1 FROM acquisitions WHERE date = ?", (key,)).fetchone() is None:
                raise InputError(f"--forget {key}: no acquisition of that date in the history")
            msg = f"{key}: forgotten; history corrected without it"
            with db.transaction(con):
                con.execute("DELETE FROM acquisitions WHERE date = ?", (key,))
                _log(con, "forgotten", msg)
            self.summary.notes.append(msg)
            self.summary.changed_inputs = True

    def _check(
        self, acq: Acquisition, incomplete: str | None
    ) -> tuple[str, float | None, str | None]:
        if incomplete is not None:
            return (
                "failed",
                None,
                f"a file of this date is unreadable, retried next run: {incomplete}",
            )
        try:
            frac = float(self.usability(acq))
        except InputError as exc:
            return "failed", None, f"{exc} (retried next run)"
        minimum = float(self.site.thresholds["min_usable_fraction"])
        if frac < minimum:
            if frac == 0:
                where = ", ".join(Path(p).name for p in acq.paths[:2])
                return (
                    "unusable",
                    frac,
                    f"nothing of the AOI observable in {where} (outside the AOI, or cloud, no "
                    f"data or a blank image); min_usable_fraction is {minimum:.0%}",
                )
            return (
                "unusable",
                frac,
                f"only {frac:.0%} of the AOI observable (cloud, no data or a blank image); "
                f"min_usable_fraction is {minimum:.0%}",
            )
        return "usable", frac, None

    def _note_change(
        self,
        date: dt.date,
        row: sqlite3.Row | None,
        fp: str,
        status: str,
        reason: str | None,
        newest: str | None,
    ) -> tuple[str, str] | None:
        key = date.isoformat()
        summary = self.summary
        if status == "failed":
            if row is None or row["status"] != "failed":
                summary.changed_inputs = True
            log.warning("%s: set aside: %s", key, reason)
            return ("failed", f"{key}: set aside: {reason}")
        summary.changed_inputs = True
        if row is not None and row["fingerprint"] != fp and row["status"] != "failed":
            msg = f"{key}: its files changed since they were processed; its pairs are recomputed"
            summary.notes.append(msg)
            return ("replaced", msg)
        if status == "unusable":
            msg = f"{key}: skipped: {reason}"
            summary.notes.append(msg)
            return ("unusable", msg)
        if newest is not None and key < newest:
            msg = (
                f"{key}: late acquisition (older than {newest}); placed in order, history corrected"
            )
            summary.notes.append(msg)
            return ("late", msg)
        return None

    def mark_failed(self, date: dt.date, reason: str) -> None:
        key = date.isoformat()
        log.warning("%s: comparison failed, set aside until a later run: %s", key, reason)
        with db.transaction(self.con):
            self.con.execute(
                "UPDATE acquisitions SET status = 'failed', reason = ?, updated = ? WHERE date = ?",
                (f"{reason} (retried next run)", _now(), key),
            )
            _log(self.con, "failed", f"{key}: comparison failed: {reason}")
        self.summary.failed.append((key, reason))
        self.summary.usable = [d for d in self.summary.usable if d != date]

    # pairs --------------------------------------------------------------------------------------

    def pair(
        self, before: Acquisition, after: Acquisition, stood: Mapping[str, bool], out_dir: Path
    ) -> PairOutcome:
        """The comparison of two acquisitions: from the cache, else computed and stored."""
        key = self._pair_key(before, after)
        row = self._cached(key)
        if row is None:
            for acq in (before, after):
                if not acq.sources:
                    raise _Failed(acq.date, "its files do not read now")
            report_dir = out_dir / f"{key[0]}_{key[1]}"
            log.info("comparing %s with %s", key[0], key[1])
            try:
                outcome = self.differ(before, after, stood_before=dict(stood), out_dir=report_dir)
            except DeviceFullError:  # every later pair would fail the same way: stop, exit 1
                raise
            except SohaeError as exc:  # bad input or a stage that gave up: set aside, go on
                msg = str(exc)
                culprit = before.date if any(p in msg for p in before.paths) else after.date
                raise _Failed(culprit, msg) from exc
            with db.transaction(self.con):
                cur = self.con.execute(
                    "INSERT INTO pairs (before_date, after_date, before_fp, after_fp, site_fp, "
                    "report_dir, computed_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (*key, str(report_dir), _now()),
                )
                pid = cur.lastrowid
                self.con.executemany(
                    "INSERT INTO pair_structures VALUES (?, ?, ?, ?, ?, ?)",
                    [
                        (pid, sid, c.status, c.confidence, c.changed_fraction, c.observed_fraction)
                        for sid, c in outcome.calls.items()
                    ],
                )
                self.con.executemany(
                    "INSERT INTO pair_activity VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [
                        (pid, n, a.change_type, a.lon, a.lat, a.area_m2, a.confidence)
                        for n, a in enumerate(outcome.activity)
                    ],
                )
            self.summary.pairs_computed.append((before.date, after.date))
            return outcome
        pid = row[0]
        calls = {
            r["structure_id"]: Call(
                r["status"], r["confidence"], r["changed_fraction"], r["observed_fraction"]
            )
            for r in self.con.execute("SELECT * FROM pair_structures WHERE pair_id = ?", (pid,))
        }
        activity = tuple(
            Activity(r["lon"], r["lat"], r["area_m2"], r["confidence"], r["change_type"])
            for r in self.con.execute(
                "SELECT * FROM pair_activity WHERE pair_id = ? ORDER BY n", (pid,)
            )
        )
        return PairOutcome(calls, activity)

    def _pair_key(self, before: Acquisition, after: Acquisition) -> tuple[str, ...]:
        """What a comparison is cached under: both dates, both fingerprints, the site's."""
        b, a = before.date, after.date
        return (b.isoformat(), a.isoformat(), self.fps[b], self.fps[a], self.site_fp)

    def _cached(self, key: tuple[str, ...]) -> sqlite3.Row | None:
        return self.con.execute(
            "SELECT id FROM pairs WHERE before_date = ? AND after_date = ? AND before_fp = ? "
            "AND after_fp = ? AND site_fp = ?",
            key,
        ).fetchone()

    def _available(self, before: Acquisition, after: Acquisition) -> bool:
        """Whether the comparison of two acquisitions can be had: both have their files, or it
        is in the database."""
        if before.sources and after.sources:
            return True
        return self._cached(self._pair_key(before, after)) is not None

    # the state machine ---------------------------------------------------------------------------

    def replay(
        self,
        usable: Sequence[Acquisition],
        out_dir: Path,
        progress: Callable[[int, int], None] | None = None,
    ) -> tuple[list[Event], dict[tuple[str, dt.date], Cell]]:
        """Events and per-date cells from the usable acquisitions in date order; ``progress``
        told after each acquisition."""
        structures = self.site.structures
        cells: dict[tuple[str, dt.date], Cell] = {}
        events: list[Event] = []
        if not usable:
            return events, cells
        by_date = {a.date: a for a in usable}
        first = usable[0].date
        anchor = {s.id: first for s in structures}
        state = {s.id: s.baseline or "unknown" for s in structures}
        stood = {s.id: s.baseline == "present" for s in structures}
        for s in structures:
            cells[(s.id, first)] = Cell(state[s.id], False)
        for i, (prev, cur) in enumerate(itertools.pairwise(usable)):
            # a date whose files are gone (archived) serves from the database; where a
            # comparison with it is missing, the latest acquisition still on disk stands in
            base: Acquisition | None = prev
            if not self._available(prev, cur):
                base = next((a for a in reversed(usable[: i + 1]) if a.sources), None)
            if base is None:  # nothing before it left to compare with
                for s in structures:
                    cells[(s.id, cur.date)] = Cell(state[s.id], False)
                if progress is not None:
                    progress(i + 1, len(usable) - 1)
                continue
            chain = self.pair(base, cur, stood, out_dir)
            for s in structures:
                a = anchor[s.id]
                # a comparison counts from the structure's last observed state, never from
                # before it (a change already recorded would be recorded again)
                candidates = [(chain, base.date)] if base.date >= a else []
                if a != base.date and self._available(by_date[a], cur):
                    bridge = self.pair(by_date[a], cur, stood, out_dir)
                    candidates.insert(0, (bridge, a))
                call, since = None, None
                for outcome, b in candidates:
                    c = outcome.calls.get(s.id)
                    if c is not None and c.status != "obscured":
                        call, since = c, b
                        break
                if call is None or since is None:
                    cells[(s.id, cur.date)] = Cell(state[s.id], False)
                    continue
                old = state[s.id]
                new = {"appeared": "present", "removed": "absent", "modified": "present"}.get(
                    call.status, old
                )
                if old == "unknown" and new != "unknown":
                    before_state = "absent" if call.status == "appeared" else "present"
                    for k, v in list(cells.items()):
                        if k[0] == s.id and v.state == "unknown":
                            cells[k] = Cell(before_state, v.observed)
                    old = before_state
                cells[(s.id, since)] = Cell(cells[(s.id, since)].state, True)
                cells[(s.id, cur.date)] = Cell(new, True)
                word = EVENTS.get(call.status)
                if word == "built" and stood[s.id]:
                    word = "rebuilt"
                if word is not None:
                    events.append(
                        Event(
                            s.id,
                            s.name,
                            call.status,
                            word,
                            since,
                            cur.date,
                            call.confidence,
                            structure_sentence(s.name, word, since, cur.date),
                        )
                    )
                state[s.id] = new
                anchor[s.id] = cur.date
                stood[s.id] = stood[s.id] or old == "present" or new == "present"
            for act in chain.activity:
                events.append(
                    Event(
                        None,
                        f"{NEW_ACTIVITY} at {activity_place(act.lon, act.lat)}",
                        ACTIVITY_STATUS.get(act.change_type or "", "modified"),
                        NEW_ACTIVITY,
                        base.date,
                        cur.date,
                        act.confidence,
                        activity_sentence(act.lon, act.lat, act.area_m2, base.date, cur.date),
                    )
                )
            if progress is not None:
                progress(i + 1, len(usable) - 1)
        return sorted(events, key=sort_key), cells

    def record(self, events: Sequence[Event], cells: Mapping[tuple[str, dt.date], Cell]) -> None:
        """Rewrite observations and events in one transaction; note what changed."""
        con, summary = self.con, self.summary
        with db.transaction(con):
            old = {r["key"]: r for r in con.execute("SELECT * FROM events").fetchall()}
            con.execute("DELETE FROM observations")
            con.executemany(
                "INSERT INTO observations (structure_id, date, observed, state) VALUES (?, ?, ?, ?)",
                [(sid, d.isoformat(), int(c.observed), c.state) for (sid, d), c in cells.items()],
            )
            con.execute("DELETE FROM events")
            now = _now()
            for e in events:
                prior = old.pop(e.key, None)
                con.execute(
                    "INSERT OR REPLACE INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        e.key,
                        e.structure_id,
                        e.structure_name,
                        e.status,
                        e.event,
                        e.before_date.isoformat(),
                        e.after_date.isoformat(),
                        e.confidence,
                        e.sentence,
                        prior["recorded_at"] if prior is not None else now,
                    ),
                )
                if prior is None:
                    summary.new_events.append(e)
                    _log(con, "event", f"recorded: {e.sentence} (confidence {e.confidence:.2f})")
            for r in old.values():
                gone = Event(
                    r["structure_id"],
                    r["structure_name"],
                    r["status"],
                    r["event"],
                    dt.date.fromisoformat(r["before_date"]),
                    dt.date.fromisoformat(r["after_date"]),
                    r["confidence"],
                    r["sentence"],
                )
                summary.withdrawn_events.append(gone)
                _log(con, "corrected", f"withdrawn: {gone.sentence}")
        summary.events = list(events)


def resolve_state_path(site: Site, state: Path | None) -> Path:
    """``--state``, else the site file's ``state:``, else the per-user data directory."""
    if state is not None:
        return Path(state).expanduser()
    if site.state is not None:
        return site.state.expanduser()
    return db.default_state_path(site.id)


def run_watch(
    site: Site,
    imagery: Path,
    db_path: Path,
    out_dir: Path,
    *,
    nodata: float | None = None,
    differ: Differ | None = None,
    usability: Usability | None = None,
    lock_wait: float = 0.0,
    forget: Sequence[dt.date] = (),
    progress: Callable[[int, int], None] | None = None,
) -> WatchSummary:
    """One monitoring run (see the module docstring). Raises state.LockBusy when another run
    holds the database's lock after ``lock_wait`` seconds. ``forget``: dates no longer in the
    imagery folder to drop from the history. ``progress(done, total)``: after each acquisition
    compared with the one before."""
    imagery = Path(imagery)
    if not imagery.exists():
        raise InputError(f"{imagery}: imagery folder or STAC catalog not found; give --imagery")
    if imagery.is_dir():
        outside_imagery(Path(out_dir), [imagery])
    check_writable(Path(out_dir), "--out")
    check_writable(Path(db_path), "--state")
    summary = WatchSummary(db_path=db_path, out_dir=out_dir)
    with db.run_lock(db_path, wait=lock_wait):
        con = db.connect(db_path)
        try:
            _run(site, imagery, out_dir, con, summary, nodata, differ, usability, forget, progress)
        except sqlite3.OperationalError as exc:
            raise db.database_error(db_path, exc) from exc
        finally:
            con.close()
    return summary


def _run(
    site: Site,
    imagery: Path,
    out_dir: Path,
    con: sqlite3.Connection,
    summary: WatchSummary,
    nodata: float | None,
    differ: Differ | None,
    usability: Usability | None,
    forget: Sequence[dt.date] = (),
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """The body of :func:`run_watch`, with the database open and locked."""
    db_path = summary.db_path
    db.bind_site(con, site.id, db_path)
    acqs, skipped = load_imagery(imagery, nodata=nodata)
    held = con.execute("SELECT count(*) FROM acquisitions").fetchone()[0]
    if held and not acqs:
        raise InputError(
            f"{imagery}: no acquisition found there, but the history has {held}; is the imagery "
            "folder mounted? (remove the --state database to start a new history)"
        )
    summary.acquisitions = len(acqs)
    summary.skipped_files = list(skipped)
    watcher = _Watcher(
        site,
        con,
        summary,
        differ or pipeline_differ(site),
        usability or pipeline_usability(site),
    )
    usable = watcher.refresh_acquisitions(acqs, skipped, forget)
    while True:
        try:
            events, cells = watcher.replay(usable, out_dir, progress)
            break
        except _Failed as exc:
            watcher.mark_failed(exc.date, exc.reason)
            usable = [a for a in usable if a.date != exc.date]
    watcher.record(events, cells)
    dates = [a.date for a in usable]
    summary.timeline = write_history_files(
        out_dir,
        f"{site.name}: structure states by acquisition",
        [(s.id, s.name) for s in site.structures],
        dates,
        cells,
        events,
    )
