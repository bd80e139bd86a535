"""Location data out of a photo's bytes, in place: the GPS IFD of TIFF-structured EXIF (a TIFF itself, a
PNG's eXIf chunk, a HEIC's Exif item) and GPS properties of XMP packets; no pixel is re-encoded.

Also where a TIFF or a HEIC ends: the last byte its structure references, so that a tail is not stored.
"""

from __future__ import annotations

import bisect
import re
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

EXIF_HEADER: Final = b"Exif\x00\x00"
XMP_JPEG_HEADER: Final = b"http://ns.adobe.com/xap/1.0/\x00"
XMP_EXTENSION_HEADER: Final = b"http://ns.adobe.com/xmp/extension/\x00"
PNG_XMP_KEYWORD: Final = b"XML:com.adobe.xmp"
PNG_RAW_EXIF_KEYWORDS: Final = (b"Raw profile type exif", b"Raw profile type APP1")
GPS_IFD_TAG: Final = 0x8825
XMP_TAG: Final = 700  # TIFF's XMLPacket
_SUB_IFD_TAGS: Final = (330, 0x8769, GPS_IFD_TAG, 0xA005)  # SubIFDs, EXIF, GPS, Interoperability
_OFFSET_LENGTH_TAGS: Final = ((273, 279), (324, 325), (513, 514))  # strips, tiles, old-style JPEG
_TYPE_SIZES: Final = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4}
_TYPE_SIZES_BIG: Final = {**_TYPE_SIZES, 16: 8, 17: 8, 18: 8}
_MOST_IFDS: Final = 256
# Entries and values a walk of a TIFF's structure may read, beyond one per byte of it: a real file reads far
# fewer (an entry is 12 bytes, a value at least 2). Entries that all name one array of offsets re-read it
# each time: 4,000 SubIFDs entries naming 14,000 zero offsets (104 KB) took 17 s and 345 MB.
_WALK_SLACK: Final = 4096
# Most values one array of offsets may hold (strips, tiles, SubIFDs): a 178 MP photo in 64 px tiles of four
# separate planes needs 174,000. Each value read is a Python int and a range, and Pillow and libtiff read the
# array too: a 10 MB TIFF of 5,000,000 one-row strips took 3.1 GB before it was refused.
TIFF_MAX_ARRAY_VALUES: Final = 262_144
# A GPS property of any namespace prefix (exif:GPSLatitude, drone-dji:GpsLatitude), as an attribute or an
# element (self-closed or with content, nested ones included). Elements are found by their opening and
# closing tags separately, each pattern linear: one pattern spanning an element (`<(name)[^>]*>.*?</\1>`)
# ran to the end of the packet from every unclosed opening, and 200 KB of "<a:gps>" took 36 s.
_XMP_GPS_ATTRIBUTE: Final = re.compile(rb"""\s[\w.-]+:gps\w*\s*=\s*("[^"]*"|'[^']*')""", re.IGNORECASE)
_XMP_GPS_OPENING: Final = re.compile(rb"<([\w.-]+:gps\w*)", re.IGNORECASE)
_XMP_GPS_CLOSING: Final = re.compile(rb"</([\w.-]+:gps\w*)\s*>", re.IGNORECASE)


class GpsNotRemovable(Exception):
    """Location data was found where it cannot be removed without rewriting the photo."""


class _Unfollowable(ValueError):
    """The walk of a TIFF structure read more than its bytes justify (the structure is kept whole)."""


class TooManyValues(Exception):
    """An array of offsets in a TIFF structure holds more than TIFF_MAX_ARRAY_VALUES values."""

    def __init__(self, count: int) -> None:
        super().__init__(f"an array of {count} offsets")
        self.count = count


class _MalformedText(ValueError):
    """A PNG text chunk whose parts are not separated as its type says."""


