"""What the scale bench samples every few seconds, read from outside the lab: jobs per status and printed
jobs' times (PostgreSQL), queue lengths (Redis), CPU and memory of every process it started, of its
database's PostgreSQL backends and of Redis (/proc), per-task CPU (bench/scale/probe.py's files) and the
simulated minilabs' counts (bench/scale/device.py's files).

CPU is cumulative seconds (utime + stime, plus reaped children's, of every process in a role's process
group), so a window's CPU is the difference of two samples. PostgreSQL backends are grouped by the
`application_name` each role connects with; a backend's last seen CPU stays counted after it exits.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import redis

from bench.scale.analysis import STAGE_OF_TASK, percentile

TICKS = os.sysconf("SC_CLK_TCK")
JOB_STATUSES = (
    "no_printer",
    "queued",
    "rasterizing",
    "ready",
    "submitting",
    "submitted",
    "printed",
    "failed",
    "unknown",
    "suspect",
    "cancelled",
)
QUEUES = ("default", "raster", "print")
STAGES = ("release", "raster", "submit", "tracking", "reconcile", "notify", "packing", "other")
LATENCY_WINDOW_SECONDS = 60.0
# What bench/scale/probe.py adds up per task name.
METER_MEASURES = ("runs", "wall_s", "cpu_s", "db_cpu_s", "queries", "query_wait_s")


@dataclass(frozen=True)
class ProcessStat:
    pid: int
    group: int
    cpu_ticks: int  # utime + stime + cutime + cstime


def process_table() -> dict[int, ProcessStat]:
    table: dict[int, ProcessStat] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                text = handle.read()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()  # the command name may hold spaces and brackets
        # fields[0] is field 3 (state): pgrp is field 5, utime..cstime are fields 14..17.
        table[int(entry)] = ProcessStat(
            pid=int(entry), group=int(fields[2]), cpu_ticks=sum(int(value) for value in fields[11:15])
        )
    return table


def memory_kib(pid: int, key: str = "VmRSS") -> int:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def directory_bytes(root: Path) -> int:
    total = 0
    for folder, _, files in os.walk(root):
        for name in files:
            try:
                total += os.stat(os.path.join(folder, name)).st_size
            except OSError:
                continue  # deleted meanwhile (a raster replaced, a temporary file)
    return total


@dataclass
class JobTimes:
    """One printed job's way from payment to `printed`, in Unix seconds (device times from done.csv)."""

    job_id: int
    printer: str
    copies: int
    paid: float
    released: float
    rasterized: float
    submitted: float
    printed: float
    device_started: float | None = None
    device_finished: float | None = None


PRINTED_JOBS_SQL = """
SELECT j.id, p.name, j.copies,
       extract(epoch FROM paid.created_at)::float8,
       extract(epoch FROM j.created_at)::float8,
       (SELECT extract(epoch FROM max(e.created_at))::float8 FROM production_jobevent e
         WHERE e.job_id = j.id AND e.kind = 'rasterized'),
       (SELECT extract(epoch FROM max(e.created_at))::float8 FROM production_jobevent e
         WHERE e.job_id = j.id AND e.kind IN ('submitted', 'adopted')),
       extract(epoch FROM j.printed_at)::float8
  FROM production_printjob j
  JOIN production_printer p ON p.id = j.printer_id
  JOIN LATERAL (SELECT min(created_at) AS created_at FROM orders_orderevent
                 WHERE order_id = j.order_id AND to_status = 'paid') paid ON true
 WHERE j.status = 'printed' AND j.printed_at >= to_timestamp(%s)
"""


