"""What intake accepts is what the raster workers take: one list of formats (lab.lib.decoders), checked
against every HEIC brand and TIFF magic the two decoders' libraries know."""

from __future__ import annotations

import io
import runpy
import time
import warnings
from pathlib import Path

import pytest
from django.conf import settings
from PIL import Image

from lab.orders import container_gps, image_formats, image_sequential, imaging, xmp_gps
from lab.production.imaging.errors import RasterError
from lab.production.imaging.source import open_source
from tests.support.crafted_images import (
    heic_with_a_repeating_xmp,
    png_with_compressed_xmp,
    tiff_with_sub_ifd_arrays,
)
from tests.support.images import bigtiff_bytes, heic_with_brand, progressive_jpeg_with_scans

# Every ftyp brand pillow-heif's HEIF opener takes (10), and brands it does not.
HEIC_BRANDS = [b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1"]
OTHER_BRANDS = [b"avif", b"isom", b"qt  "]
# Every TIFF magic Pillow's TIFF plugin opens a file by.
TIFF_MAGICS = [b"II*\x00", b"MM\x00*", b"II\x00*", b"MM*\x00", b"II+\x00", b"MM\x00+"]


def _intake_verdict(data: bytes) -> str:
    """ "accepted", or the code intake refuses the photo with."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's warnings on the swapped magics' tags
            imaging.inspect_image(
                data=data, max_bytes=settings.ASSET_MAX_BYTES, max_pixels=settings.ASSET_MAX_PIXELS
            )
    except image_formats.InvalidImage as refusal:
        return str(refusal.code)
    return "accepted"


def _intake_accepts(data: bytes) -> bool:
    return _intake_verdict(data) == "accepted"


def _workers_take(data: bytes) -> bool:
    try:
        open_source(data)
    except RasterError:
        return False
    return True


def _tiff_with_magic(magic: bytes) -> bytes:
    """A TIFF of `magic`: a BigTIFF written in its byte order, or a classic TIFF of its byte order (Pillow
    writes 16-bit grey big-endian) under that magic."""
    byte_order = magic[:2].decode()
    if magic[2:] in (b"+\x00", b"\x00+"):
        return bigtiff_bytes(60, 40, byte_order=byte_order)
    out = io.BytesIO()
    Image.new("RGB" if byte_order == "II" else "I;16B", (60, 40), 90).save(out, "TIFF")
    return magic + out.getvalue()[4:]


@pytest.mark.parametrize("brand", HEIC_BRANDS + OTHER_BRANDS, ids=lambda brand: brand.decode().strip())
def test_a_heic_of_any_brand_is_taken_by_intake_exactly_when_the_workers_take_it(brand):
    photo = heic_with_brand(brand)

    assert _intake_accepts(photo) == _workers_take(photo) == (brand in HEIC_BRANDS)


@pytest.mark.parametrize("magic", TIFF_MAGICS, ids=lambda magic: magic.hex())
def test_a_tiff_of_any_magic_is_taken_by_intake_exactly_when_the_workers_take_it(magic):
    photo = _tiff_with_magic(magic)

    verdict = _intake_verdict(photo)

    # Pillow opens the swapped magics and the libtiff behind the workers does not: only the one list of
    # formats refuses them, as unsupported_format (before it, they were stored and their prints failed).
    # Pillow itself cannot open a big-endian BigTIFF: not_an_image, before and after.
    expected = {
        b"II\x00*": "unsupported_format",
        b"MM*\x00": "unsupported_format",
        b"MM\x00+": "not_an_image",
    }
    assert verdict == expected.get(magic, "accepted")
    assert _workers_take(photo) == (verdict == "accepted")


def test_jpegtran_gives_up_well_before_gunicorn_kills_the_web_worker():
    # A progressive JPEG jpegtran gives up on is then decoded whole (about as long again) in the same request.
    gunicorn_conf = runpy.run_path(str(Path(settings.BASE_DIR) / "gunicorn.conf.py"))

    assert gunicorn_conf["timeout"] > image_sequential.JPEGTRAN_TIMEOUT_SECONDS * 2


def test_a_progressive_jpeg_of_more_scans_than_the_limit_is_refused_at_the_first_one_over():
    # jpegtran stops at scan 101: the refusal costs a hundred scans, not the thousands sent
    assert _intake_verdict(progressive_jpeg_with_scans(image_sequential.JPEGTRAN_MAX_SCANS)) == "accepted"
    assert (
        _intake_verdict(progressive_jpeg_with_scans(image_sequential.JPEGTRAN_MAX_SCANS + 1))
        == "decompression_bomb"
    )


# Bounds far above what the fixed walks take (well under a second) and far below what the old ones took, so
# that a loaded 2-CPU runner does not fail them.
_SECONDS_FOR_A_CRAFTED_FILE = 5.0


def _timed_verdict(data: bytes) -> tuple[str, float]:
    started = time.monotonic()
    verdict = _intake_verdict(data)
    return verdict, time.monotonic() - started


def test_a_tiff_whose_entries_all_name_one_array_of_offsets_is_judged_in_seconds():
    # 4,000 SubIFDs entries each naming the same 14,000 zero offsets (104 KB): the tail cut re-read the
    # array for every entry, 56 million offsets (17 s and 345 MB)
    photo = tiff_with_sub_ifd_arrays(entries=4000, offsets=14000)

    verdict, seconds = _timed_verdict(photo)

    assert seconds < _SECONDS_FOR_A_CRAFTED_FILE
    assert verdict == "accepted"  # an 8 x 8 picture; the SubIFDs name no IFD


def test_a_png_whose_xmp_opens_gps_elements_it_never_closes_is_judged_in_seconds():
    # 438 bytes: a zTXt XMP chunk of 200 KB of "<a:gps>" once inflated; the blanking took 36 s
    photo = png_with_compressed_xmp(b"<a:gps>" * 28571)

    verdict, seconds = _timed_verdict(photo)

    assert seconds < _SECONDS_FOR_A_CRAFTED_FILE
    assert verdict == "accepted"  # its XMP blanked whole: it names GPS and cannot be followed


def test_a_heic_whose_xmp_item_is_found_at_a_thousand_overlapping_places_is_judged_in_seconds():
    # 1 MB: an XMP item of 250,000 "gps " followed in its mdat by 1,000 more, so its bytes are found at 1,001
    # places, each a unit further on; the strip blanked the whole item anew at each of them (19 s)
    photo = heic_with_a_repeating_xmp(unit=b"gps ", copies=250_000, more=1000)

    verdict, seconds = _timed_verdict(photo)

    assert seconds < _SECONDS_FOR_A_CRAFTED_FILE
    assert verdict == "gps_not_removable"  # an edit at one place would change the bytes of the next


def test_a_heic_whose_xmp_item_is_found_at_places_apart_has_gps_blanked_at_each():
    # The item once, and a copy of it after (no item names it): both are blanked, and the photo is stored
    unit = b'<rdf:Description exif:GPSLatitude="1,2N"/>'
    photo = heic_with_a_repeating_xmp(unit=unit, copies=1, more=1)

    stored = container_gps.strip_heic_gps(photo, exif=None, xmp=unit)

    assert stored == photo[: -2 * len(unit)] + xmp_gps.blank_xmp_gps(unit) * 2
    assert b"gps" not in stored.lower()
    assert _intake_verdict(photo) == "accepted"


def test_an_xmp_packet_of_unclosed_gps_openings_is_blanked_whole_in_linear_time():
    packet = b"<a:gps>" * 30000

    started = time.monotonic()
    blanked = xmp_gps.blank_xmp_gps(packet)

    assert time.monotonic() - started < _SECONDS_FOR_A_CRAFTED_FILE
    assert blanked == b" " * len(packet)
