"""Intake checks a large photo holding a few rows, not the photo: its peak memory, measured in a fresh
process against Pillow's whole decode of the same photo (what intake did before), so that the test can tell
the two apart. The peak is the process's own high-water mark (VmHWM, which exec resets; ru_maxrss would
carry the test process's own peak into the child)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

_CHECK = """
import io, json, sys
import django
django.setup()
import pyvips
from PIL import Image
from lab.lib import heif_tiles
from lab.orders import imaging
def high_water_kib():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
data = open(sys.argv[1], "rb").read()
base = high_water_kib()
if sys.argv[2] == "intake":
    imaging.inspect_image(data=data, max_bytes=len(data), max_pixels=Image.MAX_IMAGE_PIXELS)
else:
    with Image.open(io.BytesIO(data)) as image:
        image.load()
print(json.dumps((high_water_kib() - base) / 1024))
"""


def _growth_mib(path: Path, side: str) -> float:
    command = [sys.executable, "-c", _CHECK, str(path), side]
    result = subprocess.run(command, capture_output=True, text=True, check=True, timeout=120)
    return float(json.loads(result.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("image_format", ["png", "jpeg"])
def test_intake_checks_a_40_mp_photo_in_a_fraction_of_its_decoded_size(
    tmp_path: Path, image_format: str
) -> None:
    import pyvips

    # given a 40 MP photo (120 MB of decoded pixels)
    xy = pyvips.Image.xyz(7740, 5160)
    cells = (xy[0] / 97).floor() + (xy[1] / 89).floor()
    pixels = ((cells % 7) * 30 + 20).bandjoin([(cells % 5) * 50, (cells % 3) * 100 + 40]).cast("uchar")
    path = tmp_path / f"photo.{image_format}"
    if image_format == "png":
        pixels.pngsave(str(path), compression=1)
    else:
        pixels.jpegsave(str(path), Q=90)

    # when intake checks it, then its process grows by less than half of the decoded photo, where a whole
    # decode (measured the same way, same photo) grows by at least the photo
    assert _growth_mib(path, "pillow") > 110
    assert _growth_mib(path, "intake") < 60
