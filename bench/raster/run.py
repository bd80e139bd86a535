"""Throughput, memory and fidelity of the rasterizer on generated 24 MP JPEGs, side by side with a naive
Pillow path, a plain pyvips pipeline and the decode alone, in single-threaded worker processes (one per
core); and peak memory on very large photos of every format. `python -m bench.raster.run`."""

from __future__ import annotations

import argparse
import io
import json
import math
import multiprocessing
import multiprocessing.forkserver
import os
import resource
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageChops

from bench.raster.paths import DECODER, PATHS, decoder_pick, reference_print, shrink_factor_for
from bench.raster.photos import (
    BIG_CASES,
    PHOTO_HEIGHT,
    PHOTO_WIDTH,
    fidelity_sample,
    generate_photos,
)

SIZES = {"4x6": (4.0, 6.0), "8x10": (8.0, 10.0)}
BIG_PRINT = (8.0, 10.0)  # the larger print: more output pixels held at once


def _warm_worker(decoder: str, path_name: str) -> None:
    """Import the path's libraries and build its caches before the clock starts, as a long-lived Celery
    worker has; only that path's, so that each pool's peak RSS is its own."""
    DECODER["name"] = decoder
    buffer = io.BytesIO()
    Image.new("RGB", (640, 480), (90, 120, 150)).save(buffer, "JPEG")
    PATHS[path_name](buffer.getvalue(), 4.0, 6.0)


