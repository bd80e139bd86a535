"""The Pillow resampling engine, for enlargements of photos smaller than their print: LANCZOS with the exact
sub-pixel box, on just the region of the photo that the print shows (decoded by libvips, any format)."""

from __future__ import annotations

import math

import pyvips
from PIL import Image, ImageFilter

from lab.production.imaging.geometry import ResamplePlan
from lab.production.imaging.source import WorkingMode

# A light 3x3 sharpen (identity + 1/16 of a Laplacian), the same mask as the pyvips engine's.
SHARPEN_WEIGHTS = (-1, -1, -1, -1, 24, -1, -1, -1, -1)
SHARPEN_SCALE = 16
SHARPEN = ImageFilter.Kernel((3, 3), SHARPEN_WEIGHTS, scale=SHARPEN_SCALE)
# LANCZOS reaches 3 source pixels (3 / scale when reducing); one more for rounding.
_LANCZOS_LOBES = 3


def _span(*, start: float, end: float, scale: float, available: int) -> tuple[int, int]:
    """Whole source pixels [first, last) that LANCZOS reads for the box edges start..end at this scale."""
    reach = _LANCZOS_LOBES / min(scale, 1.0) + 1
    return max(0, math.floor(start - reach)), min(available, math.ceil(end + reach))


def resample(
    *, image: pyvips.Image, mode: WorkingMode, plan: ResamplePlan, shrink_factor: int
) -> Image.Image:
    """Same contract as vips_engine.resample, for any scale: the pixels LANCZOS reads are cut out first, so
    the result is the one a resize of the whole photo would give."""
    left, top, right, bottom = (edge / shrink_factor for edge in plan.box)
    first_x, last_x = _span(start=left, end=right, scale=plan.scale_x * shrink_factor, available=image.width)
    first_y, last_y = _span(start=top, end=bottom, scale=plan.scale_y * shrink_factor, available=image.height)
    region = image.crop(first_x, first_y, last_x - first_x, last_y - first_y)
    pixels = Image.frombuffer(
        mode, (region.width, region.height), region.write_to_memory(), "raw", mode, 0, 1
    )
    resized = pixels.resize(
        plan.photo_size,
        Image.Resampling.LANCZOS,
        box=(left - first_x, top - first_y, right - first_x, bottom - first_y),
        reducing_gap=None,
    )
    return resized.filter(SHARPEN)