@dataclass(frozen=True)
class _Tiff:
    """A TIFF structure at `start` of a buffer: byte order and classic or BigTIFF layout."""

    start: int
    end: int
    order: str  # "<" or ">"
    big: bool

    @property
    def count_size(self) -> int:
        return 8 if self.big else 2

    @property
    def entry_size(self) -> int:
        return 20 if self.big else 12

    @property
    def offset_size(self) -> int:
        return 8 if self.big else 4

    def unsigned(self, data: bytes | bytearray, position: int, size: int) -> int:
        if position < self.start or position + size > self.end:
            raise ValueError("outside the TIFF structure")
        return int.from_bytes(data[position : position + size], "little" if self.order == "<" else "big")


def _tiff_at(data: bytes | bytearray, start: int = 0, end: int | None = None) -> _Tiff | None:
    end = len(data) if end is None else end
    head = bytes(data[start : start + 4])
    order = {b"II": "<", b"MM": ">"}.get(head[:2])
    if order is None or end - start < 8:
        return None
    magic = int.from_bytes(head[2:4], "little" if order == "<" else "big")
    if magic not in (42, 43):
        return None
    return _Tiff(start=start, end=end, order=order, big=magic == 43)


def _first_ifd(tiff: _Tiff, data: bytes | bytearray) -> int:
    return tiff.unsigned(data, tiff.start + (8 if tiff.big else 4), tiff.offset_size)


@dataclass(frozen=True)
class _Entry:
    position: int  # of the entry itself
    tag: int
    type: int
    count: int
    value_position: int  # where its value is: inline in the entry, or out of line
    value_size: int

    def inline(self, tiff: _Tiff) -> bool:
        return self.value_size <= tiff.offset_size


def _entries(tiff: _Tiff, data: bytes | bytearray, ifd: int, budget: _Budget | None = None) -> list[_Entry]:
    position = tiff.start + ifd
    count = tiff.unsigned(data, position, tiff.count_size)
    if budget is not None:
        budget.spend(count)
    entries = []
    sizes = _TYPE_SIZES_BIG if tiff.big else _TYPE_SIZES
    for index in range(count):
        at = position + tiff.count_size + index * tiff.entry_size
        tag = tiff.unsigned(data, at, 2)
        value_type = tiff.unsigned(data, at + 2, 2)
        value_count = tiff.unsigned(data, at + 4, tiff.offset_size)
        value_field = at + 4 + tiff.offset_size
        value_size = value_count * sizes.get(value_type, 1)
        value_position = (
            value_field
            if value_size <= tiff.offset_size
            else tiff.start + tiff.unsigned(data, value_field, tiff.offset_size)
        )
        entries.append(_Entry(at, tag, value_type, value_count, value_position, value_size))
    return entries


def _values(tiff: _Tiff, data: bytes | bytearray, entry: _Entry, most: int | None = None) -> list[int]:
    """The entry's numbers, the first `most` of them when given."""
    size = (_TYPE_SIZES_BIG if tiff.big else _TYPE_SIZES).get(entry.type, 1)
    if entry.type not in (3, 4, 13, 16, 18):  # SHORT, LONG, IFD, LONG8, IFD8
        return []
    count = entry.count if most is None else min(entry.count, most)
    return [tiff.unsigned(data, entry.value_position + index * size, size) for index in range(count)]


def _number(tiff: _Tiff, data: bytes | bytearray, by_tag: dict[int, _Entry], tag: int) -> int | None:
    """The first value of a numeric tag of the IFD, or None when it is absent or not a number."""
    entry = by_tag.get(tag)
    if entry is None or entry.count < 1:
        return None
    values = _values(tiff, data, entry, most=1)
    return values[0] if values else None


