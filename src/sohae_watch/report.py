"""The outputs of `diff`: report.json / .md / .html, changes.geojson, change_mask.tif and
change_magnitude.tif, all written through a staging folder so a failed run leaves nothing half-written."""

from __future__ import annotations

import base64
import html
import json
import math
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from shapely import set_precision
from shapely.geometry import MultiPolygon, Polygon, mapping, shape
from shapely.geometry.polygon import orient

from sohae_watch import __version__
from sohae_watch.areas import polygonal
from sohae_watch.classify import FOOTPRINT_TOLERANCE_M
from sohae_watch.dates import date_span, short_date
from sohae_watch.grid import Grid
from sohae_watch.history import activity_place, activity_sentence
from sohae_watch.lean import TALLEST_M
from sohae_watch.outputs import staged_dir
from sohae_watch.scene import ViewAngle

if TYPE_CHECKING:
    from sohae_watch.change import ChangeArea
    from sohae_watch.classify import StructureCall
    from sohae_watch.pipeline import DiffResult, Side

SCHEMA_VERSION = 1
PARTLY_SEEN = 0.9  # observed fraction below which the summary says a call rests on part of it
LOW_CONFIDENCE = 0.5  # confidence below which the summary says a call is uncertain
# changes.geojson's coordinates: 1e-7 degree is about a centimetre (RFC 7946 asks for no more
# precision than the data has; 15 decimals doubled the file)
LONLAT_GRID = 1e-7


def _area_record(a: ChangeArea, result: DiffResult, structure_id: str | None) -> dict[str, Any]:
    return {
        "area_m2": round(float(a.area_m2), 1),
        "mean_magnitude": round(float(a.mean_magnitude), 4),
        "change_type": a.change_type,
        "structure_id": structure_id,
        "before_date": result.before.date.isoformat(),
        "after_date": result.after.date.isoformat(),
        "confidence": round(float(a.confidence), 3),
    }


def _structure_of(a: ChangeArea, result: DiffResult) -> str | None:
    if result.site is None:
        return None
    best, best_overlap = None, 0.0
    for s in result.site.structures:
        fp = result.grid.geometry_from_lonlat(s.geometry.__geo_interface__).buffer(3.0)
        overlap = a.geometry.intersection(fp).area
        if overlap > best_overlap:
            best, best_overlap = s.id, overlap
    return best


UNMATCHED_SENTENCE = (
    "The change mask cannot be trusted on this pair: its normalisation found almost no ground "
    "the two dates share (snow, haze, or change almost everywhere), so it may miss change or "
    "flag ground that did not change."
)

# the same when the radiometry matched but most of the ground looks different (agreement)
DIFFERENT_SENTENCE = (
    "The change mask cannot be trusted on this pair: {share} of the ground with visible "
    "structure looks alike on the two dates (snow, change almost everywhere, or images that are "
    "not aligned), and the mask takes change to be the exception, so it may miss change or flag "
    "ground that did not change."
)
UNMATCHED_CALLS = "The structure calls rest on outlines and shadows, not on the mask."
UNMATCHED_ACTIVITY = "No change area is reported as new activity."


