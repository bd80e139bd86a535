"""Scale benchmark: a sustained run of paid 4x6 orders through N simulated hot-folder minilabs on one machine,
with real gunicorn, Celery workers and beat on PostgreSQL + Redis; samples throughput, queue depth, latency,
memory and CPU per process and per stage; writes a CSV, a PNG plot and a summary.
Run: .venv/bin/python -m bench.scale.run (10,000 prints on 100 minilabs; see bench/scale/README.md)"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import signal
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.intake.run import http_call, photo_jpeg, wait_until
from bench.scale.analysis import lab_backlog, summarize
from bench.scale.feeder import Customer, Feed, customer_register, photo_upload
from bench.scale.lab import WEBHOOK_SECRET, Lab, database_url, lab_running
from bench.scale.plot import plot_write
from bench.scale.report import report_text
from bench.scale.sampler import Sampler

ROOT = Path(__file__).resolve().parents[2]


def customers_register(arguments: argparse.Namespace, lab: Lab) -> list[Customer]:
    wait_until(lambda: _healthz(lab.web_port), timeout=60, what="gunicorn /healthz")
    return [customer_register(port=lab.web_port, index=index) for index in range(arguments.customers)]


def photos_upload(lab: Lab, customers: list[Customer], photos: list[bytes]) -> float:
    """Each customer uploads each photo (a new asset, its own data key); returns the seconds per upload."""
    started = time.perf_counter()
    for customer in customers:
        customer.asset_ids = [photo_upload(port=lab.web_port, token=customer.token, photo=p) for p in photos]
    return (time.perf_counter() - started) / (len(customers) * len(photos))


def _healthz(port: int) -> bool:
    try:
        http_call(port=port, method="GET", path="/healthz", expect=200)
    except OSError:
        return False
    return True


@dataclass
class Outcome:
    rows: list[dict[str, float]]
    jobs: list[dict[str, Any]]
    feed_seconds: float
    drained: bool
    upload_seconds: float
    upload_web_cpu_s: float
    lag_max_s: float
    request_p50_s: float


def run(arguments: argparse.Namespace, lab: Lab) -> Outcome:
    photos = [photo_jpeg(seed=seed) for seed in range(arguments.photos)]
    groups = {name: child.process.pid for name, child in lab.children.items()}
    sampler = Sampler(
        database_url=database_url(arguments),
        redis_url=arguments.redis,
        groups=groups,
        meter_dir=lab.var_dir / "meters",
        device_dir=lab.var_dir / "device",
        storage_dir=lab.var_dir / "storage",
    )
    try:
        customers = customers_register(arguments, lab)
        web_cpu_before = sampler.sample(fed_orders=0, fed_prints=0)["cpu_s_web"]
        upload_seconds = photos_upload(lab, customers, photos)
        uploads = len(customers) * len(photos)
        upload_web_cpu = (sampler.sample(fed_orders=0, fed_prints=0)["cpu_s_web"] - web_cpu_before) / uploads
        orders = math.ceil(arguments.prints / arguments.prints_per_order)
        feed = Feed(
            port=lab.web_port,
            customers=customers,
            orders=orders,
            prints_per_order=arguments.prints_per_order,
            orders_per_s=arguments.rate / arguments.prints_per_order,
            webhook_secret=WEBHOOK_SECRET,
            fresh_photos=photos if arguments.fresh_uploads else None,
        )
        print(
            f"  set up: {uploads} photos uploaded, {upload_seconds * 1000:.0f} ms each; feeding {orders}"
            f" orders of {arguments.prints_per_order} prints at {arguments.rate:.2f} prints/s",
            file=sys.stderr,
            flush=True,
        )
        sampler.started_at = time.time()
        feed.start(threads=arguments.clients)
        rows: list[dict[str, float]] = []
        feed_seconds = 0.0
        deadline = math.inf
        next_progress = 0.0
        while True:
            row = sampler.sample(fed_orders=feed.placed, fed_prints=feed.prints_placed)
            row["feed_lag_s"] = feed.latest_lag_s
            rows.append(row)
            if row["t"] >= next_progress:
                _progress(row)
                next_progress += arguments.progress_seconds
            if feed.failures:
                raise feed.failures[0]
            if feed.finished and not feed_seconds:
                feed_seconds = row["t"]
                deadline = time.time() + arguments.drain_timeout
            if feed_seconds and row["printed_copies"] >= feed.prints_placed:
                break
            if time.time() > deadline:
                break
            for child in lab.children.values():
                if not child.is_running():
                    raise RuntimeError(f"{child.name} exited:\n{child.log_tail()}")
            time.sleep(arguments.sample_seconds)
        jobs = [asdict(job) for job in sorted(sampler.jobs.values(), key=lambda job: job.printed)]
        times = sorted(feed.request_seconds)
        return Outcome(
            rows=rows,
            jobs=jobs,
            feed_seconds=feed_seconds,
            drained=rows[-1]["printed_copies"] >= feed.prints_placed,
            upload_seconds=upload_seconds,
            upload_web_cpu_s=upload_web_cpu,
            lag_max_s=feed.max_lag_s,
            request_p50_s=times[len(times) // 2] if times else math.nan,
        )
    finally:
        sampler.close()


def _progress(row: dict[str, float]) -> None:
    print(
        f"  t={row['t']:6.0f}s fed {row['fed_prints']:6.0f} printed {row['printed_copies']:6.0f}"
        f" at minilabs {row['jobs_submitted']:4.0f} in lab {lab_backlog(row):4.0f}"
        f" p95 {row['latency_p95_s']:5.1f}s load {row['load1']:.2f}",
        file=sys.stderr,
        flush=True,
    )


def outputs_write(arguments: argparse.Namespace, outcome: Outcome, result: dict[str, Any]) -> dict[str, Path]:
    arguments.out.mkdir(parents=True, exist_ok=True)
    stem = arguments.out / f"scale-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    paths = {
        "samples": stem.with_suffix(".csv"),
        "jobs": Path(f"{stem}-jobs.csv"),
        "plot": stem.with_suffix(".png"),
    }
    columns = sorted(
        {key for row in outcome.rows for key in row}, key=lambda key: (key not in ("t", "unix"), key)
    )
    with paths["samples"].open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(outcome.rows)
    if outcome.jobs:
        with paths["jobs"].open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(outcome.jobs[0]))
            writer.writeheader()
            writer.writerows(outcome.jobs)
    plot_write(
        paths["plot"],
        outcome.rows,
        outcome.jobs,
        arrival_per_s=arguments.rate,
        title=(
            f"{arguments.prints} 4x6 prints, {arguments.printers} minilabs x {arguments.print_seconds:g} s,"
            f" {arguments.layout} layout, poll {arguments.poll_seconds:g} s, {os.cpu_count()} cores"
        ),
        steady=(result["window"]["start_s"], result["window"]["end_s"]),
        roles=result["config"]["roles"],
    )
    return paths


def without_nan(value: Any) -> Any:
    """NaN (a figure with nothing to measure, e.g. no job printed in the window) as JSON null: the table then
    says `not measured` instead of comparing NaN with a target."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: without_nan(item) for key, item in value.items()}
    if isinstance(value, list):
        return [without_nan(item) for item in value]
    return value


