"""GPS out of TIFF-structured EXIF (a TIFF itself, a PNG's eXIf chunk, a HEIC's Exif item), in place; no pixel
is re-encoded. The walk of what a TIFF's IFDs reference serves that and where a TIFF ends (tiff_end).
"""

from __future__ import annotations

import bisect
import struct
from dataclasses import dataclass
from typing import Final

from lab.orders.xmp_gps import blank_xmp_gps

EXIF_HEADER: Final = b"Exif\x00\x00"
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


class GpsNotRemovable(Exception):
    """Location data was found where it cannot be removed without rewriting the photo."""


class _Unfollowable(ValueError):
    """The walk of a TIFF structure read more than its bytes justify (the structure is kept whole)."""


class TooManyValues(Exception):
    """An array of offsets in a TIFF structure holds more than TIFF_MAX_ARRAY_VALUES values."""

    def __init__(self, count: int) -> None:
        super().__init__(f"an array of {count} offsets")
        self.count = count


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


# --- Where a TIFF ends -------------------------------------------------------------------------------


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
