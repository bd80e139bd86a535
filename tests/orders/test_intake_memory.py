"""Intake checks a large photo holding a few rows, not the photo: its peak memory, measured in a fresh
process against Pillow's whole decode of the same photo (what intake did before), so that the test can tell
the two apart (tests/support/memory.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.images import large_blocks
from tests.support.memory import peak_growth_mib

WHOLE_DECODE = "with Image.open(io.BytesIO(data)) as image:\n    image.load()\n"
INTAKE = "imaging.inspect_image(data=data, max_bytes=len(data), max_pixels=Image.MAX_IMAGE_PIXELS)\n"


@pytest.mark.parametrize("image_format", ["png", "jpeg"])
def test_intake_checks_a_40_mp_photo_in_a_fraction_of_its_decoded_size(
    tmp_path: Path, image_format: str
) -> None:
    # given a 40 MP photo (120 MB of decoded pixels)
    photo = large_blocks(tmp_path, image_format=image_format)

    # when intake checks it, then its process grows by less than half of the decoded photo, where a whole
    # decode (measured the same way, same photo) grows by at least the photo
    assert peak_growth_mib(WHOLE_DECODE, photo=photo) > 110
    assert peak_growth_mib(INTAKE, photo=photo) < 60