def _work(task: tuple[str, str, float, float]) -> tuple[int, int, float]:
    path_name, file_path, width_in, height_in = task
    data = Path(file_path).read_bytes()
    started = time.perf_counter()
    PATHS[path_name](data, width_in, height_in)
    elapsed = time.perf_counter() - started
    # ru_maxrss is the high-water mark of this process, in KiB on Linux.
    return os.getpid(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, elapsed


@dataclass(frozen=True)
class Run:
    prints_per_second: float
    peak_rss_mib: float
    mean_latency_ms: float


def run_workers(
    *, path_name: str, files: list[Path], size: tuple[float, float], workers: int, decoder: str
) -> Run:
    context = multiprocessing.get_context("forkserver")
    with context.Pool(workers, initializer=_warm_worker, initargs=(decoder, path_name)) as pool:
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


def median_run(runs: list[Run]) -> Run:
    return Run(
        prints_per_second=statistics.median(run.prints_per_second for run in runs),
        peak_rss_mib=max(run.peak_rss_mib for run in runs),
        mean_latency_ms=statistics.median(run.mean_latency_ms for run in runs),
    )


def psnr(first: Image.Image, second: Image.Image) -> float:
    assert first.size == second.size and first.mode == second.mode
    histogram = ImageChops.difference(first, second).histogram()
    squared = sum(count * (value % 256) ** 2 for value, count in enumerate(histogram))
    mse = squared / (first.width * first.height * len(first.getbands()))
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


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
            print(f"  PSNR {path.name} {size[0]:g}x{size[1]:g} {output_format}: {value:.2f} dB")
            if output_format == "tiff":
                worst_raster = min(worst_raster, value)
            else:
                worst_jpeg = min(worst_jpeg, value)
    return worst_raster, worst_jpeg, ",".join(sorted(engines))


def _big_work(file_path: str) -> tuple[int, float, int]:
    from lab.production.raster import RasterSpec, rasterize

    data = Path(file_path).read_bytes()
    started = time.perf_counter()
    result = rasterize(data=data, spec=RasterSpec(width_in=BIG_PRINT[0], height_in=BIG_PRINT[1]))
    assert result.data
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.perf_counter() - started, len(data)


def big_photos(*, directory: Path) -> dict[str, dict[str, float]]:
    """Each very large photo printed 8x10 in a fresh worker of its own: its peak RSS, time, file size."""
    context = multiprocessing.get_context("forkserver")
    figures: dict[str, dict[str, float]] = {}
    print(f"{'big photo, printed 8x10':42} {'file':>8} {'seconds':>8} {'peak RSS':>9}")
    for case in BIG_CASES:
        path = directory / f"big.{case.suffix}"
        case.write(path)
        with context.Pool(1, initializer=_warm_worker, initargs=(DECODER["name"], "ours")) as pool:
            peak_kib, seconds, size = pool.apply(_big_work, (str(path),))
        path.unlink()
        figures[case.name] = {"rss_mib": peak_kib / 1024, "seconds": seconds, "file_mib": size / 2**20}
        print(f"{case.name:42} {size / 2**20:5.1f} MB {seconds:8.1f} {peak_kib / 1024:5.0f} MiB")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--photos", type=int, default=24, help="prints per size and path (default 24)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2: one per core)")
    parser.add_argument("--psnr-photos", type=int, default=3, help="photos checked against the reference")
    parser.add_argument("--rounds", type=int, default=1, help="runs per path and size; the median is kept")
    parser.add_argument("--no-big", action="store_true", help="skip the very large photos (peak memory)")
    parser.add_argument("--big-only", action="store_true", help="only the very large photos (peak memory)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    arguments = parser.parse_args()
    # Workers fork from a server started while this process is still small: ru_maxrss survives fork and
    # exec, so workers forked (or spawned) later would report the parent's generated photos as their peak.
    multiprocessing.forkserver.ensure_running()
    if arguments.big_only:
        with tempfile.TemporaryDirectory(prefix="raster-bench-") as directory:
            big_photos(directory=Path(directory))
        return

    with tempfile.TemporaryDirectory(prefix="raster-bench-") as directory:
        started = time.perf_counter()
        files = generate_photos(directory=Path(directory), count=arguments.photos, seed=arguments.seed)
        distinct = sorted(set(files))
        print(
            f"{len(files)} prints per size from {len(distinct)} generated {PHOTO_WIDTH}x{PHOTO_HEIGHT} JPEGs "
            f"(seed {arguments.seed}, {time.perf_counter() - started:.1f} s), {arguments.workers} workers, "
            f"{os.cpu_count()} CPUs, load average before {os.getloadavg()[0]:.2f}"
        )
        samples = [
            (distinct[0].read_bytes(), shrink_factor_for(distinct[0].read_bytes(), *size))
            for size in SIZES.values()
        ]
        decoders = decoder_pick(samples)
        decoder = next(iter(decoders))
        print(
            "decode-bound decoder (CPU ms per decode): "
            + ", ".join(f"{n} {ms:.0f}" for n, ms in decoders.items())
        )
        header = (
            f"{'size':5} {'naive/s':>8} {'pyvips/s':>9} {'decode/s':>9} {'ours/s':>7} {'/decode':>8} "
            f"{'/pyvips':>8} {'ours ms':>8} {'naive RSS':>10} {'ours RSS':>9} {'PSNR raster':>12} "
            f"{'PSNR jpeg':>10}"
        )
        figures: dict[str, dict[str, float]] = {}
        sample = fidelity_sample(distinct, arguments.psnr_photos)
        lines = []
        for name, size in SIZES.items():
            runs: dict[str, list[Run]] = {path_name: [] for path_name in PATHS}
            for _round in range(arguments.rounds):
                for path_name in PATHS:
                    runs[path_name].append(
                        run_workers(
                            path_name=path_name,
                            files=files,
                            size=size,
                            workers=arguments.workers,
                            decoder=decoder,
                        )
                    )
            naive, pyvips, decode, ours = (median_run(runs[path_name]) for path_name in PATHS)
            raster_psnr, jpeg_psnr, _engines = fidelity(files=sample, size=size)
            figures[name] = {
                "ours_per_s": ours.prints_per_second,
                "naive_per_s": naive.prints_per_second,
                "pyvips_per_s": pyvips.prints_per_second,
                "decode_bound_per_s": decode.prints_per_second,
                "ours_ms": ours.mean_latency_ms,
                "naive_ms": naive.mean_latency_ms,
                "pyvips_ms": pyvips.mean_latency_ms,
                "decode_ms": decode.mean_latency_ms,
                "ours_rss_mib": ours.peak_rss_mib,
                "naive_rss_mib": naive.peak_rss_mib,
                "pyvips_rss_mib": pyvips.peak_rss_mib,
                "psnr_raster_db": raster_psnr,
                "psnr_jpeg_db": jpeg_psnr,
            }
            lines.append(
                f"{name:5} {naive.prints_per_second:8.2f} {pyvips.prints_per_second:9.2f} "
                f"{decode.prints_per_second:9.2f} {ours.prints_per_second:7.2f} "
                f"{ours.prints_per_second / decode.prints_per_second:7.2f}x "
                f"{ours.prints_per_second / pyvips.prints_per_second:7.2f}x {ours.mean_latency_ms:8.0f} "
                f"{naive.peak_rss_mib:6.0f} MiB {ours.peak_rss_mib:5.0f} MiB "
                f"{raster_psnr:9.2f} dB {jpeg_psnr:7.2f} dB"
            )
        print(header)
        print("-" * len(header))
        print("\n".join(lines))
        print(f"load average after the throughput runs {os.getloadavg()[0]:.2f}")
        big = {} if arguments.no_big else big_photos(directory=Path(directory))
        print(f"total {time.perf_counter() - started:.0f} s, load average after {os.getloadavg()[0]:.2f}")
    if arguments.json:
        report: dict[str, object] = {
            "benchmark": "raster",
            "photos": len(files),
            "decoder": decoder,
            "sizes": figures,
        }
        if big:
            report["big"] = big
            report["big_worst_rss_mib"] = max(case["rss_mib"] for case in big.values())
        arguments.json.write_text(json.dumps(report))


if __name__ == "__main__":
    main()
