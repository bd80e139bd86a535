"""What a web process does with one large photo — intake's check of an upload, the gate's watermarked
preview of it — holds a few rows, not the photo. Each is measured in a fresh process against Pillow's whole
decode of the same photo (what both did before), so that the test shows it can tell the two apart
(tests/support/memory.py). Before: intake's check grew by ~154 MiB for these 40 MP photos, the preview by
~460 (it also turned and converted whole copies). A PNG written by Pillow (no eXIf chunk before its pixels)
was decoded whole, twice, by Pillow's getexif(): a 713 KB one of 177 MP peaked at 1.4 GiB."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from tests.support.images import large_blocks
from tests.support.memory import growth_against_whole_decode_mib

INTAKE = "imaging.inspect_image(data=data, max_bytes=len(data), max_pixels=Image.MAX_IMAGE_PIXELS)\n"
PREVIEW = "watermark.preview_render(data, stamp='technician 2026-12-04 22:00Z')\n"


@pytest.mark.parametrize(
    ("call", "image_format", "limit_mib"),
    [
        pytest.param(INTAKE, "png", 60, id="intake-png"),
        pytest.param(INTAKE, "png-by-pillow", 60, id="intake-png-by-pillow"),
        pytest.param(INTAKE, "jpeg", 60, id="intake-jpeg"),
        # the preview's reduction holds a band of rows per libvips thread: ~60 MiB here
        pytest.param(PREVIEW, "png", 90, id="preview-png"),
        pytest.param(PREVIEW, "tiff", 90, id="preview-tiff"),
    ],
)
def test_a_40_mp_photo_costs_a_web_process_a_fraction_of_its_decoded_size(
    tmp_path: Path, call: str, image_format: str, limit_mib: int
) -> None:
    # given a 40 MP photo (120 MB of decoded pixels)
    if image_format == "png-by-pillow":
        photo = _png_written_by_pillow(tmp_path)
    else:
        photo = large_blocks(tmp_path, image_format=image_format)

    # when it is checked or previewed, then the process grows by well under the decoded photo, where a
    # whole decode (measured the same way, same photo) grows by at least the photo
    whole, ours = growth_against_whole_decode_mib(call, photo=photo)
    assert (whole > 110, ours < limit_mib) == (True, True), (whole, ours)


def _png_written_by_pillow(directory: Path, width: int = 7740, height: int = 5160) -> str:
    """A 40 MP PNG as Pillow writes one (libvips writes an eXIf chunk before the pixels, Pillow none)."""
    image = Image.new("RGB", (width, height), (20, 140, 200))
    image.paste((200, 60, 20), (0, 0, width // 3, height // 2))
    path = directory / "pillow.png"
    image.save(path, "PNG", compress_level=1)
    return str(path)