def summary_sentences(result: DiffResult) -> list[str]:
    """The analyst's sentences: events first, then what could not be assessed, then no-change,
    then what limits the whole comparison (a change mask that cannot be trusted, co-registration
    not ok).
    When co-registration failed, each event and new activity says beside it that it is
    unconfirmed: footprints compared as delivered read a structure the georeference moved as
    one that went, and edges that only moved read as change."""
    span = date_span(result.before.date, result.after.date)
    failed = result.coreg.status == "failed"

    def unconfirmed(line: str) -> str:
        if not failed:
            return line
        return f"{line.removesuffix('.')} (unconfirmed: the dates could not be co-registered)."

    events = []
    for c in result.structures:
        if c.event is None:
            continue
        line = unconfirmed(c.summary)
        if c.confidence < LOW_CONFIDENCE:  # said where the event is read, not a line later
            line = f"{line.removesuffix('.')} (uncertain: confidence {c.confidence:.2f})."
        events.append(line)
    obscured = [c.summary for c in result.structures if c.status == "obscured"]
    unchanged = [c.name for c in result.structures if c.status == "unchanged" and not unseen(c)]
    absent = [c.name for c in result.structures if c.status == "unchanged" and unseen(c)]
    out = list(events)
    for a in result.new_activity:
        lon, lat = result.grid.to_lonlat(a.geometry.centroid.x, a.geometry.centroid.y)
        out.append(
            unconfirmed(
                activity_sentence(lon, lat, a.area_m2, result.before.date, result.after.date)
            )
        )
    out.extend(obscured)
    for c in result.structures:
        if c.status == "obscured":
            continue
        if c.observed_fraction < PARTLY_SEEN:
            out.append(
                f"Only {c.observed_fraction:.0%} of the footprint of the {c.name} was observable "
                f"on both {short_date(result.before.date)} and {short_date(result.after.date)}: "
                f"its call ({c.status}) carries lower confidence ({c.confidence:.2f})."
            )
        elif c.confidence < LOW_CONFIDENCE and c.event is None:
            out.append(
                f"The call on the {c.name} ({c.status}) is uncertain: confidence {c.confidence:.2f}."
            )
    if unchanged:
        out.append(f"No change at {_listed(unchanged)} {span}.")
    if absent:
        out.append(f"No change at {_listed(absent)} {span}: {UNSEEN}.")
    if result.site is None:
        n = len(result.areas)
        total = sum(a.area_m2 for a in result.areas)
        out.append(f"{n} change area{'s' if n != 1 else ''} ({total:,.0f} m² in all) {span}.")
    if not result.mask_trusted:
        said = [
            UNMATCHED_SENTENCE
            if not result.radiometry_matched
            else DIFFERENT_SENTENCE.format(share=_percent(result.structure_agreement))
        ]
        if result.structures:
            said.append(UNMATCHED_CALLS)
        if result.site is not None:
            said.append(UNMATCHED_ACTIVITY)
        out.append(" ".join(said))
    lean = lean_sentence(result.before.view, result.after.view) if result.structures else None
    if lean is not None:
        out.append(lean)
    if result.coreg.status != "ok":
        why = []
        if result.coreg.status == "failed":
            why.append(
                "the dates were compared as delivered, so edges that only moved may show as change"
            )
        if result.structures:
            why.append("structure calls of this pair carry lower confidence")
        out.append(
            f"Co-registration {result.coreg.status} (reliability {result.coreg.reliability:.2f})"
            + (": " + "; ".join(why) if why else "")
            + "."
        )
    return out


# the view metadata's lean difference is said when a structure up to this tall (m) leans apart by
# more than a footprint's tolerance between the dates: the tallest the views are searched for
LEAN_SAID_UP_TO_M = TALLEST_M


def lean_sentence(before: ViewAngle | None, after: ViewAngle | None) -> str | None:
    """What two views of different off-nadir geometry do to the structure calls, or None when
    a view is unknown or the difference is too small to matter.

    A point h m up is drawn h tan(off-nadir) away from the satellite, its base in place: two
    views draw a tall structure's roof at two places, and the calls compare its outline and
    inside within FOOTPRINT_TOLERANCE_M of the footprint only (each date on its own offset
    within it). The generated scenes at up to 20-30 degrees off nadir give a tenth to a fifth
    more wrong calls than at nadir (README, Structures)."""
    if before is None or after is None:
        return None
    (bx, by), (ax, ay) = before.lean(), after.lean()
    apart = math.hypot(ax - bx, ay - by)  # metres apart per metre of height
    if apart <= 0:
        return None
    tallest_fine = FOOTPRINT_TOLERANCE_M / apart
    if tallest_fine > LEAN_SAID_UP_TO_M:
        return None
    return (
        f"The dates were viewed {before.off_nadir:.0f}° and {after.off_nadir:.0f}° off nadir: "
        f"a structure taller than about {tallest_fine:.0f} m leans more than "
        f"{FOOTPRINT_TOLERANCE_M:.0f} m further on one date than on the other, so calls on tall "
        "structures are less certain than their confidence says."
    )


# an unchanged call on no structure: what was absent on both dates, or a footprint drawn where
# nothing stands (misplaced, too large, or too small for an outline at the pixel size)
UNSEEN = "no structure was seen there on either date (gone before, or its footprint is off)"


def unseen(call: StructureCall) -> bool:
    """Whether the evidence speaks against a structure standing on the footprint on both dates
    (presence log-odds below even on each)."""
    pb, pa = call.evidence.get("presence_before"), call.evidence.get("presence_after")
    return pb is not None and pa is not None and pb < 0 and pa < 0


def _listed(names: list[str]) -> str:
    """``the a, the b and the c``."""
    the = [f"the {n}" for n in names]
    return the[0] if len(the) == 1 else ", ".join(the[:-1]) + " and " + the[-1]


def _percent(share: float) -> str:
    """A small share in words: "only 5%", "less than 1%"."""
    return "less than 1%" if share < 0.005 else f"only {share:.0%}"


