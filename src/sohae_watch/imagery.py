"""What imagery a watched site has, and whether it changed since the last run.

``load_imagery`` catalogs a folder of rasters or a local STAC Catalog / Collection /
ItemCollection / Item (asset hrefs relative to their JSON). The fingerprints are cheap content
keys (size, modification time, hash of the first and last MB) under which ``watch`` caches a
comparison of two acquisitions.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from sohae_watch.dates import parse_date
from sohae_watch.errors import InputError
from sohae_watch.ingest import (
    RASTER_SUFFIXES,
    Acquisition,
    RasterSource,
    catalog,
    group_acquisitions,
    open_raster,
)
from sohae_watch.site import Site

__all__ = [
    "acquisition_fingerprint",
    "file_fingerprint",
    "legacy_site_fingerprint",
    "load_imagery",
    "site_fingerprint",
    "stac_catalog",
]

log = logging.getLogger(__name__)

FINGERPRINT_BYTES = 1 << 20


def _local_href(href: str, base: Path) -> Path | None:
    parsed = urlparse(href)
    if parsed.scheme in ("", "file"):
        p = Path(unquote(parsed.path))
        return p if p.is_absolute() else (base / p)
    return None


def _stac_items(path: Path, seen: set[Path]) -> list[tuple[dict[str, Any], Path]]:
    """STAC items reachable from a Catalog / Collection / ItemCollection / Item JSON file."""
    path = path.resolve()
    if path in seen:
        return []
    seen.add(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable STAC JSON file ({exc}); fix --imagery") from exc
    if not isinstance(doc, dict):
        raise InputError(f"{path}: not a STAC Catalog, Collection, ItemCollection or Item")
    kind = doc.get("type")
    if kind == "Feature":
        return [(doc, path.parent)]
    if kind == "FeatureCollection":
        return [(f, path.parent) for f in doc.get("features", []) if isinstance(f, dict)]
    if kind in ("Catalog", "Collection"):
        items = []
        for link in doc.get("links", []):
            if isinstance(link, dict) and link.get("rel") in ("item", "child"):
                target = _local_href(str(link.get("href", "")), path.parent)
                if target is not None and target.is_file():
                    items.extend(_stac_items(target, seen))
        return items
    raise InputError(
        f"{path}: STAC type {kind!r} is not a Catalog, Collection, ItemCollection or Item"
    )


def stac_catalog(
    path: Path, *, nodata: float | None = None
) -> tuple[list[Acquisition], list[tuple[Path, str]]]:
    """Acquisitions from the raster assets of local STAC items (hrefs relative to their JSON)."""
    sources: list[RasterSource] = []
    skipped: list[tuple[Path, str]] = []
    for item, base in _stac_items(path, set()):
        props = item.get("properties") or {}
        try:
            item_date = parse_date(str(props.get("datetime") or props.get("start_datetime")))
        except ValueError:
            item_date = None
        for asset in (item.get("assets") or {}).values():
            if not isinstance(asset, dict) or "href" not in asset:
                continue
            roles = set(asset.get("roles") or [])
            media = str(asset.get("type") or "")
            href = str(asset["href"])
            if roles & {"thumbnail", "overview", "metadata"}:
                continue
            if not ("tiff" in media or "jp2" in media or href.lower().endswith(RASTER_SUFFIXES)):
                continue
            target = _local_href(href, base)
            if target is None:
                skipped.append((Path(href), f"{href}: remote asset; watch reads local files only"))
                continue
            try:
                src = open_raster(target, nodata=nodata, stac_date=item_date)
            except InputError as exc:
                skipped.append((target, str(exc)))
                log.warning("skipping %s", exc)
                continue
            sources.append(src)
    return group_acquisitions(sources), skipped


def load_imagery(
    imagery: Path, *, nodata: float | None = None
) -> tuple[list[Acquisition], list[tuple[Path, str]]]:
    """Catalog a folder, or a STAC JSON file; unreadable files are skipped, with why."""
    if imagery.is_file() and imagery.suffix.lower() == ".json":
        return stac_catalog(imagery, nodata=nodata)
    return catalog(imagery, nodata=nodata, strict=False)


def file_fingerprint(path: Path, *, with_mtime: bool = False) -> str:
    """Size and a hash of the first and last MB: changes when a file is replaced, cheap for
    large scenes, and the same for a copy or a touched file (a copy without ``-p`` would
    otherwise have every pair recomputed). ``with_mtime``: the form histories of schema 1
    stored, which also held the modification time; kept to recognise those."""
    st = path.stat()
    h = hashlib.sha1()
    with open(path, "rb") as fh:
        h.update(fh.read(FINGERPRINT_BYTES))
        if st.st_size > FINGERPRINT_BYTES:
            fh.seek(max(FINGERPRINT_BYTES, st.st_size - FINGERPRINT_BYTES))
            h.update(fh.read(FINGERPRINT_BYTES))
    if with_mtime:
        return f"{st.st_size}:{st.st_mtime_ns}:{h.hexdigest()}"
    return f"{st.st_size}:{h.hexdigest()}"


def acquisition_fingerprint(acq: Acquisition, *, with_mtime: bool = False) -> str:
    h = hashlib.sha1()
    for s in sorted(acq.sources, key=lambda s: s.path.name):
        h.update(f"{s.path.name}\0{file_fingerprint(s.path, with_mtime=with_mtime)}\n".encode())
    return h.hexdigest()


def site_fingerprint(site: Site) -> str:
    """Changes when what the comparisons depend on does (grid, AOI, footprints, baselines,
    thresholds), so calls made against old footprints are not reused; a comment, a name or
    the imagery: path edited in the site file changes nothing."""
    h = hashlib.sha1()
    h.update(
        repr(
            (
                site.crs.to_wkt(),
                site.resolution,
                site.aoi.wkt,
                [(s.id, s.geometry.wkt, s.baseline) for s in site.structures],
                sorted(site.thresholds.items()),
            )
        ).encode()
    )
    return h.hexdigest()


def legacy_site_fingerprint(site: Site) -> str | None:
    """The site fingerprint histories of schema 1 stored (a hash of the file's bytes), None
    without a file: pairs stored under it are re-keyed, not recomputed."""
    if site.path is None or not site.path.is_file():
        return None
    return hashlib.sha1(site.path.read_bytes()).hexdigest()
