"""The site's history as analysts read it: dated event sentences, the contract's JSON, and a
timeline image of structure states over time (``timeline.png``)."""

from __future__ import annotations

import datetime as dt
import io
import json
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from PIL import Image, ImageDraw, ImageFont

from sohae_watch.dates import date_span
from sohae_watch.outputs import atomic_write_bytes

Format = Literal["text", "json"]
NEW_ACTIVITY = "new activity"


@dataclass(frozen=True)
class Event:
    """One dated event: a structure's change against its last observed state, or new activity."""

    structure_id: str | None
    structure_name: str
    status: str
    event: str
    before_date: dt.date
    after_date: dt.date
    confidence: float
    sentence: str

    @property
    def key(self) -> str:
        """Identity of the event across runs (confidence and wording may be refined)."""
        if self.structure_id is None:
            return f"activity|{self.before_date}|{self.after_date}|{self.structure_name}"
        return f"{self.structure_id}|{self.event}|{self.before_date}|{self.after_date}"

    def to_dict(self) -> dict[str, Any]:
        """The contract's ``history --format json`` object."""
        return {
            "structure_id": self.structure_id,
            "structure_name": self.structure_name,
            "status": self.status,
            "event": self.event,
            "before_date": self.before_date.isoformat(),
            "after_date": self.after_date.isoformat(),
            "confidence": round(float(self.confidence), 3),
            "sentence": self.sentence,
        }


def capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


def structure_sentence(name: str, event: str, before: dt.date, after: dt.date) -> str:
    """``Launch pad structures rebuilt between Feb 16 and Mar 2, 2019.``"""
    return f"{capitalise(name)} {event} {date_span(before, after)}."


def activity_place(lon: float, lat: float) -> str:
    return f"{abs(lat):.5f} {'N' if lat >= 0 else 'S'}, {abs(lon):.5f} {'E' if lon >= 0 else 'W'}"


def activity_sentence(
    lon: float, lat: float, area_m2: float, before: dt.date, after: dt.date
) -> str:
    """The report's new-activity sentence."""
    return f"New activity at {activity_place(lon, lat)} ({area_m2:,.0f} m²) {date_span(before, after)}."


def sort_key(e: Event) -> tuple[dt.date, dt.date, int, str]:
    """Oldest first: by the date the change was first seen, then its start; structures first."""
    return (e.after_date, e.before_date, e.structure_id is None, e.structure_id or e.structure_name)


def load_events(con: sqlite3.Connection) -> list[Event]:
    """The recorded events, oldest first."""
    rows = con.execute(
        "SELECT structure_id, structure_name, status, event, before_date, after_date, "
        "confidence, sentence FROM events"
    ).fetchall()
    events = [
        Event(
            r[0],
            r[1],
            r[2],
            r[3],
            dt.date.fromisoformat(r[4]),
            dt.date.fromisoformat(r[5]),
            float(r[6]),
            r[7],
        )
        for r in rows
    ]
    return sorted(events, key=sort_key)


def format_events(events: Sequence[Event], fmt: Format, *, site_name: str = "the site") -> str:
    """``text``: one sentence per line with its confidence; ``json``: the contract's array."""
    if fmt == "json":
        return json.dumps([e.to_dict() for e in events], indent=2, ensure_ascii=False)
    if not events:
        return f"No events recorded for {site_name}."
    return "\n".join(f"{e.sentence} (confidence {e.confidence:.2f})" for e in events)


# --- timeline image ---------------------------------------------------------------------------

STATE_COLOURS: Mapping[str, tuple[int, int, int]] = {
    "present": (46, 125, 50),
    "absent": (236, 224, 200),
    "unknown": (205, 205, 205),
}
HIDDEN = (250, 250, 250)
EVENT_COLOUR = (198, 40, 40)
INK = (30, 30, 30)


@dataclass(frozen=True)
class Cell:
    """A structure on one date: its state then, and whether it was seen (not hidden by cloud)."""

    state: str
    observed: bool


