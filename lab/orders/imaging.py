"""Intake validation of customer photos: decode for real, measure, strip location data, and store a photo
every raster worker can decode within its memory budget.

A photo is accepted only when Pillow decodes every pixel; the checks run before anything is stored.
Their parts: what is accepted (image_formats), where the image ends (image_trailers), the photo as the raster
workers read it (image_decoding), its location data removed (image_location), its sequential form
(image_sequential).
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

from django.conf import settings
from PIL import Image, UnidentifiedImageError

from lab.lib.errors import CommonError
from lab.orders.errors import OrderError
from lab.orders.image_decoding import (
    decode_every_pixel,
    exif_orientation_and_gps,
    header_as_workers_read_it,
    icc_as_workers_read_it,
    icc_description,
)
from lab.orders.image_formats import (
    ACCEPTED_FORMATS,
    ACCEPTED_MODES,
    CORRUPT_ERRORS,
    VIPS_FORMAT,
    ImageTooLarge,
    InvalidImage,
    check_heic_coded_pixels,
    check_one_frame,
    check_workers_take_it,
    effective_max_pixels,
    pillow_bomb_warning_ignored,
)
from lab.orders.image_location import without_location
from lab.orders.image_sequential import non_sequential_layout, sequential_bytes
from lab.orders.image_trailers import image_end


@dataclass(frozen=True)
class ImageFacts:
    # What is stored and served back: the image alone (bytes after a JPEG's EOI, a PNG's IEND, a TIFF's last
    # referenced byte or a HEIC's last box dropped), with no GPS left in its EXIF or XMP. `sha256` and
    # `size_bytes` describe exactly these bytes; the client's own checksums are
    # checked against the upload as sent, before intake (check_client_checksums).
    data: bytes
    sha256: str
    size_bytes: int
    width_px: int
    height_px: int
    image_format: str
    color_mode: str
    has_icc_profile: bool
    icc_description: str
    exif_orientation: int
    gps_stripped: bool
    # "progressive" or "interlaced" when the stored photo is the sequential form of the upload, else "".
    made_sequential_from: str = ""


def check_client_checksums(*, data: bytes, md5: str | None, sha256: str | None) -> None:
    if md5 and hashlib.md5(data, usedforsecurity=False).hexdigest() != md5.lower():
        raise InvalidImage(OrderError.CHECKSUM_MISMATCH, "The uploaded bytes do not match the md5 you sent.")
    if sha256 and hashlib.sha256(data).hexdigest() != sha256.lower():
        raise InvalidImage(
            OrderError.CHECKSUM_MISMATCH, "The uploaded bytes do not match the sha256 you sent."
        )


def inspect_image(*, data: bytes, max_bytes: int, max_pixels: int) -> ImageFacts:
    """Decode the whole image or refuse it with a specific code; never trusts names or Content-Type."""
    if len(data) > max_bytes:
        raise ImageTooLarge(
            CommonError.FILE_TOO_LARGE, f"The file is larger than {max_bytes} bytes.", max_bytes=max_bytes
        )
    if not data:
        raise InvalidImage(OrderError.EMPTY_FILE, "The file is empty.")
    # Only the image is kept: a polyglot's tail (a ZIP after the JPEG) must not be stored and served back.
    data = data[: image_end(data)]
    limit = effective_max_pixels(max_pixels)
    try:
        # Closed before anything else is done with the photo: each later step opens what it reads itself.
        with pillow_bomb_warning_ignored(), Image.open(io.BytesIO(data)) as image:
            image_format = image.format or ""
            if image_format == "MPO":  # multi-picture JPEG from phones: the first frame is a JPEG
                image_format = "JPEG"
            if image_format not in ACCEPTED_FORMATS:
                raise InvalidImage(
                    OrderError.UNSUPPORTED_FORMAT,
                    f"{image_format or 'This'} format is not accepted; send JPEG, PNG, TIFF or HEIC.",
                    format=image_format,
                )
            check_workers_take_it(data, image_format)
            check_one_frame(image, image_format)
            width, height = image.size
            if width * height > limit:
                raise InvalidImage(
                    OrderError.DECOMPRESSION_BOMB,
                    f"The image has {width * height} pixels; the limit is {limit}.",
                    max_pixels=limit,
                )
            if image_format == "HEIF":
                check_heic_coded_pixels(data, limit)
            if image.mode not in ACCEPTED_MODES:
                raise InvalidImage(
                    OrderError.UNSUPPORTED_COLOR_MODE, f"Colour mode {image.mode} is not accepted."
                )
            icc = icc_as_workers_read_it(image, data, image_format)
            if len(icc) > settings.ASSET_MAX_ICC_PROFILE_BYTES:
                # Each raster worker and web process keeps the transforms of recent photos' profiles.
                raise InvalidImage(
                    OrderError.ICC_PROFILE_TOO_LARGE,
                    f"The embedded ICC profile is larger than {settings.ASSET_MAX_ICC_PROFILE_BYTES} bytes.",
                    max_bytes=settings.ASSET_MAX_ICC_PROFILE_BYTES,
                )
            orientation, has_gps = exif_orientation_and_gps(image, image_format)
            mode = image.mode
            layout = non_sequential_layout(image, image_format)
    except InvalidImage:
        raise
    except Image.DecompressionBombError as error:
        # Pillow's own refusal on open, above twice its MAX_IMAGE_PIXELS (179 MP): past any limit of ours.
        raise InvalidImage(
            OrderError.DECOMPRESSION_BOMB,
            f"The image declares more pixels than the limit, {limit}.",
            max_pixels=limit,
        ) from error
    except UnidentifiedImageError as error:
        raise InvalidImage(OrderError.NOT_AN_IMAGE, "The file is not an image we can read.") from error
    except CORRUPT_ERRORS as error:
        raise InvalidImage(OrderError.CORRUPT_IMAGE, "The image is truncated or corrupt.") from error

    stored = sequential_bytes(data, layout=layout) if layout else data
    if stored is data:
        layout = ""
    located = stored
    stored = without_location(located, image_format, has_exif_gps=has_gps)
    gps_stripped = stored != located
    decode_every_pixel(stored, image_format)  # a truncated file fails here, not later on a printer
    if image_format in VIPS_FORMAT:
        width, height, orientation = header_as_workers_read_it(stored, image_format)
    return ImageFacts(
        data=stored,
        sha256=hashlib.sha256(stored).hexdigest(),
        size_bytes=len(stored),
        width_px=width,
        height_px=height,
        image_format=image_format,
        color_mode=mode,
        has_icc_profile=bool(icc),
        icc_description=icc_description(icc),
        exif_orientation=orientation if 1 <= orientation <= 8 else 1,
        gps_stripped=gps_stripped,
        made_sequential_from=layout,
    )
