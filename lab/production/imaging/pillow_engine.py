"""The Pillow resampling engine: every format, every pixel mode, and enlargements of small photos.
It decodes JPEGs with libjpeg's DCT scaling (draft) when the photo is much larger than the print."""

from __future__ import annotations

from PIL import Image, ImageFilter

from lab.production.imaging.geometry import JPEG_SHRINK_FACTORS, ResamplePlan, shrunk_length
from lab.production.imaging.source import Source, decoding, to_working_mode

# A light 3x3 sharpen (identity + 1/16 of a Laplacian), the same mask as the pyvips engine's.
SHARPEN_WEIGHTS = (-1, -1, -1, -1, 24, -1, -1, -1, -1)
SHARPEN_SCALE = 16
SHARPEN = ImageFilter.Kernel((3, 3), SHARPEN_WEIGHTS, scale=SHARPEN_SCALE)


def _decode(source: Source, *, shrink_factor: int) -> tuple[Image.Image, int]:
    """Decode, scaled down by `shrink_factor` when the source is a JPEG; returns the factor obtained."""
    image = source.image
    if source.format == "jpeg" and shrink_factor > 1:
        image.draft(image.mode, (source.width // shrink_factor, source.height // shrink_factor))
    image.load()
    for factor in JPEG_SHRINK_FACTORS:
        if image.size == (shrunk_length(source.width, factor), shrunk_length(source.height, factor)):
            return image, factor
    return image, 1


def resample(*, source: Source, plan: ResamplePlan, shrink_factor: int) -> Image.Image:
    """Decode, crop and resample to plan.photo_size with LANCZOS, then sharpen; stored orientation."""
    with decoding():
        decoded, factor = _decode(source, shrink_factor=shrink_factor)
        working = to_working_mode(decoded)
        left, top, right, bottom = (edge / factor for edge in plan.box)
        resized = working.resize(
            plan.photo_size, Image.Resampling.LANCZOS, box=(left, top, right, bottom), reducing_gap=None
        )
    return resized.filter(SHARPEN)