def render_timeline(
    title: str,
    structures: Sequence[tuple[str, str]],
    dates: Sequence[dt.date],
    cells: Mapping[tuple[str, dt.date], Cell],
    events: Sequence[Event],
) -> bytes:
    """A PNG: one row per structure, one column per usable acquisition, coloured by state;
    hatched where the structure was not observable; red marks and words where an event was seen."""
    font = ImageFont.load_default()
    cw, ch, left, top = 74, 28, 12 + 7 * max([len(n) for _, n in structures] + [10]), 56
    width = left + cw * max(1, len(dates)) + 20
    height = top + ch * max(1, len(structures)) + 70
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    draw.text((12, 10), title, fill=INK, font=font)
    for j, d in enumerate(dates):
        x = left + j * cw
        draw.text((x + 4, top - 30), d.strftime("%Y"), fill=INK, font=font)
        draw.text((x + 4, top - 18), d.strftime("%b %d"), fill=INK, font=font)
    by_cell = {(e.structure_id, e.after_date): e for e in events if e.structure_id is not None}
    for i, (sid, name) in enumerate(structures):
        y = top + i * ch
        draw.text((12, y + ch // 2 - 6), name, fill=INK, font=font)
        for j, d in enumerate(dates):
            x = left + j * cw
            cell = cells.get((sid, d), Cell("unknown", False))
            box = (x + 1, y + 1, x + cw - 2, y + ch - 2)
            colour = STATE_COLOURS.get(cell.state, STATE_COLOURS["unknown"])
            if cell.observed:
                draw.rectangle(box, fill=colour, outline=(120, 120, 120))
            else:
                draw.rectangle(box, fill=HIDDEN, outline=colour, width=2)
                for k in range(box[0], box[2], 6):
                    draw.line((k, box[3], min(k + 10, box[2]), box[1]), fill=colour)
            ev = by_cell.get((sid, d))
            if ev is not None:
                draw.rectangle(box, outline=EVENT_COLOUR, width=3)
                tx = (box[0] + 5, box[1] + 7)
                draw.rectangle(
                    (tx[0] - 2, tx[1] - 2, tx[0] + 6 * len(ev.event) + 2, tx[1] + 11), fill="white"
                )
                draw.text(tx, ev.event, fill=EVENT_COLOUR, font=font)
    ly = top + ch * max(1, len(structures)) + 16
    lx = 12
    for label, colour in (*STATE_COLOURS.items(), ("not observable", HIDDEN)):
        draw.rectangle((lx, ly, lx + 14, ly + 12), fill=colour, outline=(120, 120, 120))
        draw.text((lx + 20, ly), label, fill=INK, font=font)
        lx += 30 + 7 * len(label)
    draw.rectangle((lx, ly, lx + 14, ly + 12), outline=EVENT_COLOUR, width=3)
    draw.text((lx + 20, ly), "event first seen", fill=INK, font=font)
    n_activity = sum(1 for e in events if e.structure_id is None)
    if n_activity:
        draw.text(
            (12, ly + 22), f"{n_activity} new-activity event(s): see history", fill=INK, font=font
        )
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def write_history_files(
    out_dir: Path,
    title: str,
    structures: Sequence[tuple[str, str]],
    dates: Sequence[dt.date],
    cells: Mapping[tuple[str, dt.date], Cell],
    events: Sequence[Event],
) -> Path:
    """``OUT/timeline.png`` and ``OUT/history.json`` (the contract's array); the image's path."""
    png = render_timeline(title, structures, dates, cells, events)
    path = Path(out_dir) / "timeline.png"
    doc = (format_events(events, "json") + "\n").encode("utf-8")
    for target, data in ((path, png), (Path(out_dir) / "history.json", doc)):
        # unchanged files are left alone: a run with nothing new touches nothing a sync or a
        # web server watches
        if not (target.is_file() and target.read_bytes() == data):
            atomic_write_bytes(target, data)
    return path


def load_cells(con: sqlite3.Connection) -> tuple[list[dt.date], dict[tuple[str, dt.date], Cell]]:
    """The usable dates and per-structure cells recorded in ``observations``."""
    rows = con.execute("SELECT structure_id, date, observed, state FROM observations").fetchall()
    cells = {(r[0], dt.date.fromisoformat(r[1])): Cell(str(r[3]), bool(r[2])) for r in rows}
    dates = sorted({d for _, d in cells})
    return dates, cells
