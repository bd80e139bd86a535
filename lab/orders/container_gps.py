"""Location data out of each container's bytes, in place: a JPEG's XMP segments, a PNG's eXIf and text
chunks, a TIFF, a HEIC's Exif and XMP items; no pixel is re-encoded.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Final

from lab.orders.exif_gps import EXIF_HEADER, GpsNotRemovable, has_tiff_gps, remove_tiff_gps
from lab.orders.xmp_gps import blank_xmp_gps

XMP_JPEG_HEADER: Final = b"http://ns.adobe.com/xap/1.0/\x00"
XMP_EXTENSION_HEADER: Final = b"http://ns.adobe.com/xmp/extension/\x00"
PNG_XMP_KEYWORD: Final = b"XML:com.adobe.xmp"
PNG_RAW_EXIF_KEYWORDS: Final = (b"Raw profile type exif", b"Raw profile type APP1")


class _MalformedText(ValueError):
    """A PNG text chunk whose parts are not separated as its type says."""


def strip_jpeg_xmp_gps(data: bytes) -> bytes:
    """Blank GPS properties in a JPEG's XMP segments (APP1), before its first scan, at the same length. An
    extended XMP (split over several segments) that mentions GPS is blanked whole."""
    buffer = bytearray(data)
    extension_data: list[slice] = []
    position = 2
    while position + 4 <= len(buffer) and buffer[position] == 0xFF:
        marker = buffer[position + 1]
        length = int.from_bytes(buffer[position + 2 : position + 4], "big")
        payload = slice(position + 4, min(position + 2 + length, len(buffer)))
        if marker == 0xE1 and buffer[payload].startswith(XMP_JPEG_HEADER):
            packet = slice(payload.start + len(XMP_JPEG_HEADER), payload.stop)
            buffer[packet] = blank_xmp_gps(bytes(buffer[packet]))
        elif marker == 0xE1 and buffer[payload].startswith(XMP_EXTENSION_HEADER):
            # GUID (32), full length (4), offset (4), then a piece of the packet
            extension_data.append(slice(payload.start + len(XMP_EXTENSION_HEADER) + 40, payload.stop))
        if marker == 0xDA or length < 2:
            break
        position += 2 + length
    if b"gps" in b"".join(bytes(buffer[piece]) for piece in extension_data).lower():
        for piece in extension_data:
            buffer[piece] = b" " * (piece.stop - piece.start)
    return bytes(buffer)


def strip_png_gps(data: bytes) -> bytes:
    """The PNG with GPS removed from its eXIf chunk (in place, CRC recomputed) and its XMP text chunks; a
    legacy "Raw profile type exif" text chunk with GPS (Pillow reads it, libvips does not) is dropped.
    Unchanged chunks are copied in runs, not one by one (a piece per IDAT chunk held ~100 bytes each)."""
    pieces: list[bytes] = []
    copied_to = 0  # data[copied_to:position] is unchanged and not yet in `pieces`
    position = 8
    while position + 12 <= len(data):
        length = int.from_bytes(data[position : position + 4], "big")
        kind = data[position + 4 : position + 8]
        body = data[position + 8 : position + 8 + length]
        chunk_end = position + 12 + length
        if kind == b"eXIf":
            buffer = bytearray(body)
            start = len(EXIF_HEADER) if body.startswith(EXIF_HEADER) else 0
            remove_tiff_gps(buffer, start)
            body = bytes(buffer)
        elif kind in (b"tEXt", b"zTXt", b"iTXt"):
            keyword = body.split(b"\x00", 1)[0]
            if keyword == PNG_XMP_KEYWORD:
                try:
                    body = _png_text_edited(kind, body, blank_xmp_gps)
                except _MalformedText:
                    # Dropped: a lenient reader may still take a packet out of it, and it holds nothing
                    # of the photo. Unpacking it was a ValueError: a 500, and a URL photo's task crashed.
                    pieces.append(data[copied_to:position])
                    position = copied_to = chunk_end
                    continue
            elif keyword in PNG_RAW_EXIF_KEYWORDS and has_tiff_gps(_png_raw_profile(kind, body)):
                pieces.append(data[copied_to:position])
                position = copied_to = chunk_end
                continue
        if body != data[position + 8 : position + 8 + length]:
            pieces += [data[copied_to:position], _png_chunk(kind, body)]
            copied_to = chunk_end
        position = chunk_end
        if kind == b"IEND":
            break
    if not pieces:
        return data
    pieces.append(data[copied_to:])
    return b"".join(pieces)


def png_has_gps(data: bytes) -> bool:
    """Whether the PNG's chunks still locate it, as Pillow or libvips would read them, found by walking
    the chunks and never by Pillow (whose getexif() decodes the whole image of a PNG that has no eXIf
    chunk before its pixels): an eXIf chunk with a GPS IFD, an XMP text chunk naming a GPS property, or a
    legacy "Raw profile type exif" text chunk with a GPS IFD."""
    position = 8
    while position + 12 <= len(data):
        length = int.from_bytes(data[position : position + 4], "big")
        kind = data[position + 4 : position + 8]
        if kind in (b"eXIf", b"tEXt", b"zTXt", b"iTXt"):
            body = data[position + 8 : position + 8 + length]
            if kind == b"eXIf" and has_tiff_gps(body):
                return True
            keyword = body.split(b"\x00", 1)[0]
            if keyword == PNG_XMP_KEYWORD and b"gps" in _png_text(kind, body).lower():
                return True
            if keyword in PNG_RAW_EXIF_KEYWORDS and has_tiff_gps(_png_raw_profile(kind, body)):
                return True
        if kind == b"IEND":
            break
        position += 12 + length
    return False


def _png_text(kind: bytes, body: bytes) -> bytes:
    """A text chunk's text, decompressed; what cannot be, as it is (a reader may still find GPS in it)."""
    try:
        _, text, compressed = _png_text_parts(kind, body)
        return zlib.decompress(text) if compressed else text
    except (_MalformedText, zlib.error):
        return body


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")