def finite(obj: Any) -> Any:
    """``obj`` with every NaN or infinite float replaced by None (JSON has no NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def _side_record(side: Side) -> dict[str, Any]:
    """One acquisition in report.json: its date, the files read and, where its metadata gives
    it, the view it was taken from."""
    out: dict[str, Any] = {"date": side.date.isoformat(), "sources": list(side.sources)}
    if side.view is not None:
        out["view"] = {"off_nadir": side.view.off_nadir, "azimuth": side.view.azimuth}
    return out


def build_report(result: DiffResult) -> dict[str, Any]:
    """The contract's report.json document."""
    site = (
        {"id": result.site.id, "name": result.site.name}
        if result.site
        else {"id": None, "name": None}
    )
    new_activity = []
    for a in result.new_activity:
        lon, lat = result.grid.to_lonlat(a.geometry.centroid.x, a.geometry.centroid.y)
        new_activity.append(
            {
                "lon": round(lon, 6),
                "lat": round(lat, 6),
                "area_m2": round(a.area_m2, 1),
                "confidence": round(a.confidence, 3),
                "change_type": a.change_type,
            }
        )
    counts = result.counts
    return {
        "schema_version": SCHEMA_VERSION,
        "generator": f"sohae-watch {__version__}",
        "site": site,
        "before": _side_record(result.before),
        "after": _side_record(result.after),
        "grid": result.grid.to_dict(),
        "coregistration": result.coreg.to_dict(result.grid),
        "change": {
            "threshold": round(float(result.threshold), 6),
            "changed_fraction": round(counts["changed"] / max(1, counts["observable"]), 6),
            "not_observable_fraction": round(
                1.0 - counts["observable"] / max(1, counts["pixels"]), 6
            ),
            "areas": len(result.areas),
            "radiometry_matched": result.radiometry_matched,
            "structure_agreement": round(float(result.structure_agreement), 4),
            "mask_trusted": result.mask_trusted,
        },
        "timings_s": {k: round(v, 3) for k, v in result.timings.items()},
        "structures": [c.to_dict() for c in result.structures],
        "new_activity": new_activity,
        "summary": summary_sentences(result),
    }


def lonlat_geometry(grid: Grid, geom: Any) -> dict[str, Any]:
    """A change area's outline as an RFC 7946 geometry: lon/lat to ``LONLAT_GRID``, valid, and
    its rings wound by the right-hand rule (outer rings anticlockwise, holes clockwise)."""
    g = polygonal(set_precision(shape(grid.geometry_to_lonlat(geom)), LONLAT_GRID))
    if g is None:  # an area is at least 100 m²: not lost to a centimetre grid
        raise ValueError("a change area vanished when written in lon/lat")
    if isinstance(g, MultiPolygon):
        g = MultiPolygon([orient(p, 1.0) for p in g.geoms])
    else:
        assert isinstance(g, Polygon)
        g = orient(g, 1.0)
    return dict(mapping(g))


def changes_geojson(result: DiffResult) -> dict[str, Any]:
    feats = []
    for a in result.areas:
        feats.append(
            {
                "type": "Feature",
                "geometry": lonlat_geometry(result.grid, a.geometry),
                "properties": _area_record(a, result, _structure_of(a, result)),
            }
        )
    return {"type": "FeatureCollection", "features": feats}


def shift_words(coreg: dict[str, Any]) -> str:
    """The measured shift in words: "shift 1.15 px east, 1.99 px north" (rows grow southward)."""
    x, y = coreg.get("shift_x_px"), coreg.get("shift_y_px")
    if x is None or y is None:
        return "no shift measured"
    ew = f"{abs(x):.2f} px {'west' if x < 0 else 'east'}"
    ns = f"{abs(y):.2f} px {'north' if y < 0 else 'south'}"
    return f"shift {ew}, {ns}"


# characters Markdown reads as markup in running text and table cells (an underscore inside a
# word is text, and stays bare so file names read as written)
_MD_SPECIAL = re.compile(r"[\\`*\[\]<>|&]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")


def md_escape(text: str) -> str:
    """``text`` (a site's or structure's name, a file name, a sentence naming them) as literal
    Markdown: a ``|`` in a name no longer splits its table row, and no tag or link passes
    through to a renderer."""
    return _MD_SPECIAL.sub(lambda m: "\\" + m.group(0), text)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.2f}"
    return "–" if v is None else str(v)


def _evidence(key: str) -> Callable[[dict[str, Any]], str]:
    return lambda s: _fmt(s.get("evidence", {}).get(key))


