"""sohae-watch: satellite-imagery change detection for named structures at monitored sites.

The pipeline, one module per stage::

    ingest      catalog rasters, read dates and band roles, build acquisitions on a working grid
    coregister  measure and correct the displacement of AFTER against BEFORE
    change      radiometric normalisation, change score, threshold, change mask and polygons
    classify    per-structure status (appeared / removed / modified / unchanged / obscured)
    report      report.json / .md / .html, changes.geojson, change_mask.tif, change_magnitude.tif
    watch       unattended monitoring with a history database

``pipeline.run_diff`` ties the stages together; the ``cli`` package is a thin layer over it.
"""

from sohae_watch.errors import InputError, ProcessingError, SohaeError
from sohae_watch.grid import Grid

__version__ = "0.1.0"

__all__ = ["Grid", "InputError", "ProcessingError", "SohaeError", "__version__"]
