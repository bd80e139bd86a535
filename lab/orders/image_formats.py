"""What photo intake accepts and how it refuses: formats, colour modes, pixel limits (decompression bombs),
one image per file, and the error a refused photo raises (InvalidImage).
"""

from __future__ import annotations

import struct
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Final

import pillow_heif
from PIL import Image

from lab.lib.errors import DomainError

if TYPE_CHECKING:
    from lab.lib.decoders import SourceFormat, VipsFormat
from lab.orders.errors import OrderError

pillow_heif.register_heif_opener()

# Largest photo the raster workers decode (lab.production.imaging.source): just under Pillow's own
# decompression-bomb refusal (2 x MAX_IMAGE_PIXELS, 179 MP), which opening a HEIC goes through. Intake never
# accepts more (effective_max_pixels caps ASSET_MAX_PIXELS at this), so every accepted photo can be printed.
MAX_SOURCE_PIXELS: Final = 178_000_000
ACCEPTED_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "TIFF": "image/tiff", "HEIF": "image/heic"}
VIPS_FORMAT: dict[str, VipsFormat] = {"JPEG": "jpeg", "PNG": "png", "TIFF": "tiff"}
_SNIFFED_AS: dict[str, SourceFormat] = {**VIPS_FORMAT, "HEIF": "heic"}
ACCEPTED_MODES = {"RGB", "RGBA", "L", "LA", "P", "CMYK", "I;16", "I;16B", "I;16L", "I", "1"}
# What Pillow and pillow-heif raise on a file they cannot read through, each a 500 until mapped:
# OverflowError: an EXIF orientation stored as an infinite float (int() of it).
# RuntimeError: Pillow's AVIF opener on an "avif" ftyp box around anything else.
# TypeError: Pillow counting the frames of a TIFF whose next IFD (a thumbnail's) has no ImageWidth or Length.
CORRUPT_ERRORS: Final = (
    OSError,
    SyntaxError,
    ValueError,
    TypeError,
    OverflowError,
    RuntimeError,
    struct.error,
    EOFError,
)


class InvalidImage(DomainError):
    """The bytes are not a photo we accept (format, colour mode, pixels, integrity)."""


class ImageTooLarge(DomainError):
    """The file is over the size limit."""


def effective_max_pixels(max_pixels: int) -> int:
    """The pixel limit intake applies: `max_pixels` (ASSET_MAX_PIXELS), but never more than the raster
    workers decode (`MAX_SOURCE_PIXELS`, 178 MP), so that every photo accepted can be printed.

    Pillow's DecompressionBombWarning (above its MAX_IMAGE_PIXELS, 89.5 MP) was made an error here: that,
    not ASSET_MAX_PIXELS (200 MP by default), was the limit, and the 422 did not say what it was. The warning
    is ignored now and this limit judged instead; Pillow's own DecompressionBombError (above 179 MP, twice
    its MAX_IMAGE_PIXELS, left as it is: a module global) stays a backstop past it."""
    return min(max_pixels, MAX_SOURCE_PIXELS)


@contextmanager
def pillow_bomb_warning_ignored() -> Iterator[None]:
    """Pillow warns on opening an image above its MAX_IMAGE_PIXELS (89.5 MP); our own limit is judged instead
    (`effective_max_pixels`), as the raster workers do (lab.production.imaging.source.decoding)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield


def check_workers_take_it(data: bytes, image_format: str) -> None:
    """Refuse what Pillow opens but the raster workers would not take (lab.lib.decoders' one list): a TIFF
    with byte-swapped magic, which libtiff refuses, or a HEIC brand a later pillow-heif opens that is not on
    the list. Stored, such a photo was quoted and paid for, and its print failed (`unsupported_format`)."""
    from lab.lib.decoders import sniff_format

    if sniff_format(data) != _SNIFFED_AS[image_format]:
        raise InvalidImage(
            OrderError.UNSUPPORTED_FORMAT,
            f"This kind of {image_format} file is not accepted; send JPEG, PNG, TIFF or HEIC.",
            format=image_format,
        )


def check_heic_coded_pixels(data: bytes, limit: int) -> None:
    """A HEIC grid's decode costs the pixels of all its tiles, not the image it displays (Pillow's size): a
    grid of 128 columns of 4096 px tiles displayed at 4096 x 4096 (a 10 KB file) took 87 s to check, past
    gunicorn's timeout. Refused from the header, before any tile is decoded (`heif_tiles.check_coded_pixels`,
    which the rasterizer calls too)."""
    from lab.lib import heif_tiles

    try:
        heif_tiles.check_coded_pixels(data, max_pixels=limit)
    except heif_tiles.CodedTooLarge as error:
        message = (
            "The image's grid has tiles wholly outside the image."
            if error.outside
            else f"The image's tiles hold {error.coded_pixels} pixels; the limit is {limit}."
        )
        raise InvalidImage(OrderError.DECOMPRESSION_BOMB, message, max_pixels=limit) from error


def check_one_frame(image: Image.Image, image_format: str) -> None:
    """Only a photo's first frame, page or top-level image prints: a 2-page TIFF, an APNG or a HEIC of two
    images was stored whole and printed its first one without a word. A JPEG is one picture once cut
    (image_end): an MPO phone photo's second picture is its tail, which Pillow still counts. A HEIC's
    thumbnails, depth and auxiliary images are not top-level images (pillow-heif counts those only).
    A TIFF's pages are not counted: Pillow's n_frames reads every IFD of the chain, each from its start
    (a 12 MB TIFF of 120,000 one-pixel pages took 167 s, past gunicorn's timeout). Its first IFD's next
    pointer decides, and the second IFD is read as well (one that cannot be read is a corrupt file)."""
    if image_format == "JPEG":
        frames = 1
    elif image_format == "TIFF":
        frames = _tiff_pages_up_to_two(image)
    else:
        frames = getattr(image, "n_frames", 1)
    if frames > 1:
        counted = "at least 2" if image_format == "TIFF" else str(frames)
        raise InvalidImage(
            OrderError.IMAGE_HAS_SEVERAL_FRAMES,
            f"The file holds {counted} images (frames or pages); send each photo as a file of its own.",
            frames=frames,
        )


def _tiff_pages_up_to_two(image: Image.Image) -> int:
    if not getattr(image, "is_animated", False):
        return 1
    image.seek(1)
    image.seek(0)
    return 2
