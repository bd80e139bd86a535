"""Real image bytes for tests: generated with Pillow, never fixtures checked into the repository."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

# Stored pixels for each EXIF orientation: the inverse of what a reader applies to see the upright photo.
STORED_FOR_ORIENTATION = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def jpeg_bytes(width: int = 1800, height: int = 1200, *, orientation: int = 1, gps: bool = False) -> bytes:
    image = Image.new("RGB", (width, height), (200, 120, 40))
    image.paste((20, 40, 220), (0, 0, width // 4, height // 4))
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    if gps:
        exif[0x8825] = {1: "N", 2: (52.0, 31.0, 12.0), 3: "E", 4: (13.0, 24.0, 36.0)}
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90, exif=exif.tobytes())
    return out.getvalue()


def png_bytes(width: int = 1200, height: int = 1800, mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, (width, height), 128 if mode in ("L", "I;16") else (10, 200, 30)).save(out, "PNG")
    return out.getvalue()


def tiff_bytes(width: int = 1200, height: int = 1800) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (90, 90, 90)).save(out, "TIFF")
    return out.getvalue()


def heic_bytes(width: int = 1200, height: int = 900, *, tile_size: int = 0) -> bytes:
    """One coded picture, or (tile_size) a grid of tiles, as phones store their photos."""
    import pillow_heif

    pillow_heif.register_heif_opener()
    out = io.BytesIO()
    Image.new("RGB", (width, height), (60, 160, 60)).save(out, "HEIF", tile_size=tile_size)
    return out.getvalue()


def large_blocks(directory: Path, *, image_format: str, width: int = 7740, height: int = 5160) -> str:
    """A 40 MP photo of flat colour blocks (120 MB decoded, a few MB on disk) written into `directory`;
    its path. libvips makes it row by row, so the test process never holds it decoded either."""
    import pyvips

    xy = pyvips.Image.xyz(width, height)
    cells = (xy[0] / 97).floor() + (xy[1] / 89).floor()
    pixels = ((cells % 7) * 30 + 20).bandjoin([(cells % 5) * 50, (cells % 3) * 100 + 40]).cast("uchar")
    path = directory / f"blocks.{image_format}"
    if image_format == "png":
        pixels.pngsave(str(path), compression=1)
    elif image_format == "tiff":
        pixels.tiffsave(str(path), compression="deflate")
    else:
        pixels.jpegsave(str(path), Q=90)
    return str(path)
