"""Throughput, memory and fidelity of the rasterizer on generated 24 MP camera-like JPEGs, side by side with
a naive Pillow path, in single-threaded worker processes (one per core). `python -m bench.raster.run`."""

from __future__ import annotations

import argparse
import io
import json
import math
import multiprocessing
import multiprocessing.forkserver
import os
import resource
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageChops, ImageCms, ImageFilter, ImageOps

PHOTO_WIDTH, PHOTO_HEIGHT = 6000, 4000  # 24 MP, 3:2 like most camera sensors
BASE_PHOTOS = 4
# (orientation, embedded profile) cycled over the generated files: a third untagged, a third with an
# embedded sRGB profile (bytes different from ours), a third Display P3; every other one stored rotated.
VARIANTS = [(1, None), (6, None), (1, "srgb"), (6, "srgb"), (1, "p3"), (6, "p3")]
DISTINCT_FILES = 12
SIZES = {"4x6": (4.0, 6.0), "8x10": (8.0, 10.0)}


def builtin_profile(name: str) -> bytes:
    """libvips ships compact sRGB and Display P3 matrix profiles; take their bytes."""
    import pyvips

    probe = pyvips.Image.black(1, 1, bands=3).copy(interpretation="srgb").icc_export(output_profile=name)
    return bytes(probe.get("icc-profile-data"))


