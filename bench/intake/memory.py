"""Peak memory of what a web process does with one large photo, against Pillow's whole decode in the same run.

Intake's check (`lab.orders.imaging.inspect_image`, for every upload; in a worker for a photo sent by URL)
and the gate's watermarked preview (`lab.gate.watermark.preview_render`, for a technician's view). Each is
run once per photo in a fresh process of its own, forked from a server started while this process was
small, so that each peak RSS is that call's alone: ours (every pixel decoded by libvips' sequential loaders,
JPEGs shrunk on load for the preview, a HEIC grid one row of tiles at a time), and the baseline,
`Image.open(...).load()`, Pillow's whole decode, which both made before (the preview then also turned and
converted whole copies).

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
        "PNG interlaced 89 MP (as sent)",
        "png",
        lambda path: _blocks(*INTAKE_LIMIT_SIZE).pngsave(str(path), compression=1, interlace=True),
    ),
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

    from lab.gate import watermark
    from lab.lib import heif_tiles
    from lab.orders import imaging

    pillow_heif.register_heif_opener()
    del pyvips, heif_tiles, imaging, watermark  # loaded before the base is read: each side pays its own work


def _check(path: str, side: str) -> tuple[float, float]:
    """(base, peak) RSS in MiB of this fresh process: after its imports and reading the file, and after."""
    import io

    from PIL import Image

    from lab.gate import watermark
    from lab.orders import imaging

    data = Path(path).read_bytes()
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if side == "intake":
        imaging.inspect_image(data=data, max_bytes=len(data), max_pixels=Image.MAX_IMAGE_PIXELS or 0)
    elif side == "preview":
        watermark.preview_render(data, stamp="technician 2026-12-04 22:00Z")
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
    header = f"{'photo':32} {'file':>8} {'intake: peak (+growth)':>24} {'preview: peak (+growth)':>24}"
    print(f"{header} {'Pillow whole decode':>22}")
    with tempfile.TemporaryDirectory(prefix="intake-memory-") as directory:
        for name, suffix, write in CASES:
            path = Path(directory) / f"photo.{suffix}"
            write(path)
            sides = {}
            for side in ("intake", "preview", "pillow"):
                with context.Pool(1, initializer=_setup) as pool:
                    sides[side] = pool.apply(_check, (str(path), side))
            figures[name] = {"file_mib": path.stat().st_size / 2**20}
            line = f"{name:32} {path.stat().st_size / 2**20:5.1f} MB"
            for side, (base, peak) in sides.items():
                figures[name] |= {f"{side}_peak_mib": peak, f"{side}_growth_mib": peak - base}
                line += f" {peak:14.0f} MiB (+{peak - base:4.0f})"
            print(line, flush=True)
            path.unlink()
    if arguments.json:
        worst = {
            f"worst_{side}_growth_mib": max(case[f"{side}_growth_mib"] for case in figures.values())
            for side in ("intake", "preview", "pillow")
        }
        arguments.json.write_text(json.dumps({"photos": figures, **worst}, indent=2))


if __name__ == "__main__":
    main()