@dataclass
class Sampler:
    database_url: str
    redis_url: str
    # role -> process group id (the PID of the process the bench started); each role connects to PostgreSQL
    # with application_name bench-<role>
    groups: dict[str, int]
    meter_dir: Path
    device_dir: Path
    storage_dir: Path  # LAB_STORAGE_DIR: encrypted photos and rasters
    started_at: float = field(default_factory=time.time)
    jobs: dict[int, JobTimes] = field(default_factory=dict)
    _backend_ticks: dict[int, tuple[str, int]] = field(default_factory=dict)
    _device_times: dict[int, tuple[float, float]] = field(default_factory=dict)
    _device_offset: int = 0
    _watermark: float = 0.0

    def __post_init__(self) -> None:
        self.connection = psycopg.connect(
            self.database_url, autocommit=True, application_name="bench-sampler"
        )
        self.redis = redis.Redis.from_url(self.redis_url)
        self.redis_pid = int(self.redis.info("server")["process_id"])

    def close(self) -> None:
        self.connection.close()
        self.redis.close()

    def sample(self, *, fed_orders: int, fed_prints: int) -> dict[str, float]:
        now = time.time()
        row: dict[str, float] = {
            "t": now - self.started_at,
            "unix": now,
            "load1": os.getloadavg()[0],
            "fed_orders": fed_orders,
            "fed_prints": fed_prints,
        }
        row.update(self._database())
        row.update(self._broker())
        row.update(self._processes())
        row.update(self._meters())
        row.update(self._device())
        row.update(self._latency(now))
        row["storage_mib"] = directory_bytes(self.storage_dir) / 2**20
        return row

    def _database(self) -> dict[str, float]:
        row: dict[str, float] = {f"jobs_{status}": 0 for status in JOB_STATUSES}
        for status, count, copies in self.connection.execute(
            "SELECT status, count(*), sum(copies) FROM production_printjob GROUP BY status"
        ):
            row[f"jobs_{status}"] = count
            if status == "printed":
                row["printed_copies"] = copies
        row.setdefault("printed_copies", 0)
        waiting = self.connection.execute(
            "SELECT count(*) FROM orders_orderitem i JOIN orders_order o ON o.id = i.order_id"
            " WHERE o.status = 'paid'"
        ).fetchone()
        row["items_paid_unreleased"] = waiting[0] if waiting else 0
        return row

    def _broker(self) -> dict[str, float]:
        row: dict[str, float] = {f"broker_{queue}": float(self.redis.llen(queue)) for queue in QUEUES}
        row["broker_unacked"] = float(self.redis.hlen("unacked"))
        row["redis_used_mib"] = int(self.redis.info("memory")["used_memory"]) / 2**20
        return row

    def _processes(self) -> dict[str, float]:
        table = process_table()
        row: dict[str, float] = {}
        for role, group in self.groups.items():
            members = [stat for stat in table.values() if stat.group == group]
            row[f"cpu_s_{role}"] = sum(stat.cpu_ticks for stat in members) / TICKS
            row[f"rss_mib_{role}"] = sum(memory_kib(stat.pid) for stat in members) / 1024
            row[f"processes_{role}"] = len(members)
        bench = table.get(os.getpid())
        row["cpu_s_bench"] = bench.cpu_ticks / TICKS if bench else 0.0
        row["rss_mib_bench"] = memory_kib(os.getpid()) / 1024
        redis_stat = table.get(self.redis_pid)
        row["cpu_s_redis"] = redis_stat.cpu_ticks / TICKS if redis_stat else 0.0
        row["rss_mib_redis"] = memory_kib(self.redis_pid) / 1024
        row.update(self._backends(table))
        return row

    def _backends(self, table: dict[int, ProcessStat]) -> dict[str, float]:
        """Our database's backends by role (application_name bench-<role>); the sampler's own is left out."""
        private_kib: dict[str, int] = {}
        for pid, application in self.connection.execute(
            "SELECT pid, application_name FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ):
            role = application.removeprefix("bench-")
            role = role if role in self.groups else "other"
            stat = table.get(pid)
            if stat is not None:
                self._backend_ticks[pid] = (role, stat.cpu_ticks)
                # Private memory only: a backend's RSS also counts the shared buffers it has touched.
                private_kib[role] = private_kib.get(role, 0) + memory_kib(pid, "RssAnon")
        row: dict[str, float] = {}
        for role in (*self.groups, "other"):
            row[f"cpu_s_pg_{role}"] = (
                sum(ticks for owner, ticks in self._backend_ticks.values() if owner == role) / TICKS
            )
            row[f"rss_mib_pg_{role}"] = private_kib.get(role, 0) / 1024
        row["rss_mib_pg"] = sum(private_kib.values()) / 1024
        return row

    def _meters(self) -> dict[str, float]:
        row: dict[str, float] = {}
        for stage in STAGES:
            for measure in METER_MEASURES:
                row[f"task_{measure}_{stage}"] = 0.0
        for path in self.meter_dir.glob("*.json"):
            try:
                meters: dict[str, dict[str, float]] = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            for task, totals in meters.items():
                stage = STAGE_OF_TASK.get(task) or (
                    "notify"
                    if task.startswith("notify.")
                    else "packing"
                    if task.startswith("packing.")
                    else "other"
                )
                for measure in METER_MEASURES:
                    row[f"task_{measure}_{stage}"] += totals.get(measure, 0.0)
        return row

    def _device(self) -> dict[str, float]:
        row = {"device_copies_done": 0.0, "device_pending": 0.0, "device_printing": 0.0}
        row.update({"device_busy_s": 0.0, "device_idle_s": 0.0, "device_bad_files": 0.0})
        try:
            stats: dict[str, Any] = json.loads((self.device_dir / "device.json").read_text())
        except (OSError, ValueError):
            return row
        for key in ("copies_done", "pending", "printing", "bad_files"):
            row[f"device_{key}"] = float(stats[key])
        row["device_busy_s"] = float(stats["busy_seconds"])
        row["device_idle_s"] = float(stats["idle_seconds"])
        self._device_log_read()
        return row

    def _device_log_read(self) -> None:
        path = self.device_dir / "done.csv"
        if not path.exists():
            return
        with path.open() as handle:
            handle.seek(self._device_offset)
            text = handle.read()
        complete = text[: text.rfind("\n") + 1]  # a line still being written is read next time
        self._device_offset += len(complete.encode())
        for line in complete.splitlines():
            title, _printer, _arrived, started, finished, _copies = line.split(",")
            if title.startswith("lab-job-"):  # lab-job-<id>-<token>
                job_id = int(title.removeprefix("lab-job-").partition("-")[0])
                self._device_times[job_id] = (float(started), float(finished))

    def _latency(self, now: float) -> dict[str, float]:
        for record in self._printed_since(self._watermark - 2.0):
            self.jobs.setdefault(record.job_id, record)
            self._watermark = max(self._watermark, record.printed)
        for job in self.jobs.values():
            if job.device_finished is None and job.job_id in self._device_times:
                job.device_started, job.device_finished = self._device_times[job.job_id]
        recent = [
            job.printed - job.paid for job in self.jobs.values() if job.printed > now - LATENCY_WINDOW_SECONDS
        ]
        return {
            "latency_n": float(len(recent)),
            "latency_p50_s": percentile(recent, 50) if recent else float("nan"),
            "latency_p95_s": percentile(recent, 95) if recent else float("nan"),
        }

    def _printed_since(self, since: float) -> Iterable[JobTimes]:
        for values in self.connection.execute(PRINTED_JOBS_SQL, (since,)):
            job_id, printer, copies, paid, released, rasterized, submitted, printed = values
            if job_id in self.jobs:
                continue
            yield JobTimes(
                job_id=job_id,
                printer=printer,
                copies=copies,
                paid=paid,
                released=released,
                rasterized=rasterized or float("nan"),
                submitted=submitted or float("nan"),
                printed=printed,
            )
