"""The gate's preview of a large photo is made holding a few rows, not the photo: a technician's preview of
an 89 MP PNG took ~1.1 GiB of a web process before. Measured in a fresh process against Pillow's whole
decode of the same photo, so that the test can tell the two apart (tests/support/memory.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.images import large_blocks
from tests.support.memory import peak_growth_mib

WHOLE_DECODE = "with Image.open(io.BytesIO(data)) as image:\n    image.load()\n"
PREVIEW = "watermark.preview_render(data, stamp='technician 2026-12-04 22:00Z')\n"


@pytest.mark.parametrize("image_format", ["png", "tiff"])
def test_a_preview_of_a_40_mp_photo_takes_a_fraction_of_its_decoded_size(
    tmp_path: Path, image_format: str
) -> None:
    # given a 40 MP photo (120 MB of decoded pixels)
    photo = large_blocks(tmp_path, image_format=image_format)

    # when its watermarked preview is made, then the process grows by well under the decoded photo (the
    # reduction holds a band of rows per libvips thread: ~60 MiB here), where a whole decode (measured the
    # same way, same photo) grows by at least the photo, and the preview made from it grew ~4x that
    assert peak_growth_mib(WHOLE_DECODE, photo=photo) > 110
    assert peak_growth_mib(PREVIEW, photo=photo) < 90