def _png_text_parts(kind: bytes, body: bytes) -> tuple[bytes, bytes, bool]:
    """(header, text, compressed) of a tEXt, zTXt or iTXt chunk's body; _MalformedText when a separator
    its type requires is missing."""
    keyword, separator, rest = body.partition(b"\x00")
    if not separator:
        raise _MalformedText("no separator after the keyword")
    if kind == b"tEXt":
        return keyword + b"\x00", rest, False
    if kind == b"zTXt":
        return keyword + b"\x00" + rest[:1], rest[1:], True
    compressed = rest[:1] == b"\x01"
    language, language_end, rest_after_language = rest[2:].partition(b"\x00")
    translated, translated_end, text = rest_after_language.partition(b"\x00")
    if len(rest) < 2 or not (language_end and translated_end):
        raise _MalformedText("an iTXt chunk without its language and translated keyword")
    header = keyword + b"\x00" + rest[:2] + language + b"\x00" + translated + b"\x00"
    return header, text, compressed


def _png_text_edited(kind: bytes, body: bytes, edit: Callable[[bytes], bytes]) -> bytes:
    header, text, compressed = _png_text_parts(kind, body)
    try:
        plain = zlib.decompress(text) if compressed else text
    except zlib.error as error:
        raise GpsNotRemovable("a compressed XMP chunk cannot be read") from error
    edited = edit(plain)
    if edited == plain:
        return body
    return header + (zlib.compress(edited) if compressed else edited)


def _png_raw_profile(kind: bytes, body: bytes) -> bytes:
    """The EXIF of ImageMagick's "Raw profile type exif" text: a name line, a length line, then hex."""
    try:
        _, text, compressed = _png_text_parts(kind, body)
        plain = zlib.decompress(text) if compressed else text
        return bytes.fromhex("".join(plain.decode("latin-1").split("\n")[3:]))
    except (ValueError, zlib.error):
        return b""


def strip_tiff_gps(data: bytes) -> bytes:
    buffer = bytearray(data)
    remove_tiff_gps(buffer)
    return bytes(buffer)


def strip_heic_gps(data: bytes, *, exif: bytes | None, xmp: bytes | None) -> bytes:
    """Remove GPS from a HEIC's Exif item (`exif`, as libheif reads it) and blank it in its XMP item, in
    place: each is found in the file by its bytes; one that is not there whole (split over extents), or whose
    places overlap or are more than HEIC_ITEM_MAX_PLACES, cannot be edited, and GpsNotRemovable says so."""
    buffer = bytearray(data)
    if exif and has_tiff_gps(exif):
        found = _occurrences(data, exif)
        for position in found:
            start = position + (len(EXIF_HEADER) if exif.startswith(EXIF_HEADER) else 0)
            remove_tiff_gps(buffer, start, position + len(exif))
    if xmp and b"gps" in xmp.lower():
        found = _occurrences(data, xmp)
        blanked = blank_xmp_gps(xmp)  # once: the same bytes at each place
        for position in found:
            buffer[position : position + len(xmp)] = blanked
    return bytes(buffer)


# The places one metadata item's bytes are edited at. A file holds an item once, seldom a few times; a
# crafted one whose item repeats a short unit, followed by more of it, held it at every unit's offset (a
# 1 MB HEIC at a thousand places, each blanked anew: 19 s).
HEIC_ITEM_MAX_PLACES = 16


def _occurrences(data: bytes, blob: bytes) -> list[int]:
    """Where `blob` is in `data`: places that do not overlap (an edit at one would change another's bytes)
    and at most HEIC_ITEM_MAX_PLACES of them; GpsNotRemovable otherwise, or when it is nowhere."""
    found: list[int] = []
    position = data.find(blob)
    while position >= 0:
        if found and position < found[-1] + len(blob):
            raise GpsNotRemovable("the metadata item's bytes are found at overlapping places")
        if len(found) == HEIC_ITEM_MAX_PLACES:
            raise GpsNotRemovable("the metadata item's bytes are found at too many places")
        found.append(position)
        position = data.find(blob, position + 1)
    if not found:
        raise GpsNotRemovable("the metadata item is not stored in one piece")
    return found
