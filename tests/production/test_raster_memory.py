"""A raster worker's peak memory stays within its 200 MiB budget whatever the photo's size: a very large photo
is streamed through libvips row by row, never decoded whole (Pillow's whole decode of a 100 MP PNG peaked at
726-784 MiB). Measured in a fresh process: its VmHWM, the peak of its own memory since exec (ru_maxrss would
also count the test process's memory when the child was forked)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyvips

WORKER_BUDGET_MIB = 200
# In the child: the worker's own imports, then one print; the peak (KiB) covers both.
RASTERIZE_ONE = """
import sys
from pathlib import Path
from lab.production.raster import RasterSpec, rasterize
result = rasterize(data=Path(sys.argv[1]).read_bytes(), spec=RasterSpec(width_in=8, height_in=10))
peak = next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(result.width_px, result.height_px, result.engine, peak)
"""


def _blocks_png(path: Path, *, width: int, height: int) -> None:
    """Flat colour blocks of 128 x 128: a small file (quick to write) whose every pixel is still decoded."""
    xy = pyvips.Image.xyz(width, height)
    cells = (xy[0] >> 7) + (xy[1] >> 7)
    image = ((cells % 7) * 30 + 20).bandjoin([(cells % 5) * 50, (cells % 3) * 80 + 40])
    image.cast("uchar").copy(interpretation="srgb").pngsave(str(path), compression=1)


def test_a_100_megapixel_png_prints_within_the_worker_memory_budget(tmp_path: Path) -> None:
    # given a 100 MP RGB PNG (300 MB of pixels once decoded)
    photo = tmp_path / "panorama.png"
    _blocks_png(photo, width=12250, height=8164)

    # when a fresh worker process prints it 8x10
    completed = subprocess.run(
        [sys.executable, "-c", RASTERIZE_ONE, str(photo)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )

    # then the print is right and the process never held more than its budget
    width, height, engine, peak_kib = completed.stdout.split()
    assert (int(width), int(height), engine) == (3000, 2400, "pyvips")
    assert int(peak_kib) / 1024 <= WORKER_BUDGET_MIB, f"peak RSS {int(peak_kib) / 1024:.0f} MiB"
