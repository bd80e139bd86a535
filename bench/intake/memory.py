"""Peak memory of photo intake's check of one large upload, against Pillow's whole decode in the same run.

Intake (`lab.orders.imaging.inspect_image`) runs in a web process for every upload (in a worker for a photo
sent by URL). Each photo is checked once in a fresh process of its own, forked from a server started while
this process was small, so that each peak RSS is that check's alone: ours (the header read by Pillow, every
pixel decoded by libvips' sequential loaders or, for a HEIC grid, one row of tiles at a time), and the
baseline, `Image.open(...).load()`, the whole decode intake made before.

From the project root: `.venv/bin/python -m bench.intake.memory [--json FILE]`.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import multiprocessing.forkserver
import os
import resource
import tempfile
from collections.abc import Callable
from pathlib import Path

from bench.raster.photos import INTAKE_LIMIT_SIZE, _blocks, _heic

CASES: list[tuple[str, str, Callable[[Path], None]]] = [
    ("JPEG 24 MP", "jpg", lambda path: _blocks(6000, 4000).jpegsave(str(path), Q=90)),
    (
        "JPEG progressive 24 MP",
        "jpg",
        lambda path: _blocks(6000, 4000).jpegsave(str(path), Q=90, interlace=True),
    ),
    ("JPEG 89 MP", "jpg", lambda path: _blocks(*INTAKE_LIMIT_SIZE).jpegsave(str(path), Q=90)),
    ("PNG 89 MP", "png", lambda path: _blocks(*INTAKE_LIMIT_SIZE).pngsave(str(path), compression=1)),
    (
        "TIFF 89 MP",
        "tif",
        lambda path: _blocks(*INTAKE_LIMIT_SIZE).tiffsave(str(path), compression="deflate"),
    ),
    ("HEIC 24 MP, one coded picture", "heic", _heic(6000, 4000)),
    ("HEIC 48 MP, 512 px grid", "heic", _heic(8064, 6048, tile_size=512)),
    ("HEIC 89 MP, 512 px grid", "heic", _heic(*INTAKE_LIMIT_SIZE, tile_size=512)),
]


def _setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lab.settings")
    os.environ.setdefault("LAB_DEMO_SECRETS", "true")
    import django

    django.setup()
    import pillow_heif
    import pyvips

    from lab.lib import heif_tiles
    from lab.orders import imaging

    pillow_heif.register_heif_opener()
    del pyvips, heif_tiles, imaging  # loaded before the base is read: each side pays for its work only


def _check(path: str, side: str) -> tuple[float, float]:
    """(base, peak) RSS in MiB of this fresh process: after its imports and reading the file, and after."""
    import io

    from PIL import Image

    from lab.orders import imaging

    data = Path(path).read_bytes()
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if side == "ours":
        imaging.inspect_image(data=data, max_bytes=len(data), max_pixels=Image.MAX_IMAGE_PIXELS or 0)
    else:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
    return base, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    arguments = parser.parse_args()
    multiprocessing.forkserver.ensure_running()
    context = multiprocessing.get_context("forkserver")
    figures: dict[str, dict[str, float]] = {}
    header = f"{'photo checked at intake':32} {'file':>8} {'ours: peak (+over base)':>24}"
    print(f"{header} {'Pillow whole decode':>22}")
    with tempfile.TemporaryDirectory(prefix="intake-memory-") as directory:
        for name, suffix, write in CASES:
            path = Path(directory) / f"photo.{suffix}"
            write(path)
            sides = {}
            for side in ("ours", "pillow"):
                with context.Pool(1, initializer=_setup) as pool:
                    sides[side] = pool.apply(_check, (str(path), side))
            (ours_base, ours_peak), (pillow_base, pillow_peak) = sides["ours"], sides["pillow"]
            figures[name] = {
                "file_mib": path.stat().st_size / 2**20,
                "ours_peak_mib": ours_peak,
                "ours_over_base_mib": ours_peak - ours_base,
                "pillow_peak_mib": pillow_peak,
                "pillow_over_base_mib": pillow_peak - pillow_base,
            }
            line = f"{name:32} {path.stat().st_size / 2**20:5.1f} MB"
            line += f" {ours_peak:10.0f} MiB (+{ours_peak - ours_base:4.0f})"
            print(f"{line} {pillow_peak:10.0f} MiB (+{pillow_peak - pillow_base:4.0f})", flush=True)
            path.unlink()
    if arguments.json:
        arguments.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