def _implied_count(tiff: _Tiff, data: bytes | bytearray, by_tag: dict[int, _Entry], offsets_tag: int) -> int:
    """How many strips or tiles the IFD's size says it has (libtiff reads no more of an array: the rest is
    trimmed), or TIFF_MAX_ARRAY_VALUES when its size does not say."""
    if offsets_tag == 513:  # JPEGInterchangeFormat: one thumbnail
        return 1
    width, height = _number(tiff, data, by_tag, 256), _number(tiff, data, by_tag, 257)
    planes = 1
    if _number(tiff, data, by_tag, 284) == 2:  # PlanarConfiguration: one array per sample
        planes = _number(tiff, data, by_tag, 277) or 1
    if offsets_tag == 273:  # strips
        rows = _number(tiff, data, by_tag, 278) or height
        if not height or not rows:
            return TIFF_MAX_ARRAY_VALUES
        return -(-height // rows) * planes
    tile_width, tile_height = _number(tiff, data, by_tag, 322), _number(tiff, data, by_tag, 323)
    if not (width and height and tile_width and tile_height):
        return TIFF_MAX_ARRAY_VALUES
    return -(-width // tile_width) * -(-height // tile_height) * planes


def _ifd_size(tiff: _Tiff, count: int) -> int:
    return tiff.count_size + count * tiff.entry_size + tiff.offset_size


class _Budget:
    """What a walk may still read (entries and values); _Unfollowable once spent."""

    def __init__(self, data: bytes | bytearray) -> None:
        self.left = len(data) + _WALK_SLACK

    def spend(self, amount: int) -> None:
        self.left -= amount
        if self.left < 0:
            raise _Unfollowable("the structure reads more than its bytes")


def _array_key(entry: _Entry) -> tuple[int, int, int]:
    return (entry.value_position, entry.type, entry.count)


def _referenced_ranges(
    tiff: _Tiff, data: bytes | bytearray, *, follow_gps: bool = True
) -> list[tuple[int, int]]:
    """(start, stop) of every byte range the TIFF's IFD chain references: IFDs, out-of-line values, strips
    or tiles, and sub-IFDs (EXIF, Interoperability, SubIFDs, and GPS when `follow_gps`). ValueError when the
    structure cannot be followed: out of range, over _MOST_IFDS IFDs, or more read than its bytes allow;
    TooManyValues when an array of offsets holds more than TIFF_MAX_ARRAY_VALUES. Each array of values is
    read once however many entries name it (strips and tiles: as many as the IFD's size implies), and each
    IFD queued once."""
    budget = _Budget(data)
    arrays: dict[tuple[int, int, int], list[int]] = {}
    followed: set[tuple[int, int, int]] = set()

    def values(entry: _Entry, most: int = TIFF_MAX_ARRAY_VALUES) -> list[int]:
        if entry.count > TIFF_MAX_ARRAY_VALUES:
            raise TooManyValues(entry.count)
        key = _array_key(entry)
        if key not in arrays:
            budget.spend(min(entry.count, most))
            arrays[key] = _values(tiff, data, entry, most)
        return arrays[key]

    sub_ifd_tags = _SUB_IFD_TAGS if follow_gps else tuple(tag for tag in _SUB_IFD_TAGS if tag != GPS_IFD_TAG)
    ranges: list[tuple[int, int]] = []
    pending = [_first_ifd(tiff, data)]
    queued = {0, *pending}
    while pending:
        ifd = pending.pop()
        if ifd == 0:
            continue
        entries = _entries(tiff, data, ifd, budget)
        block_start = tiff.start + ifd
        block_end = block_start + _ifd_size(tiff, len(entries))
        ranges.append((block_start, block_end))
        following = [tiff.unsigned(data, block_end - tiff.offset_size, tiff.offset_size)]
        by_tag = {entry.tag: entry for entry in entries}
        for entry in entries:
            if not entry.inline(tiff):
                ranges.append((entry.value_position, entry.value_position + entry.value_size))
            if entry.tag in sub_ifd_tags and _array_key(entry) not in followed:
                followed.add(_array_key(entry))  # its offsets are queued once, whoever names it again
                following.extend(values(entry))
        for offset in following:
            if offset not in queued:
                if len(queued) > _MOST_IFDS:
                    raise _Unfollowable("too many IFDs")
                queued.add(offset)
                pending.append(offset)
        for offsets_tag, lengths_tag in _OFFSET_LENGTH_TAGS:
            if offsets_tag in by_tag and lengths_tag in by_tag:
                implied = _implied_count(tiff, data, by_tag, offsets_tag)
                offsets = values(by_tag[offsets_tag], implied)
                lengths = values(by_tag[lengths_tag], implied)
                ranges.extend(
                    (tiff.start + offset, tiff.start + offset + length)
                    for offset, length in zip(offsets, lengths, strict=False)
                )
    return ranges


# --- GPS out of EXIF ------------------------------------------------------------------------------


def remove_tiff_gps(buffer: bytearray, start: int = 0, end: int | None = None) -> bool:
    """Remove the GPS IFD from the TIFF structure at buffer[start:end], in place and at the same length:
    its entry leaves IFD0 (later entries move down, the count drops by one) and the GPS IFD, with its
    out-of-line values, is zeroed. A TIFF file's XMP packet (tag 700) loses its GPS properties the same way.
    True when something was removed; GpsNotRemovable when the structure cannot be followed, or when the GPS
    IFD shares a byte with anything else the structure references (a GPS pointer naming IFD0 itself wiped
    IFD0, and the photo could no longer be opened)."""
    tiff = _tiff_at(buffer, start, end)
    if tiff is None:
        raise GpsNotRemovable("not a TIFF structure")
    try:
        ifd0 = _first_ifd(tiff, buffer)
        entries = _entries(tiff, buffer, ifd0)
        removed = False
        for entry in entries:
            if entry.tag == XMP_TAG and not entry.inline(tiff):
                value = slice(entry.value_position, entry.value_position + entry.value_size)
                tiff.unsigned(buffer, value.start, entry.value_size)  # in range
                blanked = blank_xmp_gps(bytes(buffer[value]))
                removed = removed or blanked != buffer[value]
                buffer[value] = blanked
        gps = [entry for entry in entries if entry.tag == GPS_IFD_TAG]
        if not gps:
            return removed
        (entry,) = gps[:1]
        if entry.count != 1:
            raise GpsNotRemovable("the GPS IFD pointer has several values")
        zeroed = [
            zone for offset in _values(tiff, buffer, entry) for zone in _gps_ifd_ranges(tiff, buffer, offset)
        ]
        _check_not_shared(zeroed, _referenced_ranges(tiff, buffer, follow_gps=False))
        _remove_entry(tiff, buffer, ifd0, len(entries), entries.index(entry))
        for start, stop in _merged(zeroed):
            buffer[start:stop] = bytes(stop - start)
    except (ValueError, IndexError, struct.error, TooManyValues) as error:
        raise GpsNotRemovable("the EXIF structure cannot be followed") from error
    return True


def _remove_entry(tiff: _Tiff, buffer: bytearray, ifd: int, count: int, index: int) -> None:
    position = tiff.start + ifd
    entries_start = position + tiff.count_size
    block_end = position + _ifd_size(tiff, count)
    tiff.unsigned(buffer, block_end - 1, 1)  # in range
    removed_at = entries_start + index * tiff.entry_size
    buffer[removed_at:block_end] = buffer[removed_at + tiff.entry_size : block_end] + bytes(tiff.entry_size)
    buffer[position:entries_start] = (count - 1).to_bytes(
        tiff.count_size, "little" if tiff.order == "<" else "big"
    )


def _gps_ifd_ranges(tiff: _Tiff, buffer: bytearray, offset: int) -> list[tuple[int, int]]:
    """What zeroing the GPS IFD at `offset` wipes: the IFD and its out-of-line values, within the structure
    (an IFD that is not inside it leaves nothing to zero)."""
    try:
        entries = _entries(tiff, buffer, offset)
    except ValueError:
        return []
    start = tiff.start + offset
    zones = [(start, start + _ifd_size(tiff, len(entries)))]
    zones.extend(
        (entry.value_position, entry.value_position + entry.value_size)
        for entry in entries
        if not entry.inline(tiff)
    )
    clipped = [(max(start, tiff.start), min(stop, tiff.end)) for start, stop in zones]
    return [(start, stop) for start, stop in clipped if start < stop]


def _merged(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, stop in sorted(ranges):
        if start >= stop:
            continue  # no byte (a strip of length 0)
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], stop))
        else:
            merged.append((start, stop))
    return merged


