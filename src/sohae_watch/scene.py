"""An acquisition brought onto the working grid: the array every stage after ingest works on."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field

import numpy as np

from sohae_watch.grid import Grid

VISIBLE = ("red", "green", "blue")


def intensity_of(data: np.ndarray, bands: tuple[str, ...]) -> np.ndarray:
    """Mean of the visible bands of a (bands, rows, cols) stack (all bands when none is visible)."""
    idx = [i for i, b in enumerate(bands) if b in VISIBLE] or list(range(len(bands)))
    return np.asarray(np.mean(data[idx], axis=0, dtype=np.float32))


@dataclass(frozen=True)
class SunPosition:
    """Sun azimuth (degrees clockwise from north) and elevation (degrees above the horizon)."""

    azimuth: float
    elevation: float


@dataclass(frozen=True)
class ViewAngle:
    """Where the satellite was seen from: ``off_nadir`` (degrees from vertical) and ``azimuth``
    (degrees clockwise from north, the bearing from the ground toward the satellite), as in the
    STAC view extension."""

    off_nadir: float
    azimuth: float

    def lean(self) -> tuple[float, float]:
        """Where the image draws a point 1 m up, relative to its base (metres east, north): away
        from the satellite, tan(off_nadir) far."""
        d = math.tan(math.radians(self.off_nadir))
        a = math.radians(self.azimuth)
        return -d * math.sin(a), -d * math.cos(a)


@dataclass
class Scene:
    """Pixels of one acquisition on a :class:`Grid`.

    ``data`` is float32 of shape (bands, rows, cols) in the sensor's own units (digital numbers or
    reflectance); pixels outside the acquisition or flagged nodata are NaN there and False in
    ``valid``. ``bands`` names each band's role (``red``, ``green``, ``blue``, ``nir``, else
    ``b<N>``).
    """

    data: np.ndarray
    valid: np.ndarray
    bands: tuple[str, ...]
    grid: Grid
    date: dt.date
    sources: tuple[str, ...] = ()
    sun: SunPosition | None = None
    meta: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.data.ndim != 3:
            raise ValueError(f"Scene.data must be (bands, rows, cols), got shape {self.data.shape}")
        if self.data.shape[1:] != self.grid.shape or self.valid.shape != self.grid.shape:
            raise ValueError(
                f"Scene arrays {self.data.shape} / {self.valid.shape} do not match grid {self.grid.shape}"
            )
        if len(self.bands) != self.data.shape[0]:
            raise ValueError(f"{len(self.bands)} band names for {self.data.shape[0]} bands")

    def band(self, role: str) -> np.ndarray | None:
        """The band with this role, or None when the acquisition has none."""
        try:
            return self.data[self.bands.index(role)]
        except ValueError:
            return None

    def has(self, *roles: str) -> bool:
        return all(r in self.bands for r in roles)

    def intensity(self) -> np.ndarray:
        """A single-band image for registration and structure evidence: mean of the visible bands
        (all bands when none is named visible). NaN where invalid."""
        return intensity_of(self.data, self.bands)

    def ndvi(self) -> np.ndarray | None:
        """Normalised difference vegetation index, or None without red and near-infrared bands."""
        red, nir = self.band("red"), self.band("nir")
        if red is None or nir is None:
            return None
        with np.errstate(divide="ignore", invalid="ignore"):
            out = (nir - red) / (nir + red)
        return out.astype(np.float32)

    def crop(self, row: int, col: int, height: int, width: int) -> Scene:
        """The window [row:row+height, col:col+width] (views of the arrays, the grid cropped)."""
        return Scene(
            data=self.data[:, row : row + height, col : col + width],
            valid=self.valid[row : row + height, col : col + width],
            bands=self.bands,
            grid=self.grid.crop(row, col, height, width),
            date=self.date,
            sources=self.sources,
            sun=self.sun,
            meta=self.meta,
        )
