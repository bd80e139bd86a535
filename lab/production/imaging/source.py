"""Recognising and decoding a customer photo: format sniffing, header probe, decoding to working pixels.
Only JPEG, PNG, TIFF and HEIC are accepted; each is handed to its own decoder, never to a format guesser."""

from __future__ import annotations

import io
import math
import struct
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final, Literal

import pillow_heif
import pyvips
import simplejpeg
from PIL import Image

from lab.lib import decoders, heif_tiles
from lab.lib.decoders import SourceFormat, vips_load, vips_orientation
from lab.orders.image_formats import MAX_SOURCE_PIXELS
from lab.production.imaging.errors import (
    DECODE_FAILED,
    TOO_LARGE,
    UNSUPPORTED_FORMAT,
    UNSUPPORTED_PIXEL_FORMAT,
    RasterError,
)

WorkingMode = Literal["L", "RGB", "CMYK"]

# Largest photo we decode (defined with intake, which never accepts more: lab.orders.image_formats). For a
# HEIC it bounds the pixels of all its coded tiles too, not only those shown
# (`heif_tiles.check_coded_pixels`).
# A JPEG whose decoded pixels fit in this many bytes is decoded whole by libjpeg-turbo's TurboJPEG API
# (simplejpeg), measured ~35 % faster than libvips' or Pillow's scanline decoders; larger ones are streamed
# through libvips, which holds only a few rows. 100 MB keeps a 24 MP camera photo on the fast path while a
# worker stays under its 200 MiB budget (bench/raster/README.md).
WHOLE_DECODE_MAX_BYTES: Final = 100_000_000
# What decoders raise on corrupt input; anything else is a bug and should surface as such.
DECODE_EXCEPTIONS: tuple[type[BaseException], ...] = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    IndexError,
    struct.error,
    RuntimeError,
    pyvips.Error,
)
_VIPS_BAND_FORMATS: Final = frozenset({"uchar", "ushort"})
_VIPS_INTEGER_FORMATS: Final = frozenset({"char", "short", "uint", "int"})
_VIPS_COLOUR_SPACES: Final = frozenset({"b-w", "grey16", "srgb", "rgb", "rgb16", "cmyk", "multiband"})

pillow_heif.register_heif_opener()


@dataclass(frozen=True)
class Source:
    """A photo whose header has been read: its stored (not yet EXIF-rotated) size, orientation, embedded
    profile and the 8-bit pixel mode it is worked in. No pixel is decoded yet."""

    format: SourceFormat
    width: int
    height: int
    orientation: int
    icc_profile: bytes | None
    mode: WorkingMode


def sniff_format(data: bytes) -> SourceFormat:
    """Trust the magic bytes, not a file name or a client's content type: the lab's one list, which intake
    checks every upload against (lab.lib.decoders.sniff_format), so a photo it stored is one printed here."""
    source_format = decoders.sniff_format(data)
    if source_format is None:
        raise RasterError(code=UNSUPPORTED_FORMAT, message="not a JPEG, PNG, TIFF or HEIC file")
    return source_format