def _check_not_shared(zeroed: list[tuple[int, int]], kept: list[tuple[int, int]]) -> None:
    kept = _merged(kept)
    starts = [start for start, _ in kept]
    for start, stop in zeroed:
        # the last kept range starting before `stop` is the only one that can reach into [start, stop)
        index = bisect.bisect_left(starts, stop) - 1
        if index >= 0 and kept[index][1] > start:
            raise GpsNotRemovable("the GPS IFD shares bytes with the rest of the structure")


def has_tiff_gps(blob: bytes) -> bool:
    """Whether the TIFF-structured EXIF `blob` ("Exif\\0\\0" prefix or not) has a GPS IFD entry in IFD0."""
    start = len(EXIF_HEADER) if blob.startswith(EXIF_HEADER) else 0
    tiff = _tiff_at(blob, start)
    if tiff is None:
        return False
    try:
        return any(entry.tag == GPS_IFD_TAG for entry in _entries(tiff, blob, _first_ifd(tiff, blob)))
    except ValueError:
        return False


# --- GPS out of XMP -------------------------------------------------------------------------------


def blank_xmp_gps(packet: bytes) -> bytes:
    """The XMP packet with its GPS properties turned into spaces (the same length, still well-formed); a
    packet that still says "gps" after that is blanked whole."""

    def spaces(match: re.Match[bytes]) -> bytes:
        return b" " * len(match.group(0))

    blanked = bytearray(packet)
    for start, stop in _gps_elements(packet):
        blanked[start:stop] = b" " * (stop - start)
    result = _XMP_GPS_ATTRIBUTE.sub(spaces, bytes(blanked))
    if b"gps" in result.lower():
        return b" " * len(packet)
    return result


