"""Only the image is kept: where a JPEG, PNG, TIFF or HEIC ends (a tail after it is cut off), and the most
structure items (JPEG segments, PNG chunks, TIFF offsets) a photo's walk may meet before it is refused.
"""

from __future__ import annotations

from typing import Final

from lab.orders import exif_gps
from lab.orders.errors import OrderError
from lab.orders.image_formats import InvalidImage

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
    byte (exif_gps.tiff_end), a HEIC's last top-level box (heic_end); other bytes whole. TIFF and
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
        return heic_end(data)
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


def heic_end(data: bytes) -> int:
    """Offset just past the last whole top-level ISO-BMFF box: boxes are walked by size and type from the
    start, and the first that is not one (a ZIP's "PK\\3\\4", bytes running past the end) ends the image."""
    position, size = 0, len(data)
    while position + 8 <= size:
        box_size = int.from_bytes(data[position : position + 4], "big")
        kind = data[position + 4 : position + 8]
        header = 8
        if box_size == 1:
            if position + 16 > size:
                break
            box_size, header = int.from_bytes(data[position + 8 : position + 16], "big"), 16
        elif box_size == 0:  # to the end of the file
            return size
        if box_size < header or position + box_size > size or not all(0x20 <= c < 0x7F for c in kind):
            break
        position += box_size
    return position if position > 0 else size


def _too_many_items(message: str, limit: int) -> InvalidImage:
    return InvalidImage(
        OrderError.TOO_MANY_METADATA_ITEMS,
        f"{message} Save the photo again without its extra metadata.",
        max_items=limit,
    )
