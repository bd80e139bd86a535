"""The bytes each variant serves: the watermarked preview, and the original at full resolution as a browser
shows it in the tab (a JPEG or PNG as stored, anything else re-encoded as a lossless PNG)."""

from __future__ import annotations

import io
from datetime import datetime
from typing import Final

import pyvips
from PIL import Image

from lab.gate.watermark import preview_render
from lab.orders.image_formats import ACCEPTED_FORMATS
from lab.orders.models import Asset
from lab.production.imaging.source import WHOLE_DECODE_MAX_BYTES, decode, decoding, open_source

VARIANT_ACTIONS = {"preview": "image.view.preview", "full": "image.view.full", "download": "image.download"}
# What a browser shows in the tab rather than saving to the station's disk: full resolution is one of these.
BROWSER_SHOWN_TYPES = frozenset({"image/jpeg", "image/png"})
# Largest TIFF or HEIC re-encoded as a PNG for the tab, in bytes of its decoded pixels (every band, every
# sample's bytes): the raster decoders' whole-decode budget. The PNG is built whole in memory (its SHA-256
# is recorded before a byte is sent), measured at two to three times that: a 24 MP 8-bit photo (72 MB)
# grew the web process by ~140 MiB as a TIFF and ~190 MiB as a HEIC, within a worker's 200 MiB; a 48 MP
# phone HEIC grew it by ~250 MiB, an 89 MP TIFF by ~470 MiB. Larger ones are refused
# (`full_resolution_too_large`); their preview is still shown.
FULL_RESOLUTION_RE_ENCODE_MAX_BYTES: Final = WHOLE_DECODE_MAX_BYTES
_SAMPLE_BYTES: Final = {"uchar": 1, "char": 1, "ushort": 2, "short": 2, "uint": 4, "int": 4, "float": 4}


def variant_render(
    *, asset: Asset, original: bytes, variant: str, viewer: str, at: datetime
) -> tuple[bytes, str]:
    if variant != "preview":
        return _full_resolution(asset=asset, original=original)
    return preview_render(original, stamp=f"{viewer} {at:%Y-%m-%d %H:%M}Z"), "image/jpeg"


def _full_resolution(*, asset: Asset, original: bytes) -> tuple[bytes, str]:
    """The original as a browser shows it in the tab: a JPEG or PNG as stored, anything else (TIFF, HEIC)
    as a lossless PNG of its pixels. Chromium saves an image/tiff or image/heic answer to the Downloads
    folder of the shared station instead of showing it, where it stays past the grant and past erasure.
    One whose PNG would not fit a web worker is not decoded (TooLargeToReEncode)."""
    media_type = media_type_of(asset=asset, original=original)
    if media_type in BROWSER_SHOWN_TYPES:
        return original, media_type
    if _decoded_bytes(original) > FULL_RESOLUTION_RE_ENCODE_MAX_BYTES:
        raise TooLargeToReEncode
    return _lossless_png(original), "image/png"


class TooLargeToReEncode(Exception):
    """The PNG would not fit a web worker's memory (`FULL_RESOLUTION_RE_ENCODE_MAX_BYTES`)."""


def _decoded_bytes(original: bytes) -> int:
    """The bytes of the pixels _lossless_png decodes, from the header alone: a HEIC as 8-bit grey or RGB
    (as the prints), anything else in its own bands and sample size (a 16-bit TIFF's PNG is 16-bit)."""
    source = open_source(original)
    if source.format == "heic":
        return source.width * source.height * (1 if source.mode == "L" else 3)
    header = pyvips.Image.new_from_buffer(original, "", access="sequential")
    return int(header.width * header.height * header.bands * _SAMPLE_BYTES.get(header.format, 8))


def _lossless_png(original: bytes) -> bytes:
    """Every pixel, depth (16-bit) and ICC profile kept, turned upright as the browser turns a JPEG; CMYK
    converted to RGB through its profile (PNG has no CMYK); no other metadata."""
    source = open_source(original)
    with decoding():
        if source.format == "heic":
            # pillow-heif's decode, upright (it applies the HEIF transforms), 8-bit as the prints are
            pixels = decode(original, source, shrink_factor=1)
            if source.icc_profile and pixels.get_typeof("icc-profile-data") == 0:
                pixels = pixels.copy()
                pixels.set_type(pyvips.GValue.blob_type, "icc-profile-data", source.icc_profile)
        else:
            # Rows are read in order unless the photo must be turned (a turn reads them out of order).
            access = "sequential" if source.orientation == 1 else "random"
            pixels = pyvips.Image.new_from_buffer(original, "", access=access, fail_on="error").autorot()
        data: bytes = pixels.pngsave_buffer(keep=pyvips.enums.ForeignKeep.ICC)
    return data


def media_type_of(*, asset: Asset, original: bytes) -> str:
    """The media type of the format intake stored the photo in. Not a probe of the bytes: a phone's
    multi-picture JPEG is stored as its first picture, whose index still names the others, so Pillow reads it
    as MPO again, and `image/mpo` is a type no browser shows."""
    if known := ACCEPTED_FORMATS.get(asset.image_format):
        return known
    with Image.open(io.BytesIO(original)) as probe:
        return Image.MIME.get(probe.format or "", "application/octet-stream")