def _gps_elements(packet: bytes) -> list[tuple[int, int]]:
    """(start, stop) of each outermost GPS element: from its opening tag to the first closing tag of its
    name after it, or the tag alone when self-closed. An opening with no closing is left (the packet is then
    blanked whole). Linear: closing tags are indexed once by name, and each opening looks its own up."""
    lowered = packet.lower()  # names match whatever their case, as XMP readers of GPS* properties do
    closings: dict[bytes, list[tuple[int, int]]] = {}
    for match in _XMP_GPS_CLOSING.finditer(lowered):
        closings.setdefault(match.group(1), []).append((match.start(), match.end()))
    elements: list[tuple[int, int]] = []
    covered = 0
    for match in _XMP_GPS_OPENING.finditer(lowered):
        if match.start() < covered:
            continue  # inside an element already blanked
        tag_end = lowered.find(b">", match.end())
        if tag_end < 0:
            break  # no later opening is closed either
        if lowered[tag_end - 1] == ord("/"):
            stop = tag_end + 1
        else:
            found = closings.get(match.group(1), [])
            index = bisect.bisect_left(found, (tag_end + 1, 0))
            if index == len(found):
                continue
            stop = found[index][1]
        elements.append((match.start(), stop))
        covered = stop
    return elements


# --- Per container -----------------------------------------------------------------------------------


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


# --- Where the image ends ------------------------------------------------------------------------------


def tiff_end(data: bytes) -> int:
    """Offset just past the last byte the TIFF's IFD chain references: IFDs, out-of-line values, strips or
    tiles, and sub-IFDs (EXIF, GPS, Interoperability, SubIFDs). A structure that cannot be followed, or that
    reads more than its bytes allow, is kept whole (the decode judges it)."""
    tiff = _tiff_at(data)
    if tiff is None:
        return len(data)
    try:
        ranges = _referenced_ranges(tiff, data)
    except (ValueError, IndexError):
        return len(data)
    return min(max([16 if tiff.big else 8, *(stop for _, stop in ranges)]), len(data))


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
