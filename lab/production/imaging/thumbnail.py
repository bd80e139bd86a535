"""A small upright copy of a photo (the gate's preview), decoded as a print is: streamed row by row, JPEGs
shrunk on load, HEIC grids one row of tiles at a time, so that memory follows the thumbnail, not the photo.

Pillow's whole decode did this before: a technician's preview of an 89 MP PNG, TIFF or HEIC grid took
~1.1 GiB of a web process, one of a 48 MP HEIC grid 640 MiB (bench/intake/memory.py measures both).
"""

from __future__ import annotations

from PIL import Image

from lab.production.imaging.geometry import JPEG_SHRINK_FACTORS, orient
from lab.production.imaging.source import decode, decoding, open_source

# A JPEG is decoded at the smallest DCT scale that keeps twice the thumbnail's size (libvips' own rule for
# thumbnails, and the rasterizer's SHRINK_HEADROOM): the reduction that follows still has pixels to average.
_HEADROOM = 2


def upright_thumbnail(data: bytes, *, long_side: int) -> Image.Image:
    """The photo in 8-bit RGB, turned upright (EXIF orientation), no larger than `long_side` on its long
    side (never enlarged). RasterError when it cannot be decoded."""
    source = open_source(data)
    longest = max(source.width, source.height)
    shrink_factor = 1
    if source.format == "jpeg":
        shrink_factor = next(f for f in JPEG_SHRINK_FACTORS if f == 1 or longest / f >= long_side * _HEADROOM)
    with decoding():
        pixels = decode(data, source, shrink_factor=shrink_factor)
        scale = long_side / max(pixels.width, pixels.height)
        if scale < 1:
            pixels = pixels.resize(scale, kernel="lanczos3")
        stored = Image.frombytes(source.mode, (pixels.width, pixels.height), pixels.write_to_memory())
    # CMYK and grey as Pillow converts them (no colour management: the preview is for the task, not proofing).
    return orient(stored.convert("RGB"), orientation=source.orientation)