def camera_like_pixels(seed: int) -> Image.Image:
    """Smooth colour fields, mid-frequency texture, hard-edged shapes and sensor grain (sigma 5)."""
    import pyvips

    bands = []
    for channel in range(3):
        low = pyvips.Image.perlin(PHOTO_WIDTH // 8, PHOTO_HEIGHT // 8, cell_size=96, seed=seed * 31 + channel)
        texture = pyvips.Image.perlin(PHOTO_WIDTH, PHOTO_HEIGHT, cell_size=48, seed=seed * 31 + channel + 10)
        bands.append(low.resize(8, kernel="linear") * 1.6 + texture * 0.5)
    image = bands[0].bandjoin(bands[1:]) * 110 + 128
    shapes = pyvips.Image.perlin(PHOTO_WIDTH // 4, PHOTO_HEIGHT // 4, cell_size=120, seed=seed + 99)
    image = image + (shapes.resize(4, kernel="linear") > 0) / 255.0 * 70 - 35
    image = image + pyvips.Image.gaussnoise(PHOTO_WIDTH, PHOTO_HEIGHT, sigma=5, mean=0, seed=seed)
    pixels = image.cast("uchar").write_to_memory()
    return Image.frombytes("RGB", (PHOTO_WIDTH, PHOTO_HEIGHT), pixels)


def generate_photos(*, directory: Path, count: int, seed: int) -> list[Path]:
    profiles = {"srgb": builtin_profile("srgb"), "p3": builtin_profile("p3")}
    bases = [camera_like_pixels(seed + index) for index in range(min(BASE_PHOTOS, count))]
    files: list[Path] = []
    # 12 distinct files (every base, every variant) are enough; more would only lengthen generation.
    for index in range(min(count, DISTINCT_FILES)):
        orientation, profile_name = VARIANTS[index % len(VARIANTS)]
        exif = Image.Exif()
        exif[0x0112] = orientation
        path = directory / f"photo-{index:02d}.jpg"
        bases[index % len(bases)].save(
            path,
            "JPEG",
            quality=92,
            subsampling=2,  # 4:2:0 as cameras write
            exif=exif.tobytes(),
            icc_profile=profiles[profile_name] if profile_name else None,
        )
        files.append(path)
    return [files[index % len(files)] for index in range(count)]


def naive_print(data: bytes, width_in: float, height_in: float) -> bytes:
    """What a first implementation does: full decode, transpose, full-size LANCZOS, profile, unsharp mask."""
    from lab.production.raster import RasterSpec, target_size

    image = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
    size = target_size(
        spec=RasterSpec(width_in=width_in, height_in=height_in),
        photo_width=image.width,
        photo_height=image.height,
        orientation=1,
    )
    image = ImageOps.fit(image, size, Image.Resampling.LANCZOS)
    embedded = image.info.get("icc_profile")
    if embedded:
        converted = ImageCms.profileToProfile(
            image, io.BytesIO(embedded), ImageCms.createProfile("sRGB"), outputMode="RGB"
        )
        assert converted is not None
        image = converted
    image = image.filter(ImageFilter.UnsharpMask())
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=95, subsampling=0)
    return buffer.getvalue()


def our_print(data: bytes, width_in: float, height_in: float) -> bytes:
    from lab.production.raster import RasterSpec, rasterize

    return rasterize(data=data, spec=RasterSpec(width_in=width_in, height_in=height_in)).data


PATHS: dict[str, Callable[[bytes, float, float], bytes]] = {"naive": naive_print, "ours": our_print}


def _warm_worker() -> None:
    """Import the libraries and build caches before the clock starts, as a long-lived Celery worker has."""
    from lab.production import raster  # noqa: F401

    buffer = io.BytesIO()
    Image.new("RGB", (640, 480), (90, 120, 150)).save(buffer, "JPEG")
    for path in PATHS.values():
        path(buffer.getvalue(), 4.0, 6.0)


def _work(task: tuple[str, str, float, float]) -> tuple[int, int, float]:
    path_name, file_path, width_in, height_in = task
    started = time.perf_counter()
    PATHS[path_name](Path(file_path).read_bytes(), width_in, height_in)
    elapsed = time.perf_counter() - started
    # ru_maxrss is the high-water mark of this process, in KiB on Linux.
    return os.getpid(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, elapsed


@dataclass(frozen=True)
class Run:
    prints_per_second: float
    peak_rss_mib: float
    mean_latency_ms: float


def run_workers(*, path_name: str, files: list[Path], size: tuple[float, float], workers: int) -> Run:
    context = multiprocessing.get_context("forkserver")
    with context.Pool(workers, initializer=_warm_worker) as pool:
        pool.map(time.sleep, [0.2] * workers)  # wait until every worker has finished warming up
        tasks = [(path_name, str(path), size[0], size[1]) for path in files]
        started = time.perf_counter()
        results = pool.map(_work, tasks, chunksize=1)
        wall = time.perf_counter() - started
    peak_by_worker: dict[int, int] = {}
    for pid, peak_kib, _elapsed in results:
        peak_by_worker[pid] = max(peak_by_worker.get(pid, 0), peak_kib)
    return Run(
        prints_per_second=len(files) / wall,
        peak_rss_mib=max(peak_by_worker.values()) / 1024,
        mean_latency_ms=1000 * sum(elapsed for _pid, _peak, elapsed in results) / len(results),
    )


def psnr(first: Image.Image, second: Image.Image) -> float:
    assert first.size == second.size and first.mode == second.mode
    histogram = ImageChops.difference(first, second).histogram()
    squared = sum(count * (value % 256) ** 2 for value, count in enumerate(histogram))
    mse = squared / (first.width * first.height * len(first.getbands()))
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def reference_print(data: bytes, width_in: float, height_in: float) -> Image.Image:
    """Our pipeline with ideal resampling: full-size decode, LANCZOS in 32-bit float, one rounding."""
    from lab.production.imaging.colour import output_profile, to_output_profile
    from lab.production.imaging.geometry import orient, plan_resample
    from lab.production.imaging.pillow_engine import SHARPEN
    from lab.production.imaging.source import open_source, to_working_mode
    from lab.production.raster import RasterSpec, raster_placement

    spec = RasterSpec(width_in=width_in, height_in=height_in)
    source = open_source(data)
    placement = raster_placement(
        spec=spec, photo_width=source.width, photo_height=source.height, orientation=source.orientation
    )
    plan = plan_resample(
        stored_width=source.width,
        stored_height=source.height,
        orientation=source.orientation,
        placement=placement,
    )
    decoded = to_working_mode(source.image.convert(source.image.mode))
    bands = [
        band.convert("F")
        .resize(plan.photo_size, Image.Resampling.LANCZOS, box=plan.box, reducing_gap=None)
        .point(lambda value: value + 0.5)  # F -> L truncates; this makes it round
        .convert("L")
        for band in decoded.split()
    ]
    resampled = Image.merge(decoded.mode, bands).filter(SHARPEN)
    oriented = orient(resampled, orientation=source.orientation)
    return to_output_profile(oriented, embedded_icc=source.icc_profile, output=output_profile(None))


def fidelity(*, files: list[Path], size: tuple[float, float]) -> tuple[float, float, str]:
    """Worst PSNR over the sample: (before JPEG encoding, i.e. TIFF output; after JPEG q95 encoding)."""
    from lab.production.raster import RasterSpec, rasterize

    worst_raster, worst_jpeg, engines = math.inf, math.inf, set()
    for path in files:
        data = path.read_bytes()
        reference = reference_print(data, *size)
        for output_format in ("tiff", "jpeg"):
            spec = RasterSpec(width_in=size[0], height_in=size[1], output_format=output_format)
            result = rasterize(data=data, spec=spec)
            engines.add(result.engine)
            value = psnr(Image.open(io.BytesIO(result.data)).convert("RGB"), reference)
            if output_format == "tiff":
                worst_raster = min(worst_raster, value)
            else:
                worst_jpeg = min(worst_jpeg, value)
    return worst_raster, worst_jpeg, ",".join(sorted(engines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--photos", type=int, default=24, help="prints per size and path (default 24)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2: one per core)")
    parser.add_argument("--psnr-photos", type=int, default=3, help="photos checked against the reference")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    arguments = parser.parse_args()
    # Workers fork from a server started while this process is still small: ru_maxrss survives fork and
    # exec, so workers forked (or spawned) later would report the parent's generated photos as their peak.
    multiprocessing.forkserver.ensure_running()

    with tempfile.TemporaryDirectory(prefix="raster-bench-") as directory:
        started = time.perf_counter()
        files = generate_photos(directory=Path(directory), count=arguments.photos, seed=arguments.seed)
        distinct = sorted(set(files))
        print(
            f"{len(files)} prints per size from {len(distinct)} generated {PHOTO_WIDTH}x{PHOTO_HEIGHT} JPEGs "
            f"(seed {arguments.seed}, {time.perf_counter() - started:.1f} s), {arguments.workers} workers, "
            f"{os.cpu_count()} CPUs, load average before {os.getloadavg()[0]:.2f}"
        )
        header = (
            f"{'size':5} {'naive/s':>8} {'ours/s':>7} {'ratio':>6} {'naive ms':>9} {'ours ms':>8} "
            f"{'naive RSS':>10} {'ours RSS':>9} {'PSNR raster':>12} {'PSNR jpeg':>10} engine"
        )
        print(header)
        print("-" * len(header))
        figures: dict[str, dict[str, float]] = {}
        sample = distinct[: arguments.psnr_photos] if arguments.psnr_photos < 3 else distinct[0:6:2]
        for name, size in SIZES.items():
            naive = run_workers(path_name="naive", files=files, size=size, workers=arguments.workers)
            ours = run_workers(path_name="ours", files=files, size=size, workers=arguments.workers)
            raster_psnr, jpeg_psnr, engines = fidelity(files=sample, size=size)
            figures[name] = {
                "ours_per_s": ours.prints_per_second,
                "naive_per_s": naive.prints_per_second,
                "ours_ms": ours.mean_latency_ms,
                "naive_ms": naive.mean_latency_ms,
                "ours_rss_mib": ours.peak_rss_mib,
                "naive_rss_mib": naive.peak_rss_mib,
                "psnr_raster_db": raster_psnr,
                "psnr_jpeg_db": jpeg_psnr,
            }
            print(
                f"{name:5} {naive.prints_per_second:8.2f} {ours.prints_per_second:7.2f} "
                f"{ours.prints_per_second / naive.prints_per_second:5.2f}x "
                f"{naive.mean_latency_ms:9.0f} {ours.mean_latency_ms:8.0f} "
                f"{naive.peak_rss_mib:7.0f} MiB {ours.peak_rss_mib:5.0f} MiB "
                f"{raster_psnr:9.2f} dB {jpeg_psnr:7.2f} dB {engines}"
            )
        print(f"total {time.perf_counter() - started:.0f} s, load average after {os.getloadavg()[0]:.2f}")
    if arguments.json:
        arguments.json.write_text(json.dumps({"benchmark": "raster", "photos": len(files), "sizes": figures}))


if __name__ == "__main__":
    main()