def cpu_calibration_ms() -> float:
    """CPU milliseconds of a fixed pure-Python loop: on a shared or throttled machine every CPU figure of the
    run is inflated by about the ratio of this to a quiet machine's (about 150 ms on a current x86 core)."""
    started = time.process_time()
    sum(number * number for number in range(2_000_000))
    return 1000 * (time.process_time() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add = parser.add_argument
    add("--prints", type=int, default=10000, help="4x6 prints to feed (default 10,000)")
    add("--printers", type=int, default=100, help="simulated hot-folder minilabs (default 100)")
    add("--print-seconds", type=float, default=12.0, help="a minilab's seconds per print (default 12)")
    add(
        "--rate",
        type=float,
        help="arrival rate, prints/s (default: the minilabs' capacity, printers / print s)",
    )
    add("--prints-per-order", type=int, default=4, help="4x6 items of one copy per order (default 4)")
    add("--customers", type=int, default=10, help="customers the orders rotate over (default 10)")
    add("--photos", type=int, default=4, help="distinct 12 MP photos; each customer uploads each (default 4)")
    add("--fresh-uploads", action="store_true", help="every order uploads its photos first (CPU and disk!)")
    add(
        "--layout",
        choices=("deploy", "shared"),
        default="deploy",
        help="workers as deploy/ (default: a default and a raster worker) or shared (-Q default,raster)",
    )
    add("--raster-concurrency", type=int, default=2, help="raster worker processes (default 2: the cores)")
    add("--default-concurrency", type=int, default=2, help="default-queue processes (default 2, as deploy/)")
    add("--web-workers", type=int, default=2, help="gunicorn workers (default 2)")
    add("--clients", type=int, default=4, help="client threads placing orders (default 4)")
    add("--poll-seconds", type=float, default=10.0, help="PRODUCTION_POLL_SECONDS (default 10, the lab's)")
    add("--printer-events", action="store_true", help="also run `manage.py printer_events` (the listener)")
    add("--conn-max-age", type=int, default=600, help="DATABASE_CONN_MAX_AGE of every process (default 600)")
    add("--celery-db-reuse", type=int, help="set CELERY_DB_REUSE_MAX in the workers (see probe.py)")
    add("--sample-seconds", type=float, default=5.0, help="seconds between samples (default 5)")
    add("--warmup", type=float, help="seconds left out of the figures at the start (default max(60, 10%%))")
    add(
        "--drain-timeout", type=float, default=300.0, help="seconds to wait for the last prints (default 300)"
    )
    add("--progress-seconds", type=float, default=30.0, help="seconds between progress lines (default 30)")
    add("--postgres", default="postgres://postgres@127.0.0.1:5432", help="PostgreSQL server URL, no database")
    add("--database", default="printlab_bench_scale", help="database to create; dropped before and after")
    add("--redis", default="redis://127.0.0.1:6379/10", help="broker: Redis URL with its own db number")
    add("--out", type=Path, default=ROOT / "var" / "bench-scale", help="folder for the CSVs and the PNG")
    add("--keep-logs", action="store_true", help="copy every process's log into --out")
    add("--json", type=Path, help="also write the figures as JSON here")
    arguments = parser.parse_args()
    if arguments.rate is None:
        arguments.rate = arguments.printers / arguments.print_seconds
    if min(arguments.prints, arguments.printers, arguments.prints_per_order, arguments.photos) < 1:
        parser.error("--prints, --printers, --prints-per-order and --photos must be at least 1")
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    signal.signal(signal.SIGINT, signal.default_int_handler)

    load_before = os.getloadavg()[0]
    calibration_before = cpu_calibration_ms()
    started = time.perf_counter()
    with lab_running(arguments) as lab:
        print(f"  lab up in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
        roles = [name for name in lab.children if name != "device"]
        outcome = run(arguments, lab)
    warmup = arguments.warmup if arguments.warmup is not None else max(60.0, 0.1 * outcome.feed_seconds)
    end = outcome.feed_seconds or outcome.rows[-1]["t"]
    summary = summarize(
        outcome.rows,
        outcome.jobs,
        start=warmup,
        end=end,
        arrival_per_s=arguments.rate,
        printers=arguments.printers,
        prints_per_order=arguments.prints_per_order,
        roles=roles,
    )
    last = outcome.rows[-1]
    summary["figures"]["all_printed_once"] = (
        outcome.drained
        and last["fed_prints"] == last["printed_copies"] == last["device_copies_done"]
        and last["device_bad_files"] == 0
        and all(last[f"jobs_{status}"] == 0 for status in ("failed", "unknown", "suspect", "cancelled"))
    )
    result = {
        "benchmark": "scale",
        "config": {
            **{
                key: (str(value) if isinstance(value, Path) else value)
                for key, value in vars(arguments).items()
            },
            "roles": roles,
            "cores": os.cpu_count(),
            "load_before": load_before,
            "load_after": os.getloadavg()[0],
            "calibration_ms": [calibration_before, cpu_calibration_ms()],
        },
        "window": {"start_s": warmup, "end_s": end},
        "setup": {
            "upload_seconds": outcome.upload_seconds,
            "upload_web_cpu_ms": 1000 * outcome.upload_web_cpu_s,
            "feed_lag_max_s": outcome.lag_max_s,
            "order_and_payment_p50_s": outcome.request_p50_s,
            "drained": outcome.drained,
            "fed_prints": outcome.rows[-1]["fed_prints"],
            "printed_prints": outcome.rows[-1]["printed_copies"],
            "device_prints": outcome.rows[-1]["device_copies_done"],
        },
        **summary,
    }
    paths = outputs_write(arguments, outcome, result)
    print(report_text(result))
    for name, path in paths.items():
        print(f"{name}: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    if arguments.json:
        arguments.json.write_text(json.dumps(without_nan(result), indent=2, default=str))
    print(
        f"total {time.perf_counter() - started:.0f} s; 1-minute load average before {load_before:.2f},"
        f" at the end {os.getloadavg()[0]:.2f} (this run included)"
    )


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        print("interrupted; the processes and the database this run started are gone", file=sys.stderr)
        sys.exit(130)
