"""The decoder of each stored photo format, shared by everything that reads one: intake's check of every
upload (lab/orders/imaging.py), the raster workers and the gate's preview (lab/production/imaging/), so that
what intake accepts is what the workers can decode. HEIC grids: lab/lib/heif_tiles.py."""

from __future__ import annotations

from typing import Literal

import pyvips

VipsFormat = Literal["jpeg", "png", "tiff"]


def vips_load(data: bytes, source_format: VipsFormat, *, shrink: int = 1) -> pyvips.Image:
    """The format's own libvips loader, sequential: rows are decoded as the pipeline asks for them.
    fail_on="error": a truncated upload must fail, not print with a grey band. `shrink`: JPEG only."""
    if source_format == "jpeg":
        return pyvips.Image.jpegload_buffer(
            data, shrink=shrink, access="sequential", fail_on="error", autorotate=False
        )
    if source_format == "png":
        return pyvips.Image.pngload_buffer(data, access="sequential", fail_on="error")
    return pyvips.Image.tiffload_buffer(data, access="sequential", fail_on="error", autorotate=False)


def vips_orientation(image: pyvips.Image) -> int:
    """The EXIF (JPEG, PNG eXIf) or TIFF Orientation libvips read from the header, 1-8, as the raster workers
    apply it; missing, 0 or garbage is 1 (as stored). Intake records the same reading."""
    value = image.get("orientation") if image.get_typeof("orientation") != 0 else 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1
