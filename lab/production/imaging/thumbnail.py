"""A small upright copy of a photo (the gate's preview), decoded as a print is: streamed row by row, JPEGs
shrunk on load, HEIC grids one row of tiles at a time, so that memory follows the thumbnail, not the photo.

Pillow's whole decode did this before: a technician's preview of an 89 MP PNG, TIFF or HEIC grid took
~1.1 GiB of a web process, one of a 48 MP HEIC grid 640 MiB (bench/intake/memory.py measures both).
"""

from __future__ import annotations

from PIL import Image

from lab.production.imaging.geometry import SHRINK_HEADROOM, ResamplePlan, jpeg_shrink_factor, orient
from lab.production.imaging.source import decode, decoding, open_source


def upright_thumbnail(data: bytes, *, long_side: int) -> Image.Image:
    """The photo in 8-bit RGB, turned upright (EXIF orientation), no larger than `long_side` on its long
    side (never enlarged). RasterError when it cannot be decoded."""
    source = open_source(data)
    shrink_factor = 1
    if source.format == "jpeg":
        # The print's rule: the smallest DCT scale that still keeps SHRINK_HEADROOM times the output.
        scale = min(1.0, long_side / max(source.width, source.height))
        whole = ResamplePlan(
            box=(0, 0, source.width, source.height),
            photo_size=(round(source.width * scale), round(source.height * scale)),
        )
        shrink_factor = jpeg_shrink_factor(plan=whole, headroom=SHRINK_HEADROOM)
    with decoding():
        pixels = decode(data, source, shrink_factor=shrink_factor)
        scale = long_side / max(pixels.width, pixels.height)
        if scale < 1:
            pixels = pixels.resize(scale, kernel="lanczos3")
        stored = Image.frombytes(source.mode, (pixels.width, pixels.height), pixels.write_to_memory())
    # CMYK and grey as Pillow converts them (no colour management: the preview is for the task, not proofing).
    return orient(stored.convert("RGB"), orientation=source.orientation)