@contextmanager
def decoding() -> Iterator[None]:
    """Translate decoder failures into RasterError; we enforce our own pixel limit, so silence Pillow's.

    libvips decodes lazily: a corrupt scan surfaces when pixels are first computed, so the resampling
    engines run inside this too."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            yield
        except Image.DecompressionBombError as error:
            raise RasterError(code=TOO_LARGE, message="photo has too many pixels") from error
        except DECODE_EXCEPTIONS as error:
            message = error.message if isinstance(error, pyvips.Error) else str(error)
            raise RasterError(code=DECODE_FAILED, message=f"photo could not be decoded: {message}") from error


def _vips_mode(image: pyvips.Image) -> WorkingMode:
    if image.format not in _VIPS_BAND_FORMATS | _VIPS_INTEGER_FORMATS:
        raise RasterError(
            code=UNSUPPORTED_PIXEL_FORMAT, message=f"pixel format {image.format} is not supported"
        )
    if image.interpretation not in _VIPS_COLOUR_SPACES:
        raise RasterError(
            code=UNSUPPORTED_PIXEL_FORMAT, message=f"colour space {image.interpretation} is not supported"
        )
    colour_bands = image.bands - (1 if image.hasalpha() else 0)
    if image.interpretation == "cmyk" and colour_bands == 4:
        return "CMYK"
    if colour_bands in (1, 3):
        return "L" if colour_bands == 1 else "RGB"
    raise RasterError(code=UNSUPPORTED_PIXEL_FORMAT, message=f"{image.bands}-band photos are not supported")


def _vips_field(image: pyvips.Image, name: str) -> object:
    return image.get(name) if image.get_typeof(name) != 0 else None


def _check_pixels(width: int, height: int) -> None:
    if width * height > MAX_SOURCE_PIXELS:
        raise RasterError(code=TOO_LARGE, message=f"photo has {width * height} pixels")


def open_source(data: bytes) -> Source:
    """Read the header (libvips for JPEG, PNG and TIFF; pillow-heif, which decodes, for HEIC)."""
    source_format = sniff_format(data)
    if source_format == "heic":
        return _open_heic(data)
    with decoding():
        header = vips_load(data, source_format)
        _check_pixels(header.width, header.height)
        mode = _vips_mode(header)
        # libvips reports the stored pixels and the EXIF (JPEG, PNG eXIf) or TIFF Orientation tag as it is:
        # orientation is ours to apply, for every format alike.
        orientation = vips_orientation(header)
        icc_profile = _vips_field(header, "icc-profile-data")
    return Source(
        format=source_format,
        width=header.width,
        height=header.height,
        orientation=orientation,
        icc_profile=bytes(icc_profile) if isinstance(icc_profile, bytes) and icc_profile else None,
        mode=mode,
    )


def _open_heic(data: bytes) -> Source:
    """The header, and the refusal of a grid whose tiles hold more pixels than the limit or lie wholly outside
    the image (every decode decodes every tile: a 10 KB grid displayed at 4096 x 4096 coded 2.1 GP), before
    any pixel is decoded, as intake refuses it (`heif_tiles.check_coded_pixels`): for photos stored before
    intake did, and for the proofs and the gate's preview, which open photos here too."""
    with decoding():
        image = Image.open(io.BytesIO(data), formats=["HEIF"])
        _check_pixels(image.width, image.height)
        try:
            heif_tiles.check_coded_pixels(data, max_pixels=MAX_SOURCE_PIXELS)
        except heif_tiles.CodedTooLarge as error:
            raise RasterError(code=TOO_LARGE, message=str(error)) from error
    icc_profile = image.info.get("icc_profile")
    mode: WorkingMode = "L" if image.mode in ("L", "LA", "I;16", "I;16L", "I", "1") else "RGB"
    return Source(
        format="heic",
        width=image.width,
        height=image.height,
        # pillow-heif moves the EXIF orientation into the HEIF transforms it applies, and reports 1.
        orientation=1,
        icc_profile=icc_profile if isinstance(icc_profile, bytes) and icc_profile else None,
        mode=mode,
    )


def decode(data: bytes, source: Source, *, shrink_factor: int) -> pyvips.Image:
    """The stored photo as a libvips image in its working colours (8-bit, 1, 3 or 4 bands: `source.mode`),
    shrunk on load by `shrink_factor` for JPEGs: whole in memory (small JPEGs, HEIC) or streamed, decoding
    rows as the pipeline asks for them and holding only a few.

    A streamed image is lazy: a corrupt scan surfaces when the caller's pipeline is computed, which must
    therefore run inside `decoding()` too.
    """
    if source.format == "heic":
        return _heic_pixels(data, source)
    if source.format == "jpeg" and source.mode != "CMYK":
        whole = _whole_jpeg(data, source, shrink_factor=shrink_factor)
        if whole is not None:
            return whole
    return _working_colours(vips_load(data, source.format, shrink=shrink_factor))


