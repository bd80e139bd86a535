"""`python -m bench`: run every benchmark, each in its own process, and print one table of figure, baseline,
ratio, target and met / not met. Quick arguments by default; `--full` for the documented full runs."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.summary import table_build, table_text

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Benchmark:
    name: str
    module: str
    quick: tuple[str, ...]  # short, but enough samples for a p95 and every target's figure
    full: tuple[str, ...] = ()  # the documented run: each script's own defaults


BENCHMARKS = (
    Benchmark("raster", "bench.raster.run", ("--photos", "6", "--psnr-photos", "1")),
    Benchmark("slips", "bench.slips.run", ("--runs", "40", "--batch-runs", "2")),
    Benchmark("intake", "bench.intake.run", ("--requests", "80", "--rounds", "2")),
    Benchmark("web-memory", "bench.intake.memory", ()),
    Benchmark("audit-gate", "bench.audit.gate_run", ("--calls", "200", "--rounds", "2", "--appends", "100")),
    Benchmark("audit-verify", "bench.audit.verify_run", ("--records", "100000")),
    Benchmark("supervisor", "bench.supervisor.run", ("--runs", "3")),  # 1M jobs even in the quick run
    # 400 prints through 20 minilabs (1.7 prints/s, 4 minutes of orders); --full: 10,000 through 100.
    Benchmark("scale", "bench.scale.run", ("--prints", "400", "--printers", "20")),
    Benchmark("latency", "bench.latency.run", ("--orders", "15", "--warmup", "2")),
)


def run_one(benchmark: Benchmark, *, full: bool, directory: Path) -> dict[str, Any] | None:
    """Run one benchmark script; its own report goes to our stderr, its figures come back as JSON."""
    output = directory / f"{benchmark.name}.json"
    command = [
        sys.executable,
        "-m",
        benchmark.module,
        *(benchmark.full if full else benchmark.quick),
        "--json",
        str(output),
    ]
    print(f"=== {benchmark.name}: {' '.join(command[1:])}", file=sys.stderr, flush=True)
    # The database benchmarks make their own LAB_VAR_DIR under /tmp; demo mode lets the settings generate
    # throw-away keys there instead of asking for production secrets.
    env = {"LAB_DEMO_SECRETS": "true", **os.environ}
    started = time.perf_counter()
    child = subprocess.Popen(command, cwd=ROOT, env=env, stdout=sys.stderr, stderr=sys.stderr)
    try:
        code = child.wait()
    except BaseException:
        # Ctrl-C reached the child too (same process group); SIGTERM did not: pass it on, let it clean up.
        if child.poll() is None:
            child.terminate()
            child.wait(timeout=120)
        raise
    print(f"=== {benchmark.name}: exit {code} after {time.perf_counter() - started:.0f} s", file=sys.stderr)
    if not output.exists():
        return None
    result: dict[str, Any] = json.loads(output.read_text())
    return result


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--full", action="store_true", help="the documented full runs (about 22 minutes)")
    parser.add_argument(
        "--only",
        default="",
        help=f"comma-separated subset of: {', '.join(b.name for b in BENCHMARKS)}",
    )
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument("--json", type=Path, help="also write every benchmark's figures to this file")
    arguments = parser.parse_args()
    chosen = [name for name in arguments.only.split(",") if name]
    unknown = set(chosen) - {b.name for b in BENCHMARKS}
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))

    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    results: dict[str, dict[str, Any] | None] = {}
    with tempfile.TemporaryDirectory(prefix="bench-") as directory:
        for benchmark in BENCHMARKS:
            if not chosen or benchmark.name in chosen:
                results[benchmark.name] = run_one(benchmark, full=arguments.full, directory=Path(directory))
    if arguments.json:
        arguments.json.write_text(json.dumps(results, indent=2))
    print(
        f"{'full' if arguments.full else 'quick'} run, {os.cpu_count()} cores, "
        f"{time.perf_counter() - started:.0f} s; load average before {load_before:.2f}, "
        f"after {os.getloadavg()[0]:.2f}; ratio = ours / baseline, measured in the same run"
    )
    print(table_text(table_build(results), markdown=arguments.markdown))
    failed = [name for name, result in results.items() if result is None]
    if failed:
        print(f"no figures from: {', '.join(failed)} (see the output above)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
