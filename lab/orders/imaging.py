"""Intake validation of customer photos: decode for real, measure, strip location data.

A photo is accepted only when Pillow decodes every pixel; the checks run before anything is stored.
"""

from __future__ import annotations

import hashlib
import io
import struct
import warnings
from dataclasses import dataclass

import pillow_heif
from PIL import Image, ImageCms, UnidentifiedImageError

from lab.lib.errors import DomainError

pillow_heif.register_heif_opener()

ACCEPTED_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "TIFF": "image/tiff", "HEIF": "image/heic"}
ACCEPTED_MODES = {"RGB", "RGBA", "L", "LA", "P", "CMYK", "I;16", "I;16B", "I;16L", "I", "1"}
EXIF_ORIENTATION = 0x0112
EXIF_GPS_IFD = 0x8825


class InvalidImage(DomainError):
    status = 422


class ImageTooLarge(DomainError):
    status = 413


@dataclass(frozen=True)
class ImageFacts:
    data: bytes  # what is stored: the upload, with GPS removed from JPEG EXIF
    sha256: str  # of the bytes the customer sent, so a client checksum matches
    size_bytes: int
    width_px: int
    height_px: int
    image_format: str
    color_mode: str
    has_icc_profile: bool
    icc_description: str
    exif_orientation: int
    gps_stripped: bool


def check_client_checksums(*, data: bytes, md5: str | None, sha256: str | None) -> None:
    if md5 and hashlib.md5(data, usedforsecurity=False).hexdigest() != md5.lower():
        raise InvalidImage("checksum_mismatch", "The uploaded bytes do not match the md5 you sent.")
    if sha256 and hashlib.sha256(data).hexdigest() != sha256.lower():
        raise InvalidImage("checksum_mismatch", "The uploaded bytes do not match the sha256 you sent.")


def inspect_image(*, data: bytes, max_bytes: int, max_pixels: int) -> ImageFacts:
    """Decode the whole image or refuse it with a specific code; never trusts names or Content-Type."""
    if len(data) > max_bytes:
        raise ImageTooLarge(
            "file_too_large", f"The file is larger than {max_bytes} bytes.", max_bytes=max_bytes
        )
    if not data:
        raise InvalidImage("empty_file", "The file is empty.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            image_format = image.format or ""
            if image_format == "MPO":  # multi-picture JPEG from phones: the first frame is a JPEG
                image_format = "JPEG"
            if image_format not in ACCEPTED_FORMATS:
                raise InvalidImage(
                    "unsupported_format",
                    f"{image_format or 'This'} format is not accepted; send JPEG, PNG, TIFF or HEIC.",
                    format=image_format,
                )
            width, height = image.size
            if width * height > max_pixels:
                raise InvalidImage(
                    "decompression_bomb",
                    f"The image has {width * height} pixels; the limit is {max_pixels}.",
                    max_pixels=max_pixels,
                )
            if image.mode not in ACCEPTED_MODES:
                raise InvalidImage("unsupported_color_mode", f"Colour mode {image.mode} is not accepted.")
            image.load()  # a truncated file fails here, not later on a printer
            icc = image.info.get("icc_profile") or b""
            exif = image.getexif()
            orientation = int(exif.get(EXIF_ORIENTATION, 1) or 1)
            has_gps = EXIF_GPS_IFD in exif
            mode = image.mode
    except InvalidImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise InvalidImage("decompression_bomb", "The image declares too many pixels.") from error
    except UnidentifiedImageError as error:
        raise InvalidImage("not_an_image", "The file is not an image we can read.") from error
    except (OSError, SyntaxError, ValueError, struct.error, EOFError) as error:
        raise InvalidImage("corrupt_image", "The image is truncated or corrupt.") from error

    stored = data
    gps_stripped = False
    if has_gps and image_format == "JPEG":
        stored = strip_jpeg_gps(data)
        gps_stripped = stored != data
    return ImageFacts(
        data=stored,
        sha256=hashlib.sha256(data).hexdigest(),
        size_bytes=len(data),
        width_px=width,
        height_px=height,
        image_format=image_format,
        color_mode=mode,
        has_icc_profile=bool(icc),
        icc_description=_icc_description(icc),
        exif_orientation=orientation if 1 <= orientation <= 8 else 1,
        gps_stripped=gps_stripped,
    )


def _icc_description(icc: bytes) -> str:
    if not icc:
        return ""
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        return (ImageCms.getProfileDescription(profile) or "").strip()[:200]
    except (OSError, ImageCms.PyCMSError):
        return "unreadable profile"


def strip_jpeg_gps(data: bytes) -> bytes:
    """Remove the GPS IFD from a JPEG's EXIF segment without re-encoding the pixels."""
    with Image.open(io.BytesIO(data)) as image:
        exif = image.getexif()
        if EXIF_GPS_IFD not in exif:
            return data
        del exif[EXIF_GPS_IFD]
        new_payload = b"Exif\x00\x00" + exif.tobytes()
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
