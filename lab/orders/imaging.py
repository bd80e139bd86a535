"""Intake validation of customer photos: decode for real, measure, strip location data, and store a photo
every raster worker can decode within its memory budget.

A photo is accepted only when Pillow decodes every pixel; the checks run before anything is stored.

Progressive JPEGs and interlaced (Adam7) PNGs are stored in their sequential form, pixel for pixel the same:
their decoders must hold all of a progressive file's DCT coefficients, or all of an interlaced file's pixels,
before the first row comes out, so a raster worker could not stream them. Measured (bench/raster, 8x10 from a
fresh worker): a progressive 4:4:4 JPEG of 24 MP peaked at 256 MiB and one of 89 MP at 654 MiB, an interlaced
PNG of 48 MP at 259 MiB, against the workers' 200 MiB budget; their sequential forms stream. The web process
decodes the whole photo here anyway, so the conversion adds no new peak to it.
- JPEG: `jpegtran -copy all` (libjpeg-turbo, Debian `libjpeg-turbo-progs`) rewrites the same DCT
  coefficients as a sequential file: lossless, every marker kept (EXIF, ICC).
- PNG: libvips writes it again non-interlaced at any bit depth, with its ICC profile and EXIF.
"""

from __future__ import annotations

import hashlib
import io
import logging
import shutil
import struct
import subprocess
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import pillow_heif
from django.conf import settings
from PIL import Image, ImageCms, UnidentifiedImageError

from lab.lib.errors import CommonError, DomainError

if TYPE_CHECKING:
    from lab.lib.decoders import SourceFormat, VipsFormat
from lab.orders import exif_gps
from lab.orders.errors import OrderError

pillow_heif.register_heif_opener()
logger = logging.getLogger(__name__)

