"""A photo read as the raster workers will read it: its stored size and orientation, its ICC profile, and
every pixel decoded once, holding a few rows, before it is accepted.
"""

from __future__ import annotations

import io
import struct

import pillow_heif
from PIL import Image, ImageCms

from lab.orders.errors import OrderError
from lab.orders.image_formats import VIPS_FORMAT, InvalidImage
from lab.orders.image_location import EXIF_GPS_IFD

EXIF_ORIENTATION = 0x0112


def exif_orientation_and_gps(image: Image.Image, image_format: str) -> tuple[int, bool]:
    """The EXIF orientation and whether there is a GPS IFD, as Pillow reads them: for a JPEG (whose GPS IFD
    Pillow rewrites away, strip_jpeg_gps) and a HEIC (whose orientation libvips does not read). A PNG's or
    TIFF's orientation is the raster workers' own reading (header_as_workers_read_it) and its GPS is found
    in its bytes (container_gps): Pillow's getexif() of a PNG with no eXIf chunk before its pixels decodes the
    whole image (Pillow 13), and a 713 KB PNG of 13,300 x 13,300 took 1.4 GiB of a web process."""
    if image_format not in ("JPEG", "HEIF"):
        return 1, False
    exif = image.getexif()
    return int(exif.get(EXIF_ORIENTATION, 1) or 1), EXIF_GPS_IFD in exif


def icc_as_workers_read_it(image: Image.Image, data: bytes, image_format: str) -> bytes:
    """The ICC profile the raster workers convert the print with (lab.production.imaging.source.open_source):
    libvips' for a JPEG, PNG or TIFF, read from the header (no pixel decoded), pillow-heif's for a HEIC.
    Pillow's own reading was judged: it drops a JPEG's profile when its APP2 chunks' count byte disagrees,
    where libvips joins every ICC_PROFILE chunk, so a profile of any size passed the limit unseen and the
    photo was stored with has_icc_profile False, then printed through that profile."""
    if image_format not in VIPS_FORMAT:
        profile = image.info.get("icc_profile")
        return profile if isinstance(profile, bytes) else b""
    import pyvips

    from lab.lib.decoders import vips_load

    try:
        header = vips_load(data, VIPS_FORMAT[image_format])
        if header.get_typeof("icc-profile-data") == 0:
            return b""
        profile = header.get("icc-profile-data")
    except pyvips.Error as error:
        raise InvalidImage(OrderError.CORRUPT_IMAGE, "The image is truncated or corrupt.") from error
    return bytes(profile) if isinstance(profile, bytes) else b""


def header_as_workers_read_it(data: bytes, image_format: str) -> tuple[int, int, int]:
    """The stored size (not yet turned) and the orientation libvips reads from the stored photo: what the
    raster workers print from, so what quotes and proofs must be made with.
    Pillow finds an orientation where libvips does not (a PNG's "Raw profile type exif" text chunk, an
    Orientation stored as text, a doubled "Exif" header), and for a TIFF it applies the tag itself, even
    one libtiff ignores (Orientation 6 with a count of 2), and reports the turned size: the quote then said
    portrait and the print came out landscape, and a quoted crop failed the paid job
    (`crop_aspect_mismatch`). The header only; no pixel is decoded."""
    import pyvips

    from lab.lib.decoders import vips_load, vips_orientation

    try:
        header = vips_load(data, VIPS_FORMAT[image_format])
        return header.width, header.height, vips_orientation(header)
    except pyvips.Error as error:
        raise InvalidImage(OrderError.CORRUPT_IMAGE, "The image is truncated or corrupt.") from error


def decode_every_pixel(data: bytes, image_format: str) -> None:
    """Decode every pixel of the photo as it will be stored, once, as a raster worker will, holding a few rows
    and not the photo: libvips' sequential loaders with `fail_on="error"` (the workers' own), and for a HEIC
    grid libheif one row of tiles at a time (`lab.lib.heif_tiles`). Pillow decoded whole photos here: an
    89 MP JPEG, PNG or TIFF took ~400 MiB of a web process, an 89 MP HEIC grid 660 MiB (bench/intake).
    What is not a plain grid (one coded picture, alpha, more than 8 bits) is decoded whole by libheif."""
    # Imported here, as in sequential_bytes: the processes that only import this module load no libvips.
    import pyvips

    from lab.lib import heif_tiles
    from lab.lib.decoders import vips_load

    try:
        if image_format == "HEIF":
            pixels = heif_tiles.streamed(data)
            if pixels is None:
                # libheif's own decoded buffer, which Pillow's plugin would copy once more (~70 MB at 24 MP)
                heif = pillow_heif.open_heif(data, convert_hdr_to_8bit=True)
                heif.data  # noqa: B018 - the whole decode, for its errors
                return
        else:
            pixels = vips_load(data, VIPS_FORMAT[image_format])
        pixels.avg()
    except (pyvips.Error, OSError, SyntaxError, ValueError, struct.error, EOFError) as error:
        raise InvalidImage(OrderError.CORRUPT_IMAGE, "The image is truncated or corrupt.") from error


def icc_description(icc: bytes) -> str:
    if not icc:
        return ""
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        return (ImageCms.getProfileDescription(profile) or "").strip()[:200]
    except (OSError, ImageCms.PyCMSError):
        return "unreadable profile"
