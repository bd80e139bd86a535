"""The preview a person sees: the photo shrunk to PREVIEW_PIXELS and watermarked all over with who viewed it
and when, so a crop or a screenshot of any part of it still names the viewer.

The mark is faint diagonal text tiled across the whole image, light with a dark edge so it shows on bright
and dark areas alike, and thin enough that the photo stays usable for the task (crop, colour, banding).
"""

from __future__ import annotations

import io
import math
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

from lab.production.imaging.thumbnail import upright_thumbnail

PREVIEW_PIXELS = 512
ANGLE_DEGREES = 30
TEXT_ALPHA = 70  # of 255: faint enough to see through, strong enough to survive JPEG
EDGE_ALPHA = 50


def preview_image(original: bytes) -> Image.Image:
    """The photo, upright, in RGB, no larger than PREVIEW_PIXELS on its long side (no mark yet), decoded
    row by row: a web process holds the preview, not the photo."""
    return upright_thumbnail(original, long_side=PREVIEW_PIXELS)


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def watermark_apply(image: Image.Image, stamp: str) -> Image.Image:
    """Tile `stamp` diagonally over the whole image; returns a new RGB image of the same size."""
    width, height = image.size
    font = _font(max(11, min(width, height) // 28))
    left, top, right, bottom = (int(edge) for edge in font.getbbox(stamp))
    text_width, text_height = right - left, bottom - top
    step_x, step_y = text_width + text_height * 3, text_height * 4
    # Draw on a square that still covers the image after rotation, then cut the image-sized middle out.
    side = math.ceil(math.hypot(width, height)) + step_x
    layer = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    for row, y in enumerate(range(-step_y, side + step_y, step_y)):
        offset = (row % 2) * (step_x // 2)  # brick pattern: no straight gap runs along the text
        for x in range(-step_x + offset, side + step_x, step_x):
            draw.text(
                (x, y),
                stamp,
                font=font,
                fill=(255, 255, 255, TEXT_ALPHA),
                stroke_width=1,
                stroke_fill=(0, 0, 0, EDGE_ALPHA),
            )
    layer = layer.rotate(ANGLE_DEGREES, resample=Image.Resampling.BICUBIC)
    box_left, box_top = (side - width) // 2, (side - height) // 2
    layer = layer.crop((box_left, box_top, box_left + width, box_top + height))
    return Image.alpha_composite(image.convert("RGBA"), layer).convert("RGB")


def preview_render(original: bytes, *, stamp: str) -> bytes:
    out = io.BytesIO()
    watermark_apply(preview_image(original), stamp).save(out, "JPEG", quality=85)
    return out.getvalue()
