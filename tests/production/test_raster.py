"""Tests of the print rasterizer: sizes, orientation, crop/fit, colour management, formats and errors.
Images are generated small; a low DPI keeps the outputs small while still exercising the downscale path."""

from __future__ import annotations

import gc
import io
import math
import secrets
import tracemalloc

import pytest
from PIL import Image, ImageChops, JpegImagePlugin

from lab.production.imaging.colour import SRGB_PROFILE, default_cmyk_profile
from lab.production.raster import Engine, RasterError, RasterSpec, rasterize, target_size
from tests.support.images import STORED_FOR_ORIENTATION

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def _vips_profile(name: str) -> bytes:
    import pyvips

    probe = pyvips.Image.black(1, 1, bands=3).copy(interpretation="srgb").icc_export(output_profile=name)
    return bytes(probe.get("icc-profile-data"))


def _encode(image: Image.Image, image_format: str = "JPEG", **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


def _quadrants(width: int, height: int) -> Image.Image:
    """Top-left red, top-right green, bottom-left blue, bottom-right white."""
    image = Image.new("RGB", (width, height), WHITE)
    image.paste(RED, (0, 0, width // 2, height // 2))
    image.paste(GREEN, (width // 2, 0, width, height // 2))
    image.paste(BLUE, (0, height // 2, width // 2, height))
    return image


def _textured(width: int, height: int, seed: int = 3) -> Image.Image:
    import pyvips

    bands = [pyvips.Image.perlin(width, height, cell_size=24, seed=seed + band) for band in range(3)]
    texture = bands[0].bandjoin(bands[1:]) * 300 + 128
    texture = texture + pyvips.Image.gaussnoise(width, height, sigma=4, mean=0, seed=seed)
    return Image.frombytes("RGB", (width, height), texture.cast("uchar").write_to_memory())


def _decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def _pixel(image: Image.Image, xy: tuple[int, int]) -> tuple[int, ...]:
    value = image.getpixel(xy)
    assert isinstance(value, tuple)
    return value


def _close(actual: tuple[int, ...], expected: tuple[int, ...], tolerance: int) -> bool:
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True))


def _psnr(first: Image.Image, second: Image.Image) -> float:
    histogram = ImageChops.difference(first, second).histogram()
    squared = sum(count * (value % 256) ** 2 for value, count in enumerate(histogram))
    mse = squared / (first.width * first.height * len(first.getbands()))
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


@pytest.mark.parametrize(
    ("width_in", "height_in", "landscape_px", "portrait_px"),
    [
        (4, 6, (1800, 1200), (1200, 1800)),
        (5, 7, (2100, 1500), (1500, 2100)),
        (8, 10, (3000, 2400), (2400, 3000)),
    ],
)
def test_output_pixel_size_is_exact_at_300_dpi_in_both_orientations(
    width_in: int, height_in: int, landscape_px: tuple[int, int], portrait_px: tuple[int, int]
) -> None:
    # given a small landscape photo and a small portrait photo
    spec = RasterSpec(width_in=width_in, height_in=height_in, dpi=300)
    landscape = _encode(_textured(300, 200))
    portrait = _encode(_textured(200, 300))

    # when both are rasterized
    landscape_result = rasterize(data=landscape, spec=spec)
    portrait_result = rasterize(data=portrait, spec=spec)

    # then the print's long side follows the photo's long side, to the pixel
    assert (landscape_result.width_px, landscape_result.height_px) == landscape_px
    assert _decode(landscape_result.data).size == landscape_px
    assert (portrait_result.width_px, portrait_result.height_px) == portrait_px
    assert _decode(portrait_result.data).size == portrait_px
    assert landscape_result.media_type == "image/jpeg"


def test_target_size_uses_the_orientation_after_exif_rotation() -> None:
    # given a 4x6 spec and a photo stored landscape
    spec = RasterSpec(width_in=6, height_in=4)

    # when / then: as stored it is landscape; rotated by orientation 6 or 8 it displays portrait
    assert target_size(spec=spec, photo_width=6000, photo_height=4000, orientation=1) == (1800, 1200)
    assert target_size(spec=spec, photo_width=6000, photo_height=4000, orientation=6) == (1200, 1800)
    assert target_size(spec=spec, photo_width=6000, photo_height=4000, orientation=8) == (1200, 1800)
    assert target_size(spec=spec, photo_width=4000, photo_height=4000, orientation=1) == (1200, 1800)


@pytest.mark.parametrize("engine", ["pyvips", "pillow"])
def test_exif_orientation_6_is_applied(engine: Engine) -> None:
    # given a landscape JPEG (red top-left, green top-right, blue bottom-left) tagged "rotate 90 clockwise"
    exif = Image.Exif()
    exif[0x0112] = 6
    data = _encode(_quadrants(600, 400), exif=exif.tobytes(), quality=95)

    # when it is printed on 4x6 at 50 DPI (a downscale)
    result = rasterize(data=data, spec=RasterSpec(width_in=4, height_in=6, dpi=50), engine=engine)

    # then it prints portrait: stored bottom-left (blue) is now top-left, stored top-left (red) top-right
    printed = _decode(result.data)
    assert printed.size == (200, 300)
    assert _close(_pixel(printed, (50, 75)), BLUE, 12)
    assert _close(_pixel(printed, (150, 75)), RED, 12)
    assert _close(_pixel(printed, (150, 225)), GREEN, 12)
    assert _close(_pixel(printed, (50, 225)), WHITE, 12)
    assert result.engine == engine


def _stripes() -> bytes:
    """A 3:1 photo: left third red, middle green, right third blue."""
    image = Image.new("RGB", (600, 200), GREEN)
    image.paste(RED, (0, 0, 200, 200))
    image.paste(BLUE, (400, 0, 600, 200))
    return _encode(image, "PNG")


def test_fill_crops_the_centre() -> None:
    # given a 3:1 photo and a 3:2 print
    spec = RasterSpec(width_in=6, height_in=4, dpi=20, sizing="fill", output_format="tiff")

    # when it is filled
    printed = _decode(rasterize(data=_stripes(), spec=spec).data)

    # then the centre 1.5:1 region (x 150..450 of 600) fills the print: 1/6 red, 2/3 green, 1/6 blue
    assert printed.size == (120, 80)
    assert _close(_pixel(printed, (5, 40)), RED, 3)
    assert _close(_pixel(printed, (25, 40)), GREEN, 3)
    assert _close(_pixel(printed, (95, 40)), GREEN, 3)
    assert _close(_pixel(printed, (115, 40)), BLUE, 3)
    assert _close(_pixel(printed, (60, 0)), GREEN, 3)


def test_fit_adds_a_white_border() -> None:
    # given the same 3:1 photo and a 3:2 print
    spec = RasterSpec(width_in=6, height_in=4, dpi=20, sizing="fit", output_format="tiff")

    # when it is fitted
    printed = _decode(rasterize(data=_stripes(), spec=spec).data)

    # then the whole photo (120x40) sits centred between white bands of 20 rows
    assert printed.size == (120, 80)
    assert printed.getpixel((60, 0)) == WHITE
    assert printed.getpixel((60, 19)) == WHITE
    assert printed.getpixel((60, 60)) == WHITE
    assert printed.getpixel((60, 79)) == WHITE
    assert _close(_pixel(printed, (5, 40)), RED, 3)
    assert _close(_pixel(printed, (60, 40)), GREEN, 3)
    assert _close(_pixel(printed, (115, 40)), BLUE, 3)


def test_output_carries_the_output_icc_profile_and_nothing_else() -> None:
    # given a JPEG with EXIF (camera, GPS), an XMP packet and a comment
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"
    exif[0x0112] = 1
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2] = "N", (51.0, 30.0, 0.0)
    data = _encode(
        _textured(300, 200), exif=exif.tobytes(), xmp=b"<x:xmpmeta>secret</x:xmpmeta>", comment=b"hi"
    )
    spec = RasterSpec(width_in=6, height_in=4, dpi=30)

    # when it is rasterized to sRGB and to a P3 printer profile
    srgb_out = rasterize(data=data, spec=spec).data
    p3_profile = _vips_profile("p3")
    p3_out = rasterize(
        data=data, spec=RasterSpec(width_in=6, height_in=4, dpi=30, output_icc=p3_profile)
    ).data

    # then each output embeds exactly its output profile, and no EXIF, GPS, XMP or comment survives
    assert _decode(srgb_out).info["icc_profile"] == SRGB_PROFILE
    assert _decode(p3_out).info["icc_profile"] == p3_profile
    for output in (srgb_out, p3_out):
        printed = _decode(output)
        assert len(printed.getexif()) == 0
        assert sorted(printed.info) == [
            "dpi",
            "icc_profile",
            "jfif",
            "jfif_density",
            "jfif_unit",
            "jfif_version",
        ]
        assert b"Exif" not in output
        assert b"PhoneMaker" not in output
        assert b"xmpmeta" not in output
        assert printed.info["dpi"] == (30, 30)


def _srgb_encode(linear: float) -> float:
    linear = min(1.0, max(0.0, linear))
    return 12.92 * linear if linear <= 0.0031308 else 1.055 * linear ** (1 / 2.4) - 0.055


def _srgb_decode(encoded: float) -> float:
    return encoded / 12.92 if encoded <= 0.04045 else ((encoded + 0.055) / 1.055) ** 2.4


def test_embedded_display_p3_colour_is_converted_to_srgb() -> None:
    # given a flat colour tagged Display P3 (same transfer curve and white point as sRGB, wider primaries)
    colour = (200, 100, 50)
    data = _encode(Image.new("RGB", (90, 60), colour), "PNG", icc_profile=_vips_profile("p3"))
    p3_to_srgb = (
        (1.2249401, -0.2249404, 0.0),
        (-0.0420569, 1.0420571, 0.0),
        (-0.0196376, -0.0786361, 1.0982735),
    )
    linear = [_srgb_decode(channel / 255) for channel in colour]
    expected = tuple(
        round(255 * _srgb_encode(sum(weight * value for weight, value in zip(row, linear, strict=True))))
        for row in p3_to_srgb
    )

    # when it is rasterized to sRGB
    printed = _decode(
        rasterize(data=data, spec=RasterSpec(width_in=6, height_in=4, dpi=10, output_format="tiff")).data
    )

    # then the pixel is the same colour expressed in sRGB: more saturated numbers than the P3 ones
    assert expected == (215, 93, 31)
    assert _close(_pixel(printed, (30, 20)), expected, 2)


def test_untagged_and_srgb_tagged_photos_keep_their_values() -> None:
    # given the same flat colour untagged and tagged with libvips' sRGB profile (other bytes than ours)
    colour = (200, 100, 50)
    untagged = _encode(Image.new("RGB", (90, 60), colour), "PNG")
    tagged = _encode(Image.new("RGB", (90, 60), colour), "PNG", icc_profile=_vips_profile("srgb"))
    spec = RasterSpec(width_in=6, height_in=4, dpi=10, output_format="tiff")

    # when both are rasterized to sRGB, then the values are unchanged
    assert _decode(rasterize(data=untagged, spec=spec).data).getpixel((30, 20)) == colour
    assert _close(_pixel(_decode(rasterize(data=tagged, spec=spec).data), (30, 20)), colour, 1)


def _padded(icc: bytes, size: int) -> bytes:
    """The profile grown to `size` bytes by random bytes after its tags (its header's size says so): as large
    as a press profile, and unlike any other profile of the test run."""
    padded = icc + secrets.token_bytes(size - len(icc))
    return len(padded).to_bytes(4, "big") + padded[4:]


def test_the_colour_transform_cache_keeps_no_photos_profile() -> None:
    # given a photo tagged with a 3 MB Display P3 profile
    profile = _padded(_vips_profile("p3"), 3 * 1024 * 1024)
    data = _encode(Image.new("RGB", (90, 60), (200, 100, 50)), "TIFF", icc_profile=profile)
    del profile
    spec = RasterSpec(width_in=6, height_in=4, dpi=10, output_format="tiff")

    # when it is rasterized, and everything the rasterizer returned is let go
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        printed = _pixel(_decode(rasterize(data=data, spec=spec).data), (30, 20))
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()

    # then its profile was used, and no copy of it is kept (the transform is kept by the profile's digest)
    assert _close(printed, (215, 93, 31), 2)
    assert kept < 1024 * 1024


def _without_tags(icc: bytes, *names: bytes) -> bytes:
    """The profile with these tags renamed in its tag table (a readable profile that lacks them)."""
    count = int.from_bytes(icc[128:132], "big")
    table = bytearray(icc)
    for entry in range(count):
        at = 132 + 12 * entry
        if bytes(table[at : at + 4]) in names:
            table[at : at + 4] = b"zzz" + bytes([48 + entry % 10])
    return bytes(table)


@pytest.mark.parametrize("dpi", [10, 300])  # the Pillow engine, and libvips' (which converts in its pipeline)
def test_a_readable_profile_no_transform_can_be_built_from_prints_as_untagged(dpi: int) -> None:
    """An sRGB profile without its red colorant and curve is read (intake takes its description) but
    LittleCMS cannot build a transform from it: the raster worker raised PyCMSError, which no handler
    caught, so the job stayed `rasterizing` and was taken over and crashed again every lease, for ever."""
    colour = (200, 100, 50)
    broken = _without_tags(SRGB_PROFILE, b"rXYZ", b"rTRC")
    data = _encode(
        _textured(1500, 1000) if dpi == 300 else Image.new("RGB", (90, 60), colour), icc_profile=broken
    )
    spec = RasterSpec(width_in=6, height_in=4, dpi=dpi, output_format="tiff")

    printed = _decode(rasterize(data=data, spec=spec).data)

    assert printed.size == (6 * dpi, 4 * dpi)
    if dpi == 10:
        assert _close(_pixel(printed, (30, 20)), colour, 3)  # as untagged sRGB: the values kept


def test_a_photo_stored_with_a_doubled_exif_header_prints_with_the_orientation_intake_recorded() -> None:
    """Intake's GPS stripping wrote a doubled "Exif" header until 2026-12-05: Pillow reads its orientation
    (what the quote used), libvips does not. The orientation intake recorded is the one printed."""
    exif = Image.Exif()
    exif[0x0112] = 6
    doubled = b"Exif\x00\x00" + exif.tobytes()  # tobytes() has the header already: as the old stripping did
    data = _encode(_textured(300, 200), exif=doubled)
    spec = RasterSpec(width_in=4, height_in=6, dpi=20, output_format="tiff")
    with Image.open(io.BytesIO(data)) as stored:
        assert stored.getexif().get(0x0112) == 6  # what intake recorded, and the quote showed

    as_libvips_reads_it = _decode(rasterize(data=data, spec=spec).data)
    as_quoted = _decode(rasterize(data=data, spec=spec, orientation=6).data)

    assert as_libvips_reads_it.size == (120, 80)  # landscape: the portrait photo printed on its side
    assert as_quoted.size == (80, 120)  # portrait, as the phone showed it and the quote said


def test_cmyk_printer_profile_gives_cmyk_output() -> None:
    # given a white-and-red photo and a CMYK output profile
    image = Image.new("RGB", (90, 60), WHITE)
    image.paste(RED, (0, 0, 45, 60))
    spec = RasterSpec(width_in=6, height_in=4, dpi=10, output_icc=default_cmyk_profile(), sizing="fit")

    # when it is rasterized
    printed = _decode(rasterize(data=_encode(image, "PNG"), spec=spec).data)

    # then the raster is CMYK: paper white is no ink, red is magenta + yellow without cyan
    assert printed.mode == "CMYK"
    assert printed.getpixel((50, 20)) == (0, 0, 0, 0)
    cyan, magenta, yellow, _black = _pixel(printed, (10, 20))
    assert cyan < 10 and magenta > 200 and yellow > 200


def test_jpeg_output_is_444_and_tiff_output_is_uncompressed() -> None:
    # given a photo
    data = _encode(_textured(300, 200))

    # when it is rasterized to JPEG and to TIFF
    jpeg = _decode(rasterize(data=data, spec=RasterSpec(width_in=6, height_in=4, dpi=30)).data)
    tiff_result = rasterize(data=data, spec=RasterSpec(width_in=6, height_in=4, dpi=30, output_format="tiff"))
    tiff = _decode(tiff_result.data)

    # then the JPEG has no chroma subsampling and the TIFF holds raw pixels
    assert isinstance(jpeg, JpegImagePlugin.JpegImageFile)
    assert JpegImagePlugin.get_sampling(jpeg) == 0
    assert tiff.format == "TIFF"
    assert tiff.info["compression"] == "raw"
    assert tiff_result.media_type == "image/tiff"
    assert len(tiff_result.data) > 180 * 120 * 3


@pytest.mark.parametrize("engine", [None, "pyvips", "pillow"])
def test_truncated_jpeg_is_a_permanent_decode_failure(engine: Engine | None) -> None:
    # given a JPEG cut in the middle of its scan data
    data = _encode(_textured(600, 400), quality=95)
    truncated = data[: len(data) // 2]

    # when it is rasterized, then it is refused with a stable code
    with pytest.raises(RasterError) as raised:
        rasterize(data=truncated, spec=RasterSpec(width_in=6, height_in=4, dpi=30), engine=engine)
    assert raised.value.code == "decode_failed"
    assert raised.value.is_permanent is True


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "unsupported_format"),
        (b"GIF89a" + bytes(100), "unsupported_format"),
        (b"\xff\xd8\xff\xe0" + bytes(200), "decode_failed"),
        (b"\x89PNG\r\n\x1a\n" + b"garbage" * 10, "decode_failed"),
    ],
)
def test_corrupt_or_foreign_input_is_refused_with_a_code(data: bytes, code: str) -> None:
    # given bytes that are not a usable photo; when rasterized; then the code says why
    with pytest.raises(RasterError) as raised:
        rasterize(data=data, spec=RasterSpec(width_in=6, height_in=4))
    assert raised.value.code == code


def _png_header_only(width: int, height: int) -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


def test_oversized_photo_and_bad_specs_are_refused() -> None:
    # given a PNG header announcing 20000 x 20000 pixels, and impossible specs
    bomb = _png_header_only(20000, 20000)
    photo = _encode(_textured(60, 40))

    # when / then
    with pytest.raises(RasterError) as too_large:
        rasterize(data=bomb, spec=RasterSpec(width_in=6, height_in=4))
    with pytest.raises(RasterError) as bad_size:
        rasterize(data=photo, spec=RasterSpec(width_in=0, height_in=4))
    with pytest.raises(RasterError) as bad_profile:
        rasterize(data=photo, spec=RasterSpec(width_in=6, height_in=4, output_icc=b"not a profile"))
    with pytest.raises(RasterError) as bad_engine:
        rasterize(
            data=_encode(_textured(60, 40), "PNG"), spec=RasterSpec(width_in=6, height_in=4), engine="pyvips"
        )
    assert too_large.value.code == "too_large"
    assert bad_size.value.code == "invalid_spec"
    assert bad_profile.value.code == "invalid_output_profile"
    assert bad_engine.value.code == "engine_unsupported"


@pytest.mark.parametrize("image_format", ["PNG", "TIFF", "HEIF"])
def test_png_tiff_and_heic_inputs(image_format: str) -> None:
    # given the quadrant photo in another container format
    data = _encode(_quadrants(300, 200), image_format, **({"quality": 95} if image_format == "HEIF" else {}))

    # when it is rasterized
    result = rasterize(data=data, spec=RasterSpec(width_in=6, height_in=4, dpi=20))

    # then the geometry and colours come through
    printed = _decode(result.data)
    assert printed.size == (120, 80)
    assert result.engine == "pyvips"  # a downscale: streamed by libvips, whatever the format
    assert _close(_pixel(printed, (30, 20)), RED, 16)
    assert _close(_pixel(printed, (90, 20)), GREEN, 16)
    assert _close(_pixel(printed, (30, 60)), BLUE, 16)


def test_16_bit_png_greyscale_and_rgb() -> None:
    # given 16-bit greyscale and 16-bit RGB PNGs at 40000 / 65535 (= 155.6 / 255)
    import pyvips

    grey = (pyvips.Image.black(90, 60) + 40000).cast("ushort").copy(interpretation="grey16")
    rgb = (
        pyvips.Image.black(90, 60, bands=3)
        .linear([1, 1, 1], [40000, 10000, 60000])
        .cast("ushort")
        .copy(interpretation="rgb16")
    )
    spec = RasterSpec(width_in=6, height_in=4, dpi=10, output_format="tiff")

    # when they are rasterized
    grey_print = _decode(rasterize(data=grey.pngsave_buffer(), spec=spec).data)
    rgb_print = _decode(rasterize(data=rgb.pngsave_buffer(), spec=spec).data)

    # then the values are scaled to 8 bits, not clipped
    assert grey_print.mode == "RGB"
    assert _close(_pixel(grey_print, (30, 20)), (156, 156, 156), 1)
    assert _close(_pixel(rgb_print, (30, 20)), (156, 39, 233), 1)


def test_cmyk_jpeg_input() -> None:
    # given an untagged CMYK JPEG: left half no ink, right half full cyan
    image = Image.new("CMYK", (300, 200), (0, 0, 0, 0))
    image.paste((255, 0, 0, 0), (150, 0, 300, 200))
    data = _encode(image, quality=95)

    # when it is rasterized
    result = rasterize(data=data, spec=RasterSpec(width_in=6, height_in=4, dpi=20, output_format="tiff"))

    # then it is an sRGB print: paper stays (near) white, cyan has little red and much green and blue
    printed = _decode(result.data)
    assert printed.mode == "RGB"
    assert result.engine == "pyvips"  # a downscale: streamed by libvips, whatever the format
    assert min(_pixel(printed, (20, 40))) > 235
    red, green, blue = _pixel(printed, (100, 40))
    assert red < 60 and green > 140 and blue > 200


@pytest.mark.parametrize("engine", ["pyvips", "pillow"])
def test_greyscale_jpeg_input(engine: Engine) -> None:
    # given a greyscale JPEG with a dark left half
    image = Image.new("L", (600, 400), 200)
    image.paste(40, (0, 0, 300, 400))

    # when it is rasterized
    result = rasterize(
        data=_encode(image, quality=95), spec=RasterSpec(width_in=6, height_in=4, dpi=20), engine=engine
    )

    # then the print is RGB with equal channels
    printed = _decode(result.data)
    assert printed.mode == "RGB"
    assert _close(_pixel(printed, (20, 40)), (40, 40, 40), 2)
    assert _close(_pixel(printed, (100, 40)), (200, 200, 200), 2)


def test_engine_choice_pyvips_for_large_jpeg_pillow_for_enlargement() -> None:
    # given a JPEG larger than the print and the same JPEG printed much larger than it is
    data = _encode(_textured(600, 400))

    # when / then
    assert rasterize(data=data, spec=RasterSpec(width_in=6, height_in=4, dpi=50)).engine == "pyvips"
    assert rasterize(data=data, spec=RasterSpec(width_in=6, height_in=4, dpi=300)).engine == "pillow"


def test_pyvips_and_pillow_engines_agree() -> None:
    # given a textured 1500x1000 JPEG with an embedded P3 profile, printed 4x6 at 100 DPI (shrink-on-load 2)
    data = _encode(_textured(1500, 1000), quality=95, icc_profile=_vips_profile("p3"))
    spec = RasterSpec(width_in=6, height_in=4, dpi=100, output_format="tiff")

    # when both engines render it
    vips_print = _decode(rasterize(data=data, spec=spec, engine="pyvips").data)
    pillow_print = _decode(rasterize(data=data, spec=spec, engine="pillow").data)

    # then they agree to a PSNR well above visible differences
    assert vips_print.size == pillow_print.size == (600, 400)
    assert _psnr(vips_print, pillow_print) >= 40.0


_CORNERS = {"top_left": (220, 20, 20), "top_right": (20, 200, 20), "bottom_left": (20, 20, 220)}


def _upright_landscape() -> Image.Image:
    """A 600x400 photo as the customer sees it: grey, with a coloured square in three corners."""
    image = Image.new("RGB", (600, 400), (128, 128, 128))
    image.paste(_CORNERS["top_left"], (0, 0, 120, 120))
    image.paste(_CORNERS["top_right"], (480, 0, 600, 120))
    image.paste(_CORNERS["bottom_left"], (0, 280, 120, 400))
    return image


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("image_format", ["JPEG", "PNG", "TIFF", "HEIF"])
def test_every_format_prints_upright_in_every_exif_orientation(image_format: str, orientation: int) -> None:
    upright = _upright_landscape()
    transpose = STORED_FOR_ORIENTATION[orientation]
    stored = upright if transpose is None else upright.transpose(transpose)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    stored.save(
        buffer, image_format, exif=exif.tobytes(), **({"quality": 95} if image_format != "PNG" else {})
    )

    result = rasterize(
        data=buffer.getvalue(), spec=RasterSpec(width_in=4, height_in=6, dpi=100, sizing="fit")
    )

    printed = Image.open(io.BytesIO(result.data)).convert("RGB")
    assert printed.size == (600, 400)  # landscape, like the photo the customer sees
    probes = {"top_left": (30, 30), "top_right": (570, 30), "bottom_left": (30, 370)}
    for corner, point in probes.items():
        assert max(abs(a - b) for a, b in zip(_pixel(printed, point), _CORNERS[corner], strict=True)) < 40, (
            image_format,
            orientation,
            corner,
        )


def test_the_same_photo_gives_the_same_raster_bytes_in_any_worker_process() -> None:
    import subprocess
    import sys
    import time

    script = (
        "import hashlib, io, sys\n"
        "from PIL import Image\n"
        "from lab.production.raster import RasterSpec, rasterize\n"
        "buffer = io.BytesIO(); Image.new('RGB', (600, 400), (90, 120, 200)).save(buffer, 'JPEG')\n"
        "spec = RasterSpec(width_in=4, height_in=6, dpi=100)\n"
        "print(hashlib.sha256(rasterize(data=buffer.getvalue(), spec=spec).data).hexdigest())\n"
    )
    digests: list[str] = []
    started = time.monotonic()
    for _ in range(2):  # two worker processes, started more than a second apart (of wall-clock time)
        time.sleep(max(0.0, started + 1.1 - time.monotonic()) if digests else 0.0)
        digests.append(
            subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
        )
    assert digests[0] == digests[1] and len(digests[0].strip()) == 64
