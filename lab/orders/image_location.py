"""Location data out of a photo at intake, per container format: removed in place, checked by reading the
stored bytes back, or the photo refused (`gps_not_removable`).
"""

from __future__ import annotations

import io
import struct

import pillow_heif
from PIL import Image

from lab.orders import container_gps, exif_gps
from lab.orders.errors import OrderError
from lab.orders.image_formats import CORRUPT_ERRORS, InvalidImage, pillow_bomb_warning_ignored

EXIF_GPS_IFD = 0x8825


def without_location(data: bytes, image_format: str, *, has_exif_gps: bool) -> bytes:
    """The photo with no GPS data left in its EXIF or XMP, removed in place (no pixel re-encoded; the rest
    of the metadata, orientation included, kept), or refused (422 `gps_not_removable`): GPS is stripped on
    intake, and the gate serves stored originals. Only JPEG EXIF was stripped before: a HEIC (iPhones'
    default), a PNG's eXIf chunk, a TIFF and every XMP packet kept their coordinates.
    What Pillow cannot read back after the edit is `corrupt_image` (it was a 500)."""
    try:
        stored = _location_removed(data, image_format, has_exif_gps=has_exif_gps)
        located = _has_location(stored, image_format)
    except exif_gps.GpsNotRemovable as error:
        raise InvalidImage(
            OrderError.GPS_NOT_REMOVABLE, "The photo's location data cannot be removed from it."
        ) from error
    except CORRUPT_ERRORS as error:
        raise InvalidImage(OrderError.CORRUPT_IMAGE, "The image's metadata is corrupt.") from error
    if located:
        raise InvalidImage(
            OrderError.GPS_NOT_REMOVABLE, "The photo's location data cannot be removed from it."
        )
    return stored


def _location_removed(data: bytes, image_format: str, *, has_exif_gps: bool) -> bytes:
    if image_format == "JPEG":
        stored = _strip_jpeg_exif_gps(data) if has_exif_gps else data
        return container_gps.strip_jpeg_xmp_gps(stored)
    if image_format == "PNG":
        return container_gps.strip_png_gps(data)
    if image_format == "TIFF":
        return container_gps.strip_tiff_gps(data)
    heif = pillow_heif.open_heif(data)
    return container_gps.strip_heic_gps(data, exif=heif.info.get("exif"), xmp=heif.info.get("xmp"))


def _strip_jpeg_exif_gps(data: bytes) -> bytes:
    try:
        return strip_jpeg_gps(data)
    except Exception as error:
        # EXIF that Pillow reads but cannot write back: a number tag stored as text (struct.error), a text
        # tag stored as a FLOAT, DOUBLE or RATIONAL (AttributeError), and whatever else an attacker's
        # types make its writer raise. Each was a 500, and a URL photo's fetch task crashed until the
        # sweep gave up (`url_fetch_failed`). The photo is refused rather than kept with its location.
        raise InvalidImage(OrderError.CORRUPT_IMAGE, "The image's EXIF data is corrupt.") from error


def _has_location(data: bytes, image_format: str) -> bool:
    """What Pillow reads of the stored bytes, as a check of what was removed: a GPS IFD, or an XMP packet
    that still names a GPS property. A PNG's chunks are walked instead (container_gps.png_has_gps): Pillow's
    getexif() of a PNG decodes its pixels when no eXIf chunk comes before them."""
    if image_format == "PNG":
        return container_gps.png_has_gps(data)
    with pillow_bomb_warning_ignored(), Image.open(io.BytesIO(data)) as image:
        if EXIF_GPS_IFD in image.getexif():
            return True
        for key in ("xmp", "XML:com.adobe.xmp"):
            packet = image.info.get(key) or b""
            if b"gps" in (packet.encode() if isinstance(packet, str) else bytes(packet)).lower():
                return True
    return False


def strip_jpeg_gps(data: bytes) -> bytes:
    """Remove the GPS IFD from a JPEG's EXIF segment without re-encoding the pixels."""
    with pillow_bomb_warning_ignored(), Image.open(io.BytesIO(data)) as image:
        exif = image.getexif()
        if EXIF_GPS_IFD not in exif:
            return data
        del exif[EXIF_GPS_IFD]
        # Pillow's Exif.tobytes() starts with the APP1 "Exif\0\0" header itself: adding another made a doubled
        # header, which Pillow reads and libvips does not, so every photo whose GPS was stripped (a phone's)
        # lost its orientation in the raster workers and printed sideways or upside down.
        payload = exif.tobytes()
        new_payload = payload if payload.startswith(b"Exif\x00\x00") else b"Exif\x00\x00" + payload
    position = 2  # after SOI
    while position + 4 <= len(data) and data[position] == 0xFF:
        marker = data[position + 1]
        length = struct.unpack(">H", data[position + 2 : position + 4])[0]
        segment_end = position + 2 + length
        if marker == 0xE1 and data[position + 4 : position + 10] == b"Exif\x00\x00":
            if len(new_payload) + 2 > 0xFFFF:
                return data
            header = b"\xff\xe1" + struct.pack(">H", len(new_payload) + 2)
            return data[:position] + header + new_payload + data[segment_end:]
        if marker == 0xDA:  # start of scan: no EXIF before the pixels
            break
        position = segment_end
    return data
