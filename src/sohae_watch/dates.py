"""Acquisition dates: from a tag, a STAC item sidecar, or the file name, in the contract's order."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sohae_watch.errors import InputError

DATE_TAGS = ("ACQUISITION_DATE", "TIFFTAG_DATETIME")

_NAME_PATTERNS = (
    re.compile(r"(?<!\d)(\d{4})(\d{2})(\d{2})T\d{6}(?!\d)"),
    re.compile(r"(?<!\d)(\d{4})-(\d{2})-(\d{2})(?!\d)"),
    re.compile(r"(?<!\d)(\d{4})(\d{2})(\d{2})(?!\d)"),
)
_TAG_PATTERN = re.compile(
    r"^\s*(\d{4})([-:/]?)(\d{2})\2(\d{2})(?:[T ].*)?\s*$"  # 2019-03-02, 2019:03:02, 20190302
)
# what cameras and writers put in TIFFTAG_DATETIME when they know no date: no date at all
_PLACEHOLDER = re.compile(r"^[\s0:/T.-]*$")


def parse_date(text: str) -> dt.date:
    """A date from ``YYYY-MM-DD`` (also ``YYYY:MM:DD``, ``YYYYMMDD`` or an ISO datetime);
    ValueError otherwise."""
    m = _TAG_PATTERN.match(text)
    if not m:
        raise ValueError(f"not a date: {text!r} (expected YYYY-MM-DD)")
    return dt.date(int(m[1]), int(m[3]), int(m[4]))


def date_from_name(name: str) -> dt.date | None:
    """The first valid date written in a file name, or None."""
    for pattern in _NAME_PATTERNS:
        for m in pattern.finditer(name):
            try:
                return dt.date(int(m[1]), int(m[2]), int(m[3]))
            except ValueError:
                continue
    return None


def stac_sidecar(path: Path) -> Mapping[str, Any] | None:
    """The ``properties`` of a STAC item ``<stem>.json`` beside ``path``, or None."""
    side = path.with_suffix(".json")
    if not side.is_file():
        return None
    try:
        item = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(
            f"{side}: STAC sidecar is not valid JSON ({exc}); fix or remove it"
        ) from exc
    props = item.get("properties") if isinstance(item, dict) else None
    return props if isinstance(props, dict) else None


def acquisition_date(path: Path, tags: Mapping[str, str]) -> tuple[dt.date, str]:
    """The date of the raster at ``path`` and where it came from (``tag``, ``stac``, ``name``).

    Raises InputError when no source gives a date, or a tag or sidecar holds a malformed one.
    """
    for key in DATE_TAGS:
        if tags.get(key) and not _PLACEHOLDER.match(tags[key]):
            try:
                return parse_date(tags[key]), "tag"
            except ValueError as exc:
                raise InputError(
                    f"{path}: tag {key}={tags[key]!r} is not a date; write it as YYYY-MM-DD"
                ) from exc
    props = stac_sidecar(path)
    if props is not None and props.get("datetime"):
        try:
            return parse_date(str(props["datetime"])), "stac"
        except ValueError as exc:
            raise InputError(
                f"{path.with_suffix('.json')}: properties.datetime {props['datetime']!r} is not "
                "an ISO date; fix the STAC item"
            ) from exc
    found = date_from_name(path.name)
    if found is not None:
        return found, "name"
    written = _NAME_PATTERNS[1].search(path.name)
    if written is not None:
        raise InputError(
            f"{path}: {written[0]} in its name is not a valid date; correct it to YYYY-MM-DD, or "
            "set the ACQUISITION_DATE tag"
        )
    raise InputError(
        f"{path}: no acquisition date; set the ACQUISITION_DATE tag, add a STAC item "
        f"{path.with_suffix('.json').name}, or put YYYY-MM-DD in the file name"
    )


def short_date(d: dt.date) -> str:
    """``Feb 16`` as the summary sentences write dates."""
    return f"{d.strftime('%b')} {d.day}"


def date_span(before: dt.date, after: dt.date) -> str:
    """``between Feb 16 and Mar 2, 2019`` (years spelled out when they differ); ``on Jul 20,
    2018`` for two acquisitions of one day."""
    if before == after:
        return f"on {short_date(after)}, {after.year}"
    if before.year == after.year:
        return f"between {short_date(before)} and {short_date(after)}, {after.year}"
    return f"between {short_date(before)}, {before.year} and {short_date(after)}, {after.year}"