# what the structures table's columns measure, under the table in both reports
STRUCTURE_LEGEND = (
    "changed: share of the footprint the change mask flags; observed: share seen on both dates; "
    "outline: share of the drawn outline that shows as an edge on that date; shadow: dark share "
    "on the side away from the sun; inside change: how much the inside reordered (1 = "
    "modified). A status rests on all of these: a structure can come or go with no pixel of "
    "the mask over its threshold (under snow, say)."
)

# the structures table of report.md and report.html: heading, cell text from a report structure
STRUCTURE_COLUMNS: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
    ("structure", lambda s: str(s["name"])),
    ("status", lambda s: str(s["status"])),
    ("event", lambda s: _fmt(s["event"])),
    ("confidence", lambda s: f"{s['confidence']:.2f}"),
    ("changed", lambda s: f"{s['changed_fraction']:.0%}"),
    ("observed", lambda s: f"{s['observed_fraction']:.0%}"),
    ("outline before", _evidence("outline_before")),
    ("outline after", _evidence("outline_after")),
    ("shadow before", _evidence("shadow_before")),
    ("shadow after", _evidence("shadow_after")),
    ("inside change", _evidence("pattern_change")),
]


def _activity_text(a: dict[str, Any]) -> str:
    """One new-activity record of report.json in words."""
    kind = str(a.get("change_type") or "change").replace("_", " ")
    return (
        f"{activity_place(a['lon'], a['lat'])}: "
        f"{kind}, {a['area_m2']:,.0f} m², confidence {a['confidence']:.2f}"
    )


def render_markdown(report: dict[str, Any]) -> str:
    lines = [f"# Change report: {md_escape(report['site']['name'] or 'area compared')}", ""]
    lines += [f"{report['before']['date']} → {report['after']['date']}", "", "## Summary", ""]
    lines += [f"- {md_escape(s)}" for s in report["summary"]] or ["- No change found."]
    c = report["coregistration"]
    lines += [
        "",
        "## Co-registration",
        "",
        f"{md_escape(str(c['method']))}: status **{c['status']}**, "
        f"reliability {c['reliability']:.2f}, {shift_words(c)}.",
        "",
    ]
    if report["structures"]:
        lines += [
            "## Structures",
            "",
            "| " + " | ".join(name for name, _ in STRUCTURE_COLUMNS) + " |",
            "|" + "---|" * len(STRUCTURE_COLUMNS),
        ]
        for s in report["structures"]:
            lines.append(
                "| " + " | ".join(md_escape(cell(s)) for _, cell in STRUCTURE_COLUMNS) + " |"
            )
        lines += ["", STRUCTURE_LEGEND, ""]
    if report.get("new_activity"):
        lines += ["## New activity", ""]
        lines += [f"- {md_escape(_activity_text(a))}" for a in report["new_activity"]]
        lines.append("")
    ch = report["change"]
    lines += [
        "## Change",
        "",
        f"{ch['areas']} change areas; {ch['changed_fraction']:.2%} of observable pixels changed; "
        f"{ch['not_observable_fraction']:.1%} not observable.",
        "",
        f"Sources: before {md_escape(', '.join(report['before']['sources']))}; "
        f"after {md_escape(', '.join(report['after']['sources']))}.",
        "",
    ]
    return "\n".join(lines)


