"""Recognising and opening a customer photo: format sniffing, header probe, pixel-mode normalisation.
Only JPEG, PNG, TIFF and HEIC are accepted, and only Pillow's decoders for those formats are ever invoked."""

from __future__ import annotations

import io
import struct
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import pillow_heif
from PIL import Image

from lab.production.imaging.errors import (
    DECODE_FAILED,
    TOO_LARGE,
    UNSUPPORTED_FORMAT,
    UNSUPPORTED_PIXEL_FORMAT,
    RasterError,
)
from lab.production.imaging.geometry import normalised_orientation

SourceFormat = Literal["jpeg", "png", "tiff", "heic"]

# Largest photo we decode: above a 150 MP medium-format back, below Pillow's own decompression-bomb refusal.
MAX_SOURCE_PIXELS = 178_000_000
_PILLOW_FORMATS = {"jpeg": ["JPEG"], "png": ["PNG"], "tiff": ["TIFF"], "heic": ["HEIF"]}
_HEIC_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"})
# What decoders raise on corrupt input; anything else is a bug and should surface as such.
DECODE_EXCEPTIONS: tuple[type[BaseException], ...] = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    IndexError,
    struct.error,
    RuntimeError,
)

pillow_heif.register_heif_opener()


@dataclass(frozen=True)
class Source:
    """A photo whose header has been read (pixels not yet decoded, except for HEIC)."""

    format: SourceFormat
    image: Image.Image
    width: int
    height: int
    orientation: int
    icc_profile: bytes | None


def sniff_format(data: bytes) -> SourceFormat:
    """Trust the magic bytes, not a file name or a client's content type."""
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith((b"II*\x00", b"MM\x00*")):
        return "tiff"
    if data[4:8] == b"ftyp" and data[8:12] in _HEIC_BRANDS:
        return "heic"
    raise RasterError(code=UNSUPPORTED_FORMAT, message="not a JPEG, PNG, TIFF or HEIC file")


@contextmanager
def decoding() -> Iterator[None]:
    """Translate decoder failures into RasterError; we enforce our own pixel limit, so silence Pillow's."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            yield
        except Image.DecompressionBombError as error:
            raise RasterError(code=TOO_LARGE, message="photo has too many pixels") from error
        except DECODE_EXCEPTIONS as error:
            raise RasterError(code=DECODE_FAILED, message=f"photo could not be decoded: {error}") from error


def open_source(data: bytes) -> Source:
    source_format = sniff_format(data)
    with decoding():
        image = Image.open(io.BytesIO(data), formats=_PILLOW_FORMATS[source_format])
        # Pillow's TIFF decoder applies the Orientation tag itself (the size it reports at open is already
        # upright, and load() turns the pixels) while getexif() still reports the tag: applying it again
        # printed TIFFs sideways (6, 8) or upside down (3). pillow-heif moves it into the HEIF transforms and
        # reports 1. JPEG and PNG keep the tag for us to apply.
        orientation = 1 if source_format == "tiff" else normalised_orientation(image.getexif().get(0x0112))
    width, height = image.size
    if width * height > MAX_SOURCE_PIXELS:
        raise RasterError(code=TOO_LARGE, message=f"photo has {width * height} pixels")
    icc_profile = image.info.get("icc_profile")
    return Source(
        format=source_format,
        image=image,
        width=width,
        height=height,
        orientation=orientation,
        icc_profile=icc_profile if isinstance(icc_profile, bytes) and icc_profile else None,
    )


def to_working_mode(image: Image.Image) -> Image.Image:
    """Reduce any decoded mode to 8-bit L, RGB or CMYK; transparency is composited onto white paper."""
    if image.mode in ("RGB", "L", "CMYK"):
        return image
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16-bit grey: scale 0-65535 to 0-255 (a plain convert("L") would clip instead of scale).
        return image.convert("I").point(lambda value: value * (1 / 257)).convert("L")
    if image.mode == "1":
        return image.convert("L")
    if image.mode == "YCbCr":
        return image.convert("RGB")
    if image.mode in ("LA", "La"):
        grey = image.convert("LA")
        paper = Image.new("L", grey.size, 255)
        paper.paste(grey.getchannel("L"), mask=grey.getchannel("A"))
        return paper
    if image.mode in ("P", "PA", "RGBA", "RGBa", "RGBX"):
        rgba = image.convert("RGBA")
        paper = Image.new("RGB", rgba.size, (255, 255, 255))
        paper.paste(rgba.convert("RGB"), mask=rgba.getchannel("A"))
        return paper
    raise RasterError(code=UNSUPPORTED_PIXEL_FORMAT, message=f"pixel format {image.mode} is not supported")