# Largest photo the raster workers decode (lab.production.imaging.source): just under Pillow's own
# decompression-bomb refusal (2 x MAX_IMAGE_PIXELS, 179 MP), which opening a HEIC goes through. Intake never
# accepts more (effective_max_pixels caps ASSET_MAX_PIXELS at this), so every accepted photo can be printed.
MAX_SOURCE_PIXELS: Final = 178_000_000
ACCEPTED_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "TIFF": "image/tiff", "HEIF": "image/heic"}
_VIPS_FORMAT: dict[str, VipsFormat] = {"JPEG": "jpeg", "PNG": "png", "TIFF": "tiff"}
_SNIFFED_AS: dict[str, SourceFormat] = {**_VIPS_FORMAT, "HEIF": "heic"}
ACCEPTED_MODES = {"RGB", "RGBA", "L", "LA", "P", "CMYK", "I;16", "I;16B", "I;16L", "I", "1"}
EXIF_ORIENTATION = 0x0112
EXIF_GPS_IFD = 0x8825
JPEGTRAN = "jpegtran"
# Well inside gunicorn's `timeout` (60 s, gunicorn.conf.py), past which the web worker is killed (502):
# a photo jpegtran gives up on is still decoded whole after it (_decode_every_pixel), which costs about as
# much again. Was 120 s. Measured on 2 CPUs: a progressive 4:4:4 photo of 176 MP took jpegtran 10 s at
# 52 MB, 24 s at 161 MB (over ASSET_MAX_BYTES); 100 near-empty scans over one of 176 MP, 9 s.
JPEGTRAN_TIMEOUT_SECONDS = 20
# Most scans a progressive JPEG may have (`jpegtran -maxscans`): every scan of a progressive file is decoded
# over the whole image, however few bytes it has (an "EOB run" covers up to 32,767 blocks in two bytes), so
# the cost grows with the scans and not with the file. Real encoders write few: libjpeg's own progression
# (Pillow, libvips, cjpeg) 10 scans for colour, 6 grey, 18 CMYK; mozjpeg's optimized ones 5, 3 and 17; and
# libjpeg's scan-script reader (`cjpeg -scans`, `jpegtran -scans`) takes at most 100. A 4000 x 4000 JPEG of
# 10,000 twelve-byte scans (450 KB) took jpegtran 21 s and the whole check 25 s; ~40,000 passed gunicorn's.
JPEGTRAN_MAX_SCANS = 100
# What jpegtran prints, exiting 1, on the scan past the limit: "Scan number 101 exceeds maximum scans (100)".
_JPEGTRAN_TOO_MANY_SCANS = b"exceeds maximum scans"
# What Pillow and pillow-heif raise on a file they cannot read through, each a 500 until mapped:
# OverflowError: an EXIF orientation stored as an infinite float (int() of it).
# RuntimeError: Pillow's AVIF opener on an "avif" ftyp box around anything else.
# TypeError: Pillow counting the frames of a TIFF whose next IFD (a thumbnail's) has no ImageWidth or Length.
_CORRUPT_ERRORS: Final = (
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
        with _pillow_bomb_warning_ignored(), Image.open(io.BytesIO(data)) as image:
            image_format = image.format or ""
            if image_format == "MPO":  # multi-picture JPEG from phones: the first frame is a JPEG
                image_format = "JPEG"
            if image_format not in ACCEPTED_FORMATS:
                raise InvalidImage(
                    OrderError.UNSUPPORTED_FORMAT,
                    f"{image_format or 'This'} format is not accepted; send JPEG, PNG, TIFF or HEIC.",
                    format=image_format,
                )
            _check_workers_take_it(data, image_format)
            _check_one_frame(image, image_format)
            width, height = image.size
            if width * height > limit:
                raise InvalidImage(
                    OrderError.DECOMPRESSION_BOMB,
                    f"The image has {width * height} pixels; the limit is {limit}.",
                    max_pixels=limit,
                )
            if image_format == "HEIF":
                _check_heic_coded_pixels(data, limit)
            if image.mode not in ACCEPTED_MODES:
                raise InvalidImage(
                    OrderError.UNSUPPORTED_COLOR_MODE, f"Colour mode {image.mode} is not accepted."
                )
            icc = _icc_as_workers_read_it(image, data, image_format)
            if len(icc) > settings.ASSET_MAX_ICC_PROFILE_BYTES:
                # Each raster worker and web process keeps the transforms of recent photos' profiles.
                raise InvalidImage(
                    OrderError.ICC_PROFILE_TOO_LARGE,
                    f"The embedded ICC profile is larger than {settings.ASSET_MAX_ICC_PROFILE_BYTES} bytes.",
                    max_bytes=settings.ASSET_MAX_ICC_PROFILE_BYTES,
                )
            orientation, has_gps = _exif_orientation_and_gps(image, image_format)
            mode = image.mode
            layout = _non_sequential_layout(image, image_format)
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
    except _CORRUPT_ERRORS as error:
        raise InvalidImage(OrderError.CORRUPT_IMAGE, "The image is truncated or corrupt.") from error

    stored = sequential_bytes(data, layout=layout) if layout else data
    if stored is data:
        layout = ""
    located = stored
    stored = _without_location(located, image_format, has_exif_gps=has_gps)
    gps_stripped = stored != located
    _decode_every_pixel(stored, image_format)  # a truncated file fails here, not later on a printer
    if image_format in _VIPS_FORMAT:
        width, height, orientation = _header_as_workers_read_it(stored, image_format)
    return ImageFacts(
        data=stored,
        sha256=hashlib.sha256(stored).hexdigest(),
        size_bytes=len(stored),
        width_px=width,
        height_px=height,
        image_format=image_format,
        color_mode=mode,
        has_icc_profile=bool(icc),
        icc_description=_icc_description(icc),
        exif_orientation=orientation if 1 <= orientation <= 8 else 1,
        gps_stripped=gps_stripped,
        made_sequential_from=layout,
    )


def effective_max_pixels(max_pixels: int) -> int:
    """The pixel limit intake applies: `max_pixels` (ASSET_MAX_PIXELS), but never more than the raster
    workers decode (`MAX_SOURCE_PIXELS`, 178 MP), so that every photo accepted can be printed.

    Pillow's DecompressionBombWarning (above its MAX_IMAGE_PIXELS, 89.5 MP) was made an error here: that,
    not ASSET_MAX_PIXELS (200 MP by default), was the limit, and the 422 did not say what it was. The warning
    is ignored now and this limit judged instead; Pillow's own DecompressionBombError (above 179 MP, twice
    its MAX_IMAGE_PIXELS, left as it is: a module global) stays a backstop past it."""
    return min(max_pixels, MAX_SOURCE_PIXELS)


@contextmanager
def _pillow_bomb_warning_ignored() -> Iterator[None]:
    """Pillow warns on opening an image above its MAX_IMAGE_PIXELS (89.5 MP); our own limit is judged instead
    (`effective_max_pixels`), as the raster workers do (lab.production.imaging.source.decoding)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield


def _exif_orientation_and_gps(image: Image.Image, image_format: str) -> tuple[int, bool]:
    """The EXIF orientation and whether there is a GPS IFD, as Pillow reads them: for a JPEG (whose GPS IFD
    Pillow rewrites away, strip_jpeg_gps) and a HEIC (whose orientation libvips does not read). A PNG's or
    TIFF's orientation is the raster workers' own reading (_header_as_workers_read_it) and its GPS is found
    in its bytes (exif_gps): Pillow's getexif() of a PNG with no eXIf chunk before its pixels decodes the
    whole image (Pillow 13), and a 713 KB PNG of 13,300 x 13,300 took 1.4 GiB of a web process."""
    if image_format not in ("JPEG", "HEIF"):
        return 1, False
    exif = image.getexif()
    return int(exif.get(EXIF_ORIENTATION, 1) or 1), EXIF_GPS_IFD in exif


def _icc_as_workers_read_it(image: Image.Image, data: bytes, image_format: str) -> bytes:
    """The ICC profile the raster workers convert the print with (lab.production.imaging.source.open_source):
    libvips' for a JPEG, PNG or TIFF, read from the header (no pixel decoded), pillow-heif's for a HEIC.
    Pillow's own reading was judged: it drops a JPEG's profile when its APP2 chunks' count byte disagrees,
    where libvips joins every ICC_PROFILE chunk, so a profile of any size passed the limit unseen and the
    photo was stored with has_icc_profile False, then printed through that profile."""
    if image_format not in _VIPS_FORMAT:
        profile = image.info.get("icc_profile")
        return profile if isinstance(profile, bytes) else b""
    import pyvips

    from lab.lib.decoders import vips_load

    try:
        header = vips_load(data, _VIPS_FORMAT[image_format])
        if header.get_typeof("icc-profile-data") == 0:
            return b""
        profile = header.get("icc-profile-data")
    except pyvips.Error as error:
        raise InvalidImage(OrderError.CORRUPT_IMAGE, "The image is truncated or corrupt.") from error
    return bytes(profile) if isinstance(profile, bytes) else b""


def _check_heic_coded_pixels(data: bytes, limit: int) -> None:
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


def _check_workers_take_it(data: bytes, image_format: str) -> None:
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


def _header_as_workers_read_it(data: bytes, image_format: str) -> tuple[int, int, int]:
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
        header = vips_load(data, _VIPS_FORMAT[image_format])
        return header.width, header.height, vips_orientation(header)
    except pyvips.Error as error:
        raise InvalidImage(OrderError.CORRUPT_IMAGE, "The image is truncated or corrupt.") from error


def _decode_every_pixel(data: bytes, image_format: str) -> None:
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
            pixels = vips_load(data, _VIPS_FORMAT[image_format])
        pixels.avg()
    except (pyvips.Error, OSError, SyntaxError, ValueError, struct.error, EOFError) as error:
        raise InvalidImage(OrderError.CORRUPT_IMAGE, "The image is truncated or corrupt.") from error


def _non_sequential_layout(image: Image.Image, image_format: str) -> str:
    """What keeps a photo from decoding row by row: "progressive" (JPEG), "interlaced" (Adam7 PNG), or ""."""
    if image_format == "JPEG" and image.info.get("progressive"):
        return "progressive"
    if image_format == "PNG" and image.info.get("interlace"):
        return "interlaced"
    return ""


def sequential_bytes(data: bytes, *, layout: str) -> bytes:
    """The sequential form of a progressive JPEG or an interlaced PNG (`layout`), with the same pixels.

    A converter that fails on the photo (a warning jpegtran will not pass, a libvips error) or takes too long
    leaves it as sent, logged: the decode of every pixel that follows refuses it if it is corrupt, and
    otherwise it is stored as sent, never refused for the converter's sake. One exception: a progressive
    JPEG of more than JPEGTRAN_MAX_SCANS scans is refused (`decompression_bomb`), as every decoder would
    spend on it what jpegtran refused to.
    """
    if layout == "progressive":
        return _jpeg_sequential(data)
    if layout == "interlaced":
        # Imported here: only a process that converts an interlaced PNG loads libvips (the web's and the
        # workers' main processes import this module through the intake tasks).
        import pyvips

        try:
            # fail_on="error", as the workers' loaders: what libvips finds wrong stops the rewrite (the photo
            # stays as sent), rather than being rewritten into a clean-looking file the decode would pass.
            image = pyvips.Image.new_from_buffer(data, "", fail_on="error")
            return bytes(image.pngsave_buffer(interlace=False, compression=1))
        except pyvips.Error:
            logger.warning("intake: libvips could not rewrite an interlaced PNG; stored as sent")
            return data
    raise ValueError(f"unknown layout {layout!r}")


def _jpeg_sequential(data: bytes) -> bytes:
    program = shutil.which(JPEGTRAN)
    if program is None:
        # A deployment error, which lab.orders' system check reports at start.
        logger.error("intake: %s is not installed; a progressive JPEG is stored as sent", JPEGTRAN)
        return data
    try:
        result = subprocess.run(
            [program, "-copy", "all", "-maxscans", str(JPEGTRAN_MAX_SCANS)],
            input=data,
            capture_output=True,
            timeout=JPEGTRAN_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        logger.warning(
            "intake: %s took over %d s; a progressive JPEG is stored as sent",
            JPEGTRAN,
            JPEGTRAN_TIMEOUT_SECONDS,
        )
        return data
    if result.returncode != 0 and _JPEGTRAN_TOO_MANY_SCANS in result.stderr:
        # Never stored as sent: libvips (the check below, the raster workers) would decode every scan.
        raise InvalidImage(
            OrderError.DECOMPRESSION_BOMB,
            f"The progressive JPEG has more than {JPEGTRAN_MAX_SCANS} scans; save it again as a standard "
            "JPEG.",
            max_scans=JPEGTRAN_MAX_SCANS,
        )
    if result.returncode != 0 or not result.stdout:  # 1 error, 2 warning (its output is not trusted then)
        logger.warning(
            "intake: %s exited %d; a progressive JPEG is stored as sent", JPEGTRAN, result.returncode
        )
        return data
    return result.stdout


def _icc_description(icc: bytes) -> str:
    if not icc:
        return ""
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        return (ImageCms.getProfileDescription(profile) or "").strip()[:200]
    except (OSError, ImageCms.PyCMSError):
        return "unreadable profile"


def _check_one_frame(image: Image.Image, image_format: str) -> None:
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


def _without_location(data: bytes, image_format: str, *, has_exif_gps: bool) -> bytes:
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
    except _CORRUPT_ERRORS as error:
        raise InvalidImage(OrderError.CORRUPT_IMAGE, "The image's metadata is corrupt.") from error
    if located:
        raise InvalidImage(
            OrderError.GPS_NOT_REMOVABLE, "The photo's location data cannot be removed from it."
        )
    return stored


def _location_removed(data: bytes, image_format: str, *, has_exif_gps: bool) -> bytes:
    if image_format == "JPEG":
        stored = _strip_jpeg_exif_gps(data) if has_exif_gps else data
        return exif_gps.strip_jpeg_xmp_gps(stored)
    if image_format == "PNG":
        return exif_gps.strip_png_gps(data)
    if image_format == "TIFF":
        return exif_gps.strip_tiff_gps(data)
    heif = pillow_heif.open_heif(data)
    return exif_gps.strip_heic_gps(data, exif=heif.info.get("exif"), xmp=heif.info.get("xmp"))


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
    that still names a GPS property. A PNG's chunks are walked instead (exif_gps.png_has_gps): Pillow's
    getexif() of a PNG decodes its pixels when no eXIf chunk comes before them."""
    if image_format == "PNG":
        return exif_gps.png_has_gps(data)
    with _pillow_bomb_warning_ignored(), Image.open(io.BytesIO(data)) as image:
        if EXIF_GPS_IFD in image.getexif():
            return True
        for key in ("xmp", "XML:com.adobe.xmp"):
            packet = image.info.get(key) or b""
            if b"gps" in (packet.encode() if isinstance(packet, str) else bytes(packet)).lower():
                return True
    return False


def strip_jpeg_gps(data: bytes) -> bytes:
    """Remove the GPS IFD from a JPEG's EXIF segment without re-encoding the pixels."""
    with _pillow_bomb_warning_ignored(), Image.open(io.BytesIO(data)) as image:
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


# --- Trailers: only the image is kept -----------------------------------------------------------------

JPEG_SOI = b"\xff\xd8"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_JPEG_SOI_CODE = 0xD8
_JPEG_EOI_CODE = 0xD9
_JPEG_SOS_CODE = 0xDA
_JPEG_RST_CODES = range(0xD0, 0xD8)
_JPEG_TEM_CODE = 0x01
# Most JPEG markers outside the scans' data, and PNG chunks other than IDAT, a photo may have. Each one is a
# step of Python in every walk of the file (here, Pillow's open, the GPS strip and check) and Pillow keeps
# every JPEG APPn and comment segment: a 100 MB JPEG of empty comments was accepted after 97 s at a 3.9 GB
# peak, a PNG of 800,000 empty private chunks took 337 MiB. Real files have a few dozen: an ICC profile is at
# most 255 APP2 segments, an extended XMP of 10 MB some 150 APP1 segments. A progressive JPEG's scans (SOS
# segments) are not counted: they are JPEGTRAN_MAX_SCANS' concern.
JPEG_MAX_SEGMENTS: Final = 1_000
PNG_MAX_CHUNKS: Final = 1_000


def image_end(data: bytes) -> int:
    """Offset just past the first image: after a JPEG's EOI or a PNG's IEND chunk, a TIFF's last referenced
    byte (exif_gps.tiff_end), a HEIC's last top-level box (exif_gps.heic_end); other bytes whole. TIFF and
    HEIC were kept whole: a TIFF or HEIC with a ZIP after it was stored and served back with the archive.

    Decision: a tail is cut off, not refused. Phones append legitimate trailers (an MPF second image, a motion
    photo's video) and polyglots append archives; either way the lab keeps and serves back the image only.
    """
    if data.startswith(JPEG_SOI):
        return jpeg_end(data)
    if data.startswith(PNG_SIGNATURE):
        return png_end(data)
    if data[:4] in TIFF_MAGICS:
        try:
            return exif_gps.tiff_end(data)
        except exif_gps.TooManyValues as error:
            limit = exif_gps.TIFF_MAX_ARRAY_VALUES
            raise _too_many_items(
                f"The TIFF lists {error.count} strips, tiles or sub-images in one array; the limit is "
                f"{limit}.",
                limit,
            ) from error
    if data[4:8] == b"ftyp":
        return exif_gps.heic_end(data)
    return len(data)


def jpeg_end(data: bytes) -> int:
    """Walk the marker segments as a decoder does and return the offset just past the first EOI.

    Segment payloads (EXIF with an embedded thumbnail that has its own EOI, comments) are skipped by their
    length, never searched; after each SOS the entropy-coded data runs to the first marker that is neither a
    stuffed 0xFF00 nor an RST, and a progressive file simply has several scans. Bytes where a marker should
    be are skipped up to the next marker, as libjpeg does. Without an EOI the image ends with the data.
    More than JPEG_MAX_SEGMENTS markers before the first scan or between scans are refused.
    """
    size = len(data)
    position = len(JPEG_SOI)
    segments = 0
    while True:
        position = data.find(b"\xff", position)
        if position < 0:
            return size
        while position < size and data[position] == 0xFF:  # a marker may be preceded by fill bytes
            position += 1
        if position >= size:
            return size
        code = data[position]
        position += 1
        if code == _JPEG_EOI_CODE:
            return position
        if code != _JPEG_SOS_CODE:
            segments += 1
            if segments > JPEG_MAX_SEGMENTS:
                raise _too_many_items(
                    f"The JPEG has more than {JPEG_MAX_SEGMENTS} marker segments.", JPEG_MAX_SEGMENTS
                )
        if code == 0x00 or code == _JPEG_TEM_CODE or code in _JPEG_RST_CODES:
            continue  # no length follows these
        if code == _JPEG_SOI_CODE:
            raise InvalidImage(OrderError.CORRUPT_IMAGE, "The JPEG starts a second image inside the first.")
        if position + 2 > size:
            return size
        length = int.from_bytes(data[position : position + 2], "big")
        if length < 2:
            raise InvalidImage(OrderError.CORRUPT_IMAGE, "The JPEG has a segment with an impossible length.")
        position += length
        if position >= size:
            return size
        if code == _JPEG_SOS_CODE:
            position = _jpeg_entropy_coded_end(data, position)


def _jpeg_entropy_coded_end(data: bytes, position: int) -> int:
    """Offset of the marker ending a scan's entropy-coded data (0xFF00 is a stuffed byte, RSTn a restart)."""
    size = len(data)
    while True:
        position = data.find(b"\xff", position)
        if position < 0 or position + 1 >= size:
            return size
        code = data[position + 1]
        if code == 0x00 or code in _JPEG_RST_CODES:
            position += 2
        elif code == 0xFF:
            position += 1  # fill byte: the marker code comes later
        else:
            return position


def png_end(data: bytes) -> int:
    """Offset just past the IEND chunk (length, type, data, CRC); a PNG without one ends with the data.
    More than PNG_MAX_CHUNKS chunks other than IDAT are refused."""
    size = len(data)
    position = len(PNG_SIGNATURE)
    chunks = 0
    while position + 8 <= size:
        length = int.from_bytes(data[position : position + 4], "big")
        chunk_type = data[position + 4 : position + 8]
        position += 12 + length
        if chunk_type == b"IEND":
            return min(position, size)
        if chunk_type != b"IDAT":
            chunks += 1
            if chunks > PNG_MAX_CHUNKS:
                raise _too_many_items(
                    f"The PNG has more than {PNG_MAX_CHUNKS} chunks besides its pixels.", PNG_MAX_CHUNKS
                )
    return size


def _too_many_items(message: str, limit: int) -> InvalidImage:
    return InvalidImage(
        OrderError.TOO_MANY_METADATA_ITEMS,
        f"{message} Save the photo again without its extra metadata.",
        max_items=limit,
    )
