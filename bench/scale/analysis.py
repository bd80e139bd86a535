"""The scale bench's figures from its samples and printed jobs: sustained prints/s against the arrival rate,
growth of the lab's backlog and of each process's memory (least-squares slopes over the steady window), CPU
per role and per stage (per print and in cores), and paid-to-printed latency with its parts. No I/O here, so
it is unit-tested (tests/bench/test_scale_analysis.py)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Row = Mapping[str, float]

STAGE_OF_TASK = {
    "production.order_release": "release",
    "production.print_job_rasterize": "raster",
    "production.print_job_submit": "submit",
    "production.printer_poll": "tracking",
    "production.reconcile": "reconcile",
}
STAGES = ("release", "raster", "submit", "tracking", "reconcile", "notify", "packing", "other")
# What runs beside the lab's own processes (its roles, given to `summarize`): Redis, the simulated minilabs
# and the bench itself (its customers and the sampler).
OTHER_ROLES = ("redis", "device", "bench")
# Where a paid print waits inside the lab, before it reaches a minilab.
LAB_BACKLOG = (
    "items_paid_unreleased",
    "jobs_no_printer",
    "jobs_queued",
    "jobs_rasterizing",
    "jobs_ready",
    "jobs_submitting",
)
# A printed job's way, as (name, from, to) over JobLike's fields.
LATENCY_PARTS = (
    ("release", "paid", "released"),
    ("raster", "released", "rasterized"),
    ("submit", "rasterized", "submitted"),
    ("minilab queue", "submitted", "device_started"),
    ("printing", "device_started", "device_finished"),
    ("poll", "device_finished", "printed"),
)


def percentile(values: Sequence[float], cut: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); NaN for no values."""
    ordered = sorted(value for value in values if not math.isnan(value))
    if not ordered:
        return math.nan
    rank = (len(ordered) - 1) * cut / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of ys over xs (units of y per unit of x); 0 with fewer than two points."""
    if len(xs) < 2:
        return 0.0
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    if spread == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread


def lab_backlog(row: Row) -> float:
    return sum(row.get(name, 0.0) for name in LAB_BACKLOG)


@dataclass(frozen=True)
class Window:
    rows: list[Row]

    @property
    def seconds(self) -> float:
        return self.rows[-1]["t"] - self.rows[0]["t"]

    def times(self) -> list[float]:
        return [row["t"] for row in self.rows]

    def series(self, name: str) -> list[float]:
        return [row.get(name, 0.0) for row in self.rows]

    def delta(self, name: str) -> float:
        return self.rows[-1].get(name, 0.0) - self.rows[0].get(name, 0.0)

    def per_minute(self, values: Sequence[float]) -> float:
        return slope(self.times(), values) * 60


def steady_window(rows: Sequence[Row], *, start: float, end: float) -> Window:
    chosen = [row for row in rows if start <= row["t"] <= end]
    if len(chosen) < 3:
        raise ValueError(f"only {len(chosen)} samples between t={start:.0f} s and t={end:.0f} s")
    return Window(chosen)


def _memory(window: Window, roles: Sequence[str]) -> dict[str, dict[str, float]]:
    memory: dict[str, dict[str, float]] = {}
    for role in roles:
        series = window.series(f"rss_mib_{role}")
        memory[role] = {
            "start_mib": series[0],
            "end_mib": series[-1],
            "max_mib": max(series),
            "slope_mib_per_min": window.per_minute(series),
        }
    return memory


def database_roles(roles: Sequence[str]) -> list[str]:
    """Our PostgreSQL backends, grouped by the lab role they serve (and `pg_other`: none of ours)."""
    return [f"pg_{role}" for role in (*roles, "other")]


def _cpu(window: Window, roles: Sequence[str]) -> dict[str, dict[str, float]]:
    """Cores per process over the window, and CPU per print paid in it (the same as per print printed while
    the lab keeps up; when it does not, the work of the paid prints is not all done inside the window)."""
    paid = window.delta("fed_prints")
    cpu: dict[str, dict[str, float]] = {}
    for role in (*roles, *database_roles(roles), *OTHER_ROLES):
        seconds = window.delta(f"cpu_s_{role}")
        cpu[role] = {
            "cores": seconds / window.seconds,
            "ms_per_print": 1000 * seconds / paid if paid else math.nan,
        }
    return cpu


def stage_prints(stage: str, *, runs: float, window: Window, prints_per_order: int) -> float:
    """The prints a stage's runs in the window handled: a release releases an order, a raster or a submit is
    one job (one copy here); the beat's rounds (poll, reconcile, sweeps) are shared by the prints printed, and
    the notifications and slips by the prints paid."""
    if stage == "release":
        return runs * prints_per_order
    if stage in ("raster", "submit"):
        return runs
    if stage in ("notify", "packing"):
        return window.delta("fed_prints")
    return window.delta("printed_copies")


def _stages(window: Window, prints_per_order: int) -> dict[str, dict[str, float]]:
    stages: dict[str, dict[str, float]] = {}
    for stage in STAGES:
        runs = window.delta(f"task_runs_{stage}")
        worker, database = window.delta(f"task_cpu_s_{stage}"), window.delta(f"task_db_cpu_s_{stage}")
        prints = stage_prints(stage, runs=runs, window=window, prints_per_order=prints_per_order)
        queries = window.delta(f"task_queries_{stage}")
        stages[stage] = {
            "runs": runs,
            "ms_per_run": 1000 * (worker + database) / runs if runs else math.nan,
            "wall_ms_per_run": 1000 * window.delta(f"task_wall_s_{stage}") / runs if runs else math.nan,
            "queries_per_run": queries / runs if runs else math.nan,
            "queries_per_print": queries / prints if prints else math.nan,
            "worker_ms_per_print": 1000 * worker / prints if prints else math.nan,
            "db_ms_per_print": 1000 * database / prints if prints else math.nan,
            "cores": (worker + database) / window.seconds,
        }
    return stages


def _latency(jobs: Sequence[Mapping[str, Any]], *, start: float, end: float) -> dict[str, Any]:
    """Paid-to-printed of the jobs printed between start and end (Unix seconds), overall and by third."""
    chosen = [job for job in jobs if start <= job["printed"] <= end]
    totals = [job["printed"] - job["paid"] for job in chosen]
    parts = {
        name: percentile(
            [
                job[finish] - job[begin]
                for job in chosen
                if job.get(begin) is not None and job.get(finish) is not None
            ],
            50,
        )
        for name, begin, finish in LATENCY_PARTS
    }
    thirds = []
    step = (end - start) / 3
    for index in range(3):
        low, high = start + index * step, start + (index + 1) * step
        part = [job["printed"] - job["paid"] for job in chosen if low <= job["printed"] <= high]
        thirds.append({"jobs": len(part), "p50_s": percentile(part, 50), "p95_s": percentile(part, 95)})
    return {
        "jobs": len(chosen),
        "p50_s": percentile(totals, 50),
        "p95_s": percentile(totals, 95),
        "max_s": max(totals) if totals else math.nan,
        "parts_p50_s": parts,
        "thirds": thirds,
    }


def summarize(
    rows: Sequence[Row],
    jobs: Sequence[Mapping[str, Any]],
    *,
    start: float,
    end: float,
    arrival_per_s: float,
    printers: int,
    prints_per_order: int,
    roles: Sequence[str],
) -> dict[str, Any]:
    """The figures of the steady window [start, end] (seconds since the bench's clock started); `roles` are
    the lab's processes (web, workers, beat), whose memory must not grow."""
    window = steady_window(rows, start=start, end=end)
    prints = window.delta("printed_copies")
    backlog = [lab_backlog(row) for row in window.rows]
    backlog_growth = window.per_minute(backlog)
    memory = _memory(window, roles)
    growing = max(roles, key=lambda role: memory[role]["slope_mib_per_min"])
    latency = _latency(jobs, start=window.rows[0]["unix"], end=window.rows[-1]["unix"])
    figures = {
        "window_s": window.seconds,
        "prints_in_window": prints,
        "arrival_per_s": arrival_per_s,
        "fed_per_s": window.per_minute(window.series("fed_prints")) / 60,
        "sustained_per_s": window.per_minute(window.series("printed_copies")) / 60,
        "device_per_s": window.per_minute(window.series("device_copies_done")) / 60,
        "minilab_utilisation": window.delta("device_busy_s") / (printers * window.seconds),
        "lab_backlog_mean": sum(backlog) / len(backlog),
        "lab_backlog_max": max(backlog),
        "lab_backlog_growth_per_min": backlog_growth,
        "lab_backlog_growth_pct": 100 * backlog_growth / (arrival_per_s * 60),
        "at_minilabs_mean": sum(window.series("jobs_submitted")) / len(window.rows),
        "at_minilabs_growth_per_min": window.per_minute(window.series("jobs_submitted")),
        "broker_max": max(
            sum(row.get(f"broker_{q}", 0.0) for q in ("default", "raster", "print")) for row in window.rows
        ),
        "rss_growth_mib_per_min_max": memory[growing]["slope_mib_per_min"],
        "rss_growth_role": growing,
        "latency_p50_s": latency["p50_s"],
        "latency_p95_s": latency["p95_s"],
        "poll_delay_p50_s": latency["parts_p50_s"]["poll"],
        "load_average_mean": sum(window.series("load1")) / len(window.rows),
        # Encrypted rasters written (originals are uploaded before the window unless --fresh-uploads).
        "storage_mib_per_print": window.delta("storage_mib") / prints if prints else math.nan,
        "bad_files": window.rows[-1].get("device_bad_files", 0.0),
        "jobs_failed": window.rows[-1].get("jobs_failed", 0.0),
    }
    return {
        "figures": figures,
        "memory": {**memory, **_memory(window, ("pg", "redis", "device"))},
        "cpu": _cpu(window, roles),
        "stages": _stages(window, prints_per_order),
        "latency": latency,
    }
