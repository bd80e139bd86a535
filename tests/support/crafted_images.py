"""Hand-built photos whose structure intake must follow without a crash or a slow walk: little-endian TIFFs
of chosen IFD entries, PNGs with chosen extra chunks, and a HEIC whose XMP item repeats."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Sequence

from PIL import Image

LONG, SHORT = 4, 3
_WIDTH, _HEIGHT = 8, 8

Entry = tuple[int, int, int, bytes]  # tag, type, count, the 4 bytes of its value or offset


def tiff_of_entries(extra: Sequence[Entry] = (), *, after: bytes = b"", next_ifd: int = 0) -> bytes:
    """An 8 x 8 RGB TIFF, one uncompressed strip, whose IFD0 has `extra` entries after its own: the header,
    `after` at offset 8 (what the extra entries point to), BitsPerSample, the pixels, then IFD0 (at
    `ifd0_offset(after)`), whose next-IFD pointer is `next_ifd`."""
    bits_at = 8 + len(after)
    pixels_at = bits_at + 8
    pixels = b"\x80" * (_WIDTH * _HEIGHT * 3)
    entries: list[Entry] = [
        (256, SHORT, 1, struct.pack("<HH", _WIDTH, 0)),
        (257, SHORT, 1, struct.pack("<HH", _HEIGHT, 0)),
        (258, SHORT, 3, struct.pack("<I", bits_at)),
        (259, SHORT, 1, struct.pack("<HH", 1, 0)),
        (262, SHORT, 1, struct.pack("<HH", 2, 0)),
        (273, LONG, 1, struct.pack("<I", pixels_at)),
        (277, SHORT, 1, struct.pack("<HH", 3, 0)),
        (278, SHORT, 1, struct.pack("<HH", _HEIGHT, 0)),
        (279, LONG, 1, struct.pack("<I", len(pixels))),
        *extra,
    ]
    ifd = struct.pack("<H", len(entries))
    ifd += b"".join(struct.pack("<HHI", tag, kind, count) + value for tag, kind, count, value in entries)
    ifd += struct.pack("<I", next_ifd)
    header = b"II*\x00" + struct.pack("<I", ifd0_offset(after))
    return header + after + struct.pack("<HHH", 8, 8, 8) + bytes(2) + pixels + ifd


def ifd0_offset(after: bytes) -> int:
    return 8 + len(after) + 8 + _WIDTH * _HEIGHT * 3


def tiff_with_sub_ifd_arrays(*, entries: int, offsets: int) -> bytes:
    """`entries` SubIFDs entries (tag 330) in IFD0, each an array of the same `offsets` zero offsets."""
    array = bytes(4 * offsets)
    return tiff_of_entries([(330, LONG, offsets, struct.pack("<I", 8))] * entries, after=array)


def tiff_with_gps_pointing_at_ifd0() -> bytes:
    """IFD0's GPS IFD pointer (0x8825) names IFD0 itself."""
    return tiff_of_entries([(0x8825, LONG, 1, struct.pack("<I", ifd0_offset(b"")))])


def tiff_with_a_thumbnail_ifd_without_size() -> bytes:
    """IFD0 is followed by an IFD of one entry (NewSubfileType: reduced image), no ImageWidth or Length."""
    second = struct.pack("<H", 1) + struct.pack("<HHII", 254, LONG, 1, 1) + struct.pack("<I", 0)
    return tiff_of_entries(after=second, next_ifd=8)


def png_with_chunks(chunks: Sequence[tuple[bytes, bytes]]) -> bytes:
    """A small PNG with `chunks` (type, body) inserted before IEND, their CRCs right."""
    out = io.BytesIO()
    Image.new("RGB", (16, 16), (30, 90, 150)).save(out, "PNG")
    data = out.getvalue()
    iend = data.rindex(b"IEND") - 4
    extra = b"".join(
        struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        for kind, body in chunks
    )
    return data[:iend] + extra + data[iend:]


def png_with_compressed_xmp(packet: bytes) -> bytes:
    """A PNG whose zTXt chunk "XML:com.adobe.xmp" holds `packet`, compressed."""
    return png_with_chunks([(b"zTXt", b"XML:com.adobe.xmp\x00\x00" + zlib.compress(packet))])


def heic_with_a_repeating_xmp(*, unit: bytes, copies: int, more: int) -> bytes:
    """A small HEIC whose XMP item is `unit` * `copies`, stored last in its mdat, which then holds `more`
    copies of `unit` that no item names: the item's bytes are in the file at `more` + 1 overlapping places."""
    import pillow_heif

    pillow_heif.register_heif_opener()
    xmp = unit * copies
    out = io.BytesIO()
    Image.new("RGB", (_WIDTH * 8, _HEIGHT * 8), (30, 90, 150)).save(out, "HEIF", xmp=xmp)
    data = out.getvalue()
    mdat = data.rindex(b"mdat") - 4
    (size,) = struct.unpack(">I", data[mdat : mdat + 4])
    assert mdat + size == len(data) and data.endswith(xmp)  # the mdat is the last box, the XMP its end
    return data[:mdat] + struct.pack(">I", size + len(unit) * more) + data[mdat + 4 :] + unit * more
