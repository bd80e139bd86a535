"""The small upright copy of a photo the gate's preview is made from (lab/production/imaging/thumbnail.py):
upright in every EXIF orientation, never larger than asked nor enlarged, RGB from any accepted mode."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from lab.production.imaging.thumbnail import upright_thumbnail
from tests.support.images import STORED_FOR_ORIENTATION, heic_bytes

RED, BLUE, GREY = (220, 30, 30), (30, 30, 220), (128, 128, 128)


def _upright() -> Image.Image:
    """1200x800 grey, red in the top-left corner, blue in the bottom-right one."""
    image = Image.new("RGB", (1200, 800), GREY)
    image.paste(RED, (0, 0, 300, 200))
    image.paste(BLUE, (900, 600, 1200, 800))
    return image


def _near(pixel: object, colour: tuple[int, int, int]) -> bool:
    assert isinstance(pixel, tuple)
    return max(abs(int(a) - b) for a, b in zip(pixel, colour, strict=True)) < 40


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("image_format", ["JPEG", "PNG", "TIFF"])
def test_the_thumbnail_is_upright_in_every_orientation(image_format: str, orientation: int) -> None:
    transpose = STORED_FOR_ORIENTATION[orientation]
    stored = _upright() if transpose is None else _upright().transpose(transpose)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    stored.save(buffer, image_format, exif=exif.tobytes())

    thumbnail = upright_thumbnail(buffer.getvalue(), long_side=300)

    assert (thumbnail.mode, thumbnail.size) == ("RGB", (300, 200))
    assert _near(thumbnail.getpixel((20, 20)), RED), (image_format, orientation)
    assert _near(thumbnail.getpixel((280, 180)), BLUE), (image_format, orientation)


def test_a_small_photo_is_not_enlarged_and_cmyk_and_grey_come_out_rgb() -> None:
    cmyk, grey = io.BytesIO(), io.BytesIO()
    Image.new("CMYK", (200, 100), (0, 255, 255, 0)).save(cmyk, "JPEG")
    Image.new("L", (100, 150), 90).save(grey, "PNG")

    from_cmyk = upright_thumbnail(cmyk.getvalue(), long_side=512)
    from_grey = upright_thumbnail(grey.getvalue(), long_side=512)

    assert (from_cmyk.mode, from_cmyk.size) == ("RGB", (200, 100))
    assert _near(from_cmyk.getpixel((100, 50)), (255, 0, 0))
    assert (from_grey.mode, from_grey.size, from_grey.getpixel((50, 75))) == ("RGB", (100, 150), (90, 90, 90))


def test_a_heic_grid_photo_gives_its_thumbnail() -> None:
    thumbnail = upright_thumbnail(heic_bytes(1100, 700, tile_size=256), long_side=512)

    assert (thumbnail.mode, thumbnail.size) == ("RGB", (512, 326))
    assert _near(thumbnail.getpixel((256, 163)), (60, 160, 60))
