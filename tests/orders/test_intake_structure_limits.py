"""Intake refuses, from a first walk of the bytes and before Pillow opens them, a photo whose structure has
more items than any photo has: each item was a step of Python in every later walk (Pillow's open, the GPS
strip and check), and Pillow kept them all. And a TIFF of several pages is refused from its first two IFDs,
not by counting them all (Pillow's n_frames re-reads the chain: 120,000 pages took 167 s)."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image, TiffImagePlugin

from api.errors import STATUS_BY_CODE
from lab.orders import exif_gps, image_formats, image_trailers, imaging
from tests.support.memory import peak_growth_mib

MAX_PIXELS = 89_478_485
INTAKE = "imaging.inspect_image(data=data, max_bytes=len(data), max_pixels=Image.MAX_IMAGE_PIXELS)\n"


def _refusal(data: bytes) -> image_formats.InvalidImage:
    with pytest.raises(image_formats.InvalidImage) as refused:
        imaging.inspect_image(data=data, max_bytes=len(data), max_pixels=MAX_PIXELS)
    return refused.value


def _jpeg_with_comments(comments: int) -> bytes:
    """A 64 px JPEG with `comments` empty COM segments (FF FE 00 02) after its SOI."""
    out = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 120, 40)).save(out, "JPEG")
    data = out.getvalue()
    return data[:2] + b"\xff\xfe\x00\x02" * comments + data[2:]


def _png_with_private_chunks(chunks: int) -> bytes:
    """A 64 px PNG with `chunks` empty private chunks ("prVt") before its pixels."""
    out = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 200, 30)).save(out, "PNG")
    data = out.getvalue()
    header_end = 8 + 25  # signature, IHDR
    empty = struct.pack(">I", 0) + b"prVt" + struct.pack(">I", zlib.crc32(b"prVt"))
    return data[:header_end] + empty * chunks + data[header_end:]


def _tiff_of_one_row_strips(rows: int) -> bytes:
    """A 1 px wide grey TIFF `rows` high, one strip per row, each strip naming the same pixel byte: as many
    strips as its size implies, 2 bytes per offset and per length."""
    entries = [(256, 3, 1, 1), (257, 4, 1, rows), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1)]
    entries += [(273, 3, rows, 0), (278, 3, 1, 1), (279, 3, rows, 0)]
    ifd_size = 2 + 12 * len(entries) + 4
    offsets_at = 12 + ifd_size
    lengths_at = offsets_at + 2 * rows
    out = bytearray(b"II*\x00" + struct.pack("<I", 12) + b"\x80\x00\x00\x00")
    out += struct.pack("<H", len(entries))
    for tag, value_type, count, value in entries:
        value = {273: offsets_at, 279: lengths_at}.get(tag, value)
        out += struct.pack("<HHII", tag, value_type, count, value)
    out += struct.pack("<I", 0)
    return bytes(out + struct.pack("<H", 8) * rows + struct.pack("<H", 1) * rows)


def _tiff_of_pages(pages: int) -> bytes:
    """A TIFF of `pages` 1 x 1 grey pages (IFDs chained one after another), all naming one pixel byte."""
    ifd_size = 2 + 8 * 12 + 4
    out = bytearray(b"II*\x00" + struct.pack("<I", 12) + b"\x80\x00\x00\x00")
    entries = [(256, 3, 1, 1), (257, 3, 1, 1), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1)]
    entries += [(273, 4, 1, 8), (278, 3, 1, 1), (279, 4, 1, 1)]
    body = b"".join(struct.pack("<HHII", *entry) for entry in entries)
    for page in range(pages):
        following = 12 + (page + 1) * ifd_size if page < pages - 1 else 0
        out += struct.pack("<H", len(entries)) + body + struct.pack("<I", following)
    return bytes(out)


@pytest.mark.parametrize(
    ("make", "items", "limit", "accepted_items"),
    [
        pytest.param(
            _jpeg_with_comments, 2_500_000, image_trailers.JPEG_MAX_SEGMENTS, 990, id="jpeg-comments"
        ),
        pytest.param(_png_with_private_chunks, 200_000, image_trailers.PNG_MAX_CHUNKS, 990, id="png-chunks"),
        # one strip per row: 100,000 rows is within the limit
        pytest.param(
            _tiff_of_one_row_strips, 1_000_000, exif_gps.TIFF_MAX_ARRAY_VALUES, 100_000, id="tiff-strips"
        ),
    ],
)
def test_a_photo_of_too_many_structure_items_is_refused_before_it_costs_memory(
    tmp_path: Path, make, items: int, limit: int, accepted_items: int
) -> None:
    # given a photo of a million or more segments, chunks or strips (a few MB; each is read in Python)
    data = make(items)
    photo = tmp_path / "photo"
    photo.write_bytes(data)

    # when intake checks it, then it is refused with the limit (a 422), and the process hardly grew: before,
    # the JPEG was accepted after ~10 s at ~400 MiB more, the TIFF took some 600 MiB
    refusal = _refusal(data)
    assert (refusal.code, refusal.details) == ("too_many_metadata_items", {"max_items": limit})
    assert STATUS_BY_CODE[refusal.code] == 422
    refused_call = (
        "from lab.orders.image_formats import InvalidImage\n"
        f"try:\n    {INTAKE}except InvalidImage:\n    pass\n"
    )
    assert peak_growth_mib(refused_call, photo=str(photo)) < 20

    # and the same photo with fewer items, within the limit, is accepted
    within = make(accepted_items)
    facts = imaging.inspect_image(data=within, max_bytes=len(within), max_pixels=MAX_PIXELS)
    assert facts.size_bytes == len(within)


def test_a_tiff_of_60000_pages_is_refused_from_its_first_two(monkeypatch) -> None:
    # given a TIFF of 60,000 one-pixel pages (6 MB): Pillow counting them read the chain page after page,
    # for 40 s, past gunicorn's timeout
    data = _tiff_of_pages(60_000)
    ifds_read = []
    load = TiffImagePlugin.ImageFileDirectory_v2.load

    def counted_load(directory, fp):
        ifds_read.append(fp.tell())
        return load(directory, fp)

    monkeypatch.setattr(TiffImagePlugin.ImageFileDirectory_v2, "load", counted_load)

    # when intake checks it
    refusal = _refusal(data)

    # then it is refused as several pages, Pillow having read its first two IFDs (each a few times over):
    # counting the pages read all 60,000
    assert (refusal.code, refusal.details) == ("image_has_several_frames", {"frames": 2})
    assert STATUS_BY_CODE[refusal.code] == 422
    assert len(ifds_read) < 10, len(ifds_read)
    assert set(ifds_read) == {12, 12 + 102}
