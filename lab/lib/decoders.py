"""The decoder of each stored photo format, shared by everything that reads one: intake's check of every
upload (lab/orders/imaging.py), the raster workers and the gate's preview (lab/production/imaging/), so that
what intake accepts is what the workers can decode. HEIC grids: lab/lib/heif_tiles.py."""

from __future__ import annotations

from typing import Final, Literal

import pyvips

SourceFormat = Literal["jpeg", "png", "tiff", "heic"]
VipsFormat = Literal["jpeg", "png", "tiff"]

# The one list of what the lab takes, by magic bytes: intake refuses what Pillow opens but is not on it
# (422 `unsupported_format`), and the raster workers hand each format on it to its own decoder. Before, each
# had its own list: intake stored BigTIFFs and HEICs of brand hevm or hevs, and every paid print of them
# failed (`unsupported_format`). Each entry is read alike by Pillow (intake) and the workers' decoders:
# - TIFF: classic, and little-endian BigTIFF (libtiff decodes it, pixel for pixel what Pillow reads). Not
#   Pillow's two byte-swapped magics ("MM*\0", "II\0*"), which libtiff refuses, nor a big-endian BigTIFF
#   ("MM\0+"), which Pillow 13 reads as a classic TIFF and cannot open.
# - HEIC: every ftyp major brand pillow-heif's opener takes; the workers decode HEIC with pillow-heif too.
_SIGNATURES: Final[tuple[tuple[bytes, SourceFormat], ...]] = (
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"II+\x00", "tiff"),
)
HEIC_BRANDS: Final = frozenset(
    {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1"}
)


def sniff_format(data: bytes) -> SourceFormat | None:
    """The accepted format the magic bytes say `data` is, or None: never a file name or a content type."""
    for signature, source_format in _SIGNATURES:
        if data.startswith(signature):
            return source_format
    if data[4:8] == b"ftyp" and data[8:12] in HEIC_BRANDS:
        return "heic"
    return None


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
