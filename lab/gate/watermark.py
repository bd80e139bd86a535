"""The preview a person sees: the photo shrunk to PREVIEW_PIXELS and watermarked all over with who viewed it
and when, so a crop or a screenshot of any part of it still names the viewer.

The mark is faint diagonal text tiled across the whole image, light with a dark edge so it shows on bright
and dark areas alike, and thin enough that the photo stays usable for the task (crop, colour, banding).
"""

from __future__ import annotations

import io
import math
from functools import lru_cache
from typing import NamedTuple

from PIL import Image, ImageDraw, ImageFont

from lab.production.imaging.thumbnail import upright_thumbnail

PREVIEW_PIXELS = 512
ANGLE_DEGREES = 30
TEXT_ALPHA = 70  # of 255: faint enough to see through, strong enough to survive JPEG
EDGE_ALPHA = 50
STROKE_WIDTH = 1


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
    tile = _stamp_tile(stamp, font)
    # Draw on a square that still covers the image after rotation, then cut the image-sized middle out.
    side = math.ceil(math.hypot(width, height)) + step_x
    layer = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    for row, y in enumerate(range(-step_y, side + step_y, step_y)):
        offset = (row % 2) * (step_x // 2)  # brick pattern: no straight gap runs along the text
        for x in range(-step_x + offset, side + step_x, step_x):
            # The stamps never overlap (steps exceed the stamp's box), so a plain paste of the one rendered
            # stamp gives the pixels drawing it here would: stroked text costs ~7 ms a draw, a paste ~0.
            layer.paste(tile.image, (x + tile.left, y + tile.top))
    layer = _rotated_middle(layer, ANGLE_DEGREES, (width, height))
    return Image.alpha_composite(image.convert("RGBA"), layer).convert("RGB")


def _rotated_middle(layer: Image.Image, angle: float, size: tuple[int, int]) -> Image.Image:
    """`layer.rotate(angle, BICUBIC)` cut to its middle `size`, computing only the pixels kept: the rotation's
    affine map (as Image.rotate builds it, about the centre) shifted to the cut's corner. Rotating the whole
    square and cropping after cost ~6x the pixels (most of a preview's time)."""
    side_x, side_y = layer.size
    box_left, box_top = (side_x - size[0]) // 2, (side_y - size[1]) // 2
    centre_x, centre_y = side_x / 2, side_y / 2
    radians = -math.radians(angle)
    a, b = round(math.cos(radians), 15), round(math.sin(radians), 15)
    d, e = round(-math.sin(radians), 15), round(math.cos(radians), 15)
    c = a * -centre_x + b * -centre_y + centre_x
    f = d * -centre_x + e * -centre_y + centre_y
    matrix = (a, b, c + a * box_left + b * box_top, d, e, f + d * box_left + e * box_top)
    return layer.transform(size, Image.Transform.AFFINE, matrix, resample=Image.Resampling.BICUBIC)


class _Tile(NamedTuple):
    image: Image.Image
    left: int  # where the tile's corner lies from the text's drawing origin
    top: int


@lru_cache(maxsize=32)
def _stamp_tile(stamp: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont) -> _Tile:
    """The stamp drawn once, stroke included, on a transparent tile just large enough to hold it."""
    left, top, right, bottom = (int(edge) for edge in font.getbbox(stamp, stroke_width=STROKE_WIDTH))
    left, top, right, bottom = left - 1, top - 1, right + 1, bottom + 1  # anti-aliasing may spill a pixel
    tile = Image.new("RGBA", (right - left, bottom - top), (0, 0, 0, 0))
    ImageDraw.Draw(tile).text(
        (-left, -top),
        stamp,
        font=font,
        fill=(255, 255, 255, TEXT_ALPHA),
        stroke_width=STROKE_WIDTH,
        stroke_fill=(0, 0, 0, EDGE_ALPHA),
    )
    return _Tile(tile, left, top)


def preview_render(original: bytes, *, stamp: str) -> bytes:
    out = io.BytesIO()
    watermark_apply(preview_image(original), stamp).save(out, "JPEG", quality=85)
    return out.getvalue()