def _b64(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def outline_rings(grid: Grid, geom: Any, box: tuple[int, int, int, int]) -> list[np.ndarray]:
    """Exterior rings of ``geom`` (grid CRS) as (col, row) vertices relative to ``box``'s corner."""
    inv = ~grid.transform
    rings = []
    for p in getattr(geom, "geoms", [geom]):
        coords = np.asarray(p.exterior.coords)
        cols, rows = inv @ (coords[:, 0], coords[:, 1])
        rings.append(np.stack([np.asarray(cols) - box[1], np.asarray(rows) - box[0]], axis=1))
    return rings


def chip_uris(result: DiffResult) -> dict[str, dict[str, str]]:
    """The result's PNG chips as data URIs for the self-contained page."""
    return {k: {kind: _b64(data) for kind, data in v.items()} for k, v in result.chips.items()}


_CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}
.chips img{border:1px solid #888;margin-right:6px}.summary li{font-size:1.1em;margin:.3em 0}
figure{display:inline-block;margin:0 8px 8px 0}figcaption{font-size:.8em;color:#555}
.status-appeared,.status-removed,.status-modified{font-weight:bold;color:#b00}.status-obscured{color:#a60}"""


def render_html(report: dict[str, Any], images: dict[str, dict[str, str]]) -> str:
    e = html.escape
    title = e(report["site"]["name"] or "area compared")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Change report: {title}</title><style>{_CSS}</style></head><body>",
        f"<h1>Change report: {title}</h1>",
        f"<p>{e(report['before']['date'])} → {e(report['after']['date'])}</p>",
        '<h2>Summary</h2><ul class="summary" id="summary">',
    ]
    parts += [f"<li>{e(s)}</li>" for s in report["summary"]] or ["<li>No change found.</li>"]
    parts.append("</ul>")
    c = report["coregistration"]
    parts.append(
        f"<h2>Co-registration</h2><p>{e(str(c['method']))}: status <b>{e(c['status'])}</b>, "
        f"reliability {c['reliability']:.2f}, {e(shift_words(c))}.</p>"
    )
    if report["structures"]:
        parts.append(
            "<h2>Structures</h2><table><tr>"
            + "".join(f"<th>{e(name)}</th>" for name, _ in STRUCTURE_COLUMNS)
            + "</tr>"
        )
        for s in report["structures"]:
            cells = [
                f'<td class="status-{e(s["status"])}">' if name == "status" else "<td>"
                for name, _ in STRUCTURE_COLUMNS
            ]
            parts.append(
                "<tr>"
                + "".join(
                    f"{td}{e(cell(s))}</td>"
                    for td, (_, cell) in zip(cells, STRUCTURE_COLUMNS, strict=True)
                )
                + "</tr>"
            )
        parts.append(f"</table><p><small>{e(STRUCTURE_LEGEND)}</small></p>")
        for s in report["structures"]:
            imgs = images.get(s["id"])
            if not imgs:
                continue
            parts.append(
                f'<h3>{e(s["name"])}: {e(s["status"])}</h3><p>{e(s["summary"])}</p><div class="chips">'
            )
            for kind in ("before", "after", "change"):
                alt = f"{s['name']} {kind}"
                parts.append(
                    f'<figure><img class="chip" data-structure="{e(s["id"])}" data-kind="{kind}" '
                    f'alt="{e(alt)}" src="{imgs[kind]}"><figcaption>{kind}</figcaption></figure>'
                )
            parts.append("</div>")
    for n, a in enumerate(report.get("new_activity", [])):
        if n == 0:
            parts.append("<h2>New activity</h2>")
        parts.append(f"<h3>New activity {n + 1}</h3><p>{e(_activity_text(a))}</p>")
        imgs = images.get(f"_activity-{n}")
        if imgs:
            parts.append('<div class="chips">')
            for kind in ("before", "after", "change"):
                parts.append(
                    f'<figure><img class="chip" data-activity="{n}" data-kind="{kind}" '
                    f'alt="new activity {n + 1} {kind}" src="{imgs[kind]}">'
                    f"<figcaption>{kind}</figcaption></figure>"
                )
            parts.append("</div>")
    parts.append("<h2>Map of change areas</h2>")
    if "_overview" in images:
        parts.append(
            f'<img id="overview" alt="overview map of change areas" src="{images["_overview"]["map"]}">'
            "<p>Change in red over the AFTER image; structure footprints in yellow.</p>"
        )
    ch = report["change"]
    parts.append(
        f"<p>{ch['areas']} change areas; {ch['changed_fraction']:.2%} of observable pixels changed; "
        f"{ch['not_observable_fraction']:.1%} not observable.</p>"
    )
    parts.append(
        f"<p><small>Before: {e(', '.join(report['before']['sources']))}<br>After: "
        f"{e(', '.join(report['after']['sources']))}<br>{e(report['generator'])}</small></p></body></html>"
    )
    return "\n".join(parts)


def write_reports(result: DiffResult, folder: Path) -> dict[str, Any]:
    """Write report.json / .md / .html and changes.geojson into ``folder`` (beside the rasters)."""
    report = finite(build_report(result))
    geojson = json.dumps(finite(changes_geojson(result)), allow_nan=False)
    (folder / "changes.geojson").write_text(geojson, encoding="utf-8")
    (folder / "report.json").write_text(
        json.dumps(report, indent=2, ensure_ascii=False, allow_nan=False), encoding="utf-8"
    )
    (folder / "report.md").write_text(render_markdown(report), encoding="utf-8")
    (folder / "report.html").write_text(render_html(report, chip_uris(result)), encoding="utf-8")
    return report


def write_outputs(result: DiffResult, out_dir: Path) -> dict[str, Any]:
    """Write the six contract outputs into ``out_dir`` (replacing those there) atomically."""
    with staged_dir(Path(out_dir)) as tmp:
        for name, path in result.rasters.items():
            shutil.copyfile(path, tmp / f"{name}.tif")
        return write_reports(result, tmp)
