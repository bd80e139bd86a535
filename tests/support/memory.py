"""Peak memory of one call, measured in a fresh Python process with Django set up: the growth of the
process's high-water mark (VmHWM, which exec resets; ru_maxrss would carry the test process's own peak into
the child) from just before the call to just after it."""

from __future__ import annotations

import json
import subprocess
import sys

_PRELUDE = """
import io, json, sys
import django
django.setup()
import pyvips
from PIL import Image
from lab.lib import heif_tiles
from lab.orders import imaging
from lab.gate import watermark

def high_water_kib():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])

data = open(sys.argv[1], "rb").read()
base = high_water_kib()
"""
_REPORT = """
print(json.dumps((high_water_kib() - base) / 1024))
"""


def peak_growth_mib(call: str, *, photo: str) -> float:
    """Run `call` (Python statements; `data` holds the bytes of the file `photo`) in a fresh process."""
    command = [sys.executable, "-c", _PRELUDE + call + _REPORT, photo]
    result = subprocess.run(command, capture_output=True, text=True, check=True, timeout=120)
    return float(json.loads(result.stdout.strip().splitlines()[-1]))


WHOLE_DECODE = "with Image.open(io.BytesIO(data)) as image:\n    image.load()\n"


def growth_against_whole_decode_mib(call: str, *, photo: str) -> tuple[float, float]:
    """(Pillow's whole decode of `photo`, then `call` on it): each one's peak growth, in fresh processes, so
    that a test shows its measurement can tell the two apart before it judges `call`."""
    return peak_growth_mib(WHOLE_DECODE, photo=photo), peak_growth_mib(call, photo=photo)
