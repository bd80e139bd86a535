"""The sequential form of a progressive JPEG or an interlaced PNG, made at intake (jpegtran, libvips), and
the most scans a progressive JPEG may have.

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

import logging
import shutil
import subprocess

from PIL import Image

from lab.orders.errors import OrderError
from lab.orders.image_formats import InvalidImage

# Named as before this module was split out of lab/orders/imaging.py: intake's log lines keep their logger.
logger = logging.getLogger("lab.orders.imaging")

JPEGTRAN = "jpegtran"
# Well inside gunicorn's `timeout` (60 s, gunicorn.conf.py), past which the web worker is killed (502):
# a photo jpegtran gives up on is still decoded whole after it (decode_every_pixel), which costs about as
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


def non_sequential_layout(image: Image.Image, image_format: str) -> str:
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
        # Never stored as sent: libvips (intake's decode, the raster workers) would decode every scan.
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
