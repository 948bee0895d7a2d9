"""The data model of a synthetic sample scene: ground patches, structures, dates and deliveries.

Everything is in the working grid's CRS (UTM metres). A :class:`SceneModel` is a pure description;
:mod:`sohae_watch.samples_render` turns it into GeoTIFFs, sidecars and ``truth.json``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field

from affine import Affine
from rasterio.crs import CRS
from shapely.geometry import Polygon
from shapely.geometry.base import BaseGeometry

from sohae_watch.grid import Grid

BANDS = ("red", "green", "blue", "nir")
ABSENT = "absent"
CLOUD_ALPHA = 0.1  # a pixel with more cloud than this is not observable (truth mask 255)


@dataclass(frozen=True)
class GroundPatch:
    """A piece of ground of one land-cover class (painted in order, later patches on top)."""

    cls: str
    geom: BaseGeometry
    angle: float = 0.0  # crop-row / panel direction in degrees


@dataclass(frozen=True)
class Element:
    """One rendered part of a structure: a roof of ``material`` at ``height`` metres.

    ``key`` names the element and its version; two dates differ on a pixel when the top element's
    key differs there (this drives the truth change mask).
    """

    key: str
    geom: Polygon
    height: float
    material: str
    pattern: str = "flat"
    frame: tuple[float, float, float, float] | None = None  # bounds the roof pattern is laid on


@dataclass(frozen=True)
class StructureDef:
    """A structure with its footprint and the elements it shows in each state."""

    id: str
    name: str
    footprint: Polygon
    variants: Mapping[str, tuple[Element, ...]]
    baseline: str | None = None

    def elements(self, state: str) -> tuple[Element, ...]:
        """The elements rendered in ``state`` (none when absent)."""
        return () if state == ABSENT else self.variants[state]


@dataclass(frozen=True)
class Cloud:
    """A soft-edged elliptical cumulus (centre in map metres)."""

    x: float
    y: float
    rx: float
    ry: float
    angle: float = 0.0


@dataclass(frozen=True)
class Delivery:
    """One raster file of an acquisition: its grid, tags and whether it gets a STAC sidecar."""

    name: str
    crs: CRS
    transform: Affine
    width: int
    height: int
    tags: Mapping[str, str] = field(default_factory=dict)
    stac: bool = False


@dataclass(frozen=True)
class DateSpec:
    """One acquisition: when, sun, radiometry, misregistration, nuisances, view and delivery.

    ``off_nadir`` (degrees from vertical) and ``view_azimuth`` (degrees clockwise from north, the
    bearing from the ground toward the satellite) give the view: a point ``h`` m up is drawn
    ``h * tan(off_nadir)`` m away from the satellite (:func:`~sohae_watch.samples_render.lean`).
    The default, 0, is a nadir view.
    """

    date: dt.date
    time: dt.time
    sun_azimuth: float
    sun_elevation: float
    gain: tuple[float, float, float, float]
    offset: tuple[float, float, float, float]
    noise: float
    shift: tuple[float, float]  # content displacement on the working grid, (x east, y south) px
    deliveries: tuple[Delivery, ...]
    date_source: str  # tag | filename | stac
    sun_source: str  # tag | stac | none
    snow: float = 0.0  # fraction of open ground under snow
    cloud: Cloud | None = None
    off_nadir: float = 0.0
    view_azimuth: float = 0.0

    @property
    def iso(self) -> str:
        return self.date.isoformat()


@dataclass
class SceneModel:
    """A complete scene: site, ground, structures (named and other), their states, and dates."""

    site_id: str
    site_name: str
    seed: int
    grid: Grid
    ground: list[GroundPatch]
    structures: list[StructureDef]
    others: list[StructureDef]
    states: dict[str, dict[str, str]]  # structure id -> date iso -> state
    dates: list[DateSpec]
    pairs: list[tuple[str, str]]
    site_footprints: dict[str, Polygon]  # footprints as the site file gives them
    margin_m: float = 40.0
    extra_truth: dict[str, object] = field(default_factory=dict)
    shade_roofs: bool = False  # taller elements' shadows fall on lower roofs too


def status_of(before: str, after: str) -> str:
    """The contract status implied by two states (obscuration aside)."""
    if before == ABSENT and after == ABSENT:
        return "unchanged"
    if before == ABSENT:
        return "appeared"
    if after == ABSENT:
        return "removed"
    return "unchanged" if before == after else "modified"


def event_of(status: str, stood_earlier: bool) -> str | None:
    """The contract event word for a status."""
    if status == "appeared":
        return "rebuilt" if stood_earlier else "built"
    return {"removed": "dismantled", "modified": "modified"}.get(status)


def rect(x0: float, y0: float, x1: float, y1: float) -> Polygon:
    """An axis-aligned rectangle in map metres."""
    return Polygon([(x0, y0), (x1, y0), (x1, y1), (x0, y1)])


def utm_delivery(
    name: str,
    grid: Grid,
    bounds: tuple[float, float, float, float],
    resolution: float,
    tags: Mapping[str, str] | None = None,
    stac: bool = False,
) -> Delivery:
    """A delivery on ``grid``'s CRS covering ``bounds`` at ``resolution``."""
    g = Grid.from_bounds(grid.crs, bounds, resolution)
    return Delivery(name, g.crs, g.transform, g.width, g.height, dict(tags or {}), stac)