def _whole_jpeg(data: bytes, source: Source, *, shrink_factor: int) -> pyvips.Image | None:
    """TurboJPEG decode into one buffer (fast, but the whole photo in memory); None when it is too big or
    libjpeg-turbo only warned (extraneous bytes and the like): libvips then decides, as for large photos."""
    bands = 1 if source.mode == "L" else 3
    width, height = math.ceil(source.width / shrink_factor), math.ceil(source.height / shrink_factor)
    if width * height * bands > WHOLE_DECODE_MAX_BYTES:
        return None
    try:
        # No buffer of ours: numpy's is allocated without being cleared first (a bytearray's clearing pass
        # cost a third as much again as the decode).
        decoded = simplejpeg.decode_jpeg(
            data,
            colorspace="GRAY" if bands == 1 else "RGB",
            min_width=width,
            min_height=height,
            min_factor=shrink_factor,
        )
    except ValueError:
        return None
    if decoded.shape[:2] != (height, width):
        return None  # libjpeg-turbo chose another scale than libvips' 1/2, 1/4 or 1/8
    return pyvips.Image.new_from_memory(decoded.data, width, height, bands, "uchar")


def _heic_pixels(data: bytes, source: Source) -> pyvips.Image:
    """A grid photo too large to hold whole (as for JPEGs: `WHOLE_DECODE_MAX_BYTES`) is streamed one row of
    tiles at a time (`heif_tiles`). Any other is libheif's decoded buffer itself (8-bit, rows `stride`
    bytes apart), shown to libvips without a copy: through Pillow a 24 MP photo was copied twice (289 MiB)."""
    if source.mode == "RGB" and source.width * source.height * 3 > WHOLE_DECODE_MAX_BYTES:
        tiled = heif_tiles.streamed(data)
        if tiled is not None:
            return tiled
    heif = pillow_heif.open_heif(data, convert_hdr_to_8bit=True)
    width, height = heif.size
    bands = len(heif.mode.split(";")[0])  # "RGB", "RGBA", "L", "LA"
    if heif.stride % bands:
        return _from_pillow(to_working_mode(Image.open(io.BytesIO(data), formats=["HEIF"])))
    rows = pyvips.Image.new_from_memory(heif.data, heif.stride // bands, height, bands, "uchar")
    interpretation = "b-w" if bands <= 2 else "srgb"
    return _working_colours(rows.crop(0, 0, width, height).copy(interpretation=interpretation))


def _from_pillow(image: Image.Image) -> pyvips.Image:
    bands = len(image.getbands())
    return pyvips.Image.new_from_memory(image.tobytes(), image.width, image.height, bands, "uchar")


def _working_colours(image: pyvips.Image) -> pyvips.Image:
    """8-bit samples, any transparency composited onto white paper (no ink, for CMYK).

    16-bit and wider samples keep their high byte, as Pillow reads 16-bit PNGs: within one step of a 1/257
    scale, and an integer shift on the full-size rows costs far less than float arithmetic there (a 16-bit
    178 MP TIFF took 23 s to print with the scaling done after the reduction)."""
    interpretation = "cmyk" if image.interpretation == "cmyk" else "b-w" if image.bands <= 2 else "srgb"
    if image.format != "uchar":
        sixteen_bits = image if image.format == "ushort" else image.cast("ushort")
        image = sixteen_bits.cast("uchar", shift=True).copy(interpretation=interpretation)
    if image.hasalpha():
        paper = 0 if interpretation == "cmyk" else 255
        image = image.flatten(background=[paper] * (image.bands - 1), max_alpha=255)
    return image


def to_working_mode(image: Image.Image) -> Image.Image:
    """Reduce any Pillow-decoded mode to 8-bit L, RGB or CMYK; transparency is composited onto white."""
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
