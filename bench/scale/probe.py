"""The Celery app the scale bench's workers and beat run: `workers.app` itself, unchanged, plus a meter that
adds each task's CPU time, in the worker and in its PostgreSQL backend, and its SQL statements, to a file per
process.

`celery -A bench.scale.probe worker` registers the same tasks on the same app as `celery -A workers worker`;
the two signal handlers below only read clocks. Per task they add up: runs, wall seconds, the pool process's
CPU seconds (`time.process_time`, which counts libvips' threads too) and the CPU seconds of the PostgreSQL
backend serving this process's connection (`/proc/<backend pid>/schedstat`, nanoseconds; the backend serves
only this connection, so its CPU during the task is the task's), and the statements it sent with the time
spent waiting for their answers (a Django execute wrapper). At most twice a second the totals are
written to `$BENCH_TASK_METER_DIR/<pid>.json`, which bench/scale/sampler.py reads.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from celery.signals import task_postrun, task_prerun

from workers.app import app

METER_DIR = os.environ.get("BENCH_TASK_METER_DIR", "")
# Celery's Django fixup closes every database connection before and after each task unless
# CELERY_DB_REUSE_MAX is set (celery/fixups/django.py), whatever DATABASE_CONN_MAX_AGE says: each task then
# starts a PostgreSQL backend. `--celery-db-reuse N` (run.py) sets it here, to measure the difference.
if os.environ.get("BENCH_CELERY_DB_REUSE_MAX"):
    app.conf.CELERY_DB_REUSE_MAX = int(os.environ["BENCH_CELERY_DB_REUSE_MAX"])
WRITE_EVERY_SECONDS = 0.5
# task id -> (process CPU s, wall s, backend pid or 0, backend CPU ns at the start)
_started: dict[str, tuple[float, float, int, int]] = {}
# task name -> [runs, wall s, worker CPU s, PostgreSQL backend CPU s, queries, seconds waiting on queries]
_totals: dict[str, list[float]] = {}
_queries = [0, 0.0]  # of the running task: statements sent, seconds until their answers
_last_write = 0.0


def _query_counter(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
    began = time.perf_counter()
    try:
        return execute(sql, params, many, context)
    finally:
        _queries[0] += 1
        _queries[1] += time.perf_counter() - began


def backend_pid() -> int:
    """The PostgreSQL backend of this process's open connection, 0 when none is open."""
    from django.db import connection

    raw: Any = connection.connection
    if raw is None or raw.closed:
        return 0
    return int(raw.info.backend_pid)


def cpu_ns(pid: int) -> int:
    """Nanoseconds a process has run on a CPU (first field of /proc/<pid>/schedstat); 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/schedstat") as handle:
            return int(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


@task_prerun.connect
def _task_started(*, task_id: str, **_: Any) -> None:
    from django.db import connection

    pid = backend_pid()
    _queries[0], _queries[1] = 0, 0.0
    if _query_counter not in connection.execute_wrappers:
        connection.execute_wrappers.append(_query_counter)
    _started[task_id] = (time.process_time(), time.perf_counter(), pid, cpu_ns(pid) if pid else 0)


@task_postrun.connect
def _task_finished(*, task_id: str, task: Any, **_: Any) -> None:
    global _last_write
    begun = _started.pop(task_id, None)
    if begun is None:
        return
    cpu_began, wall_began, pid_began, backend_began = begun
    pid = backend_pid()
    # A connection opened during the task is the task's from its first nanosecond.
    backend_ns = cpu_ns(pid) - (backend_began if pid == pid_began else 0) if pid else 0
    totals = _totals.setdefault(task.name, [0.0] * 6)
    totals[0] += 1
    totals[1] += time.perf_counter() - wall_began
    totals[2] += time.process_time() - cpu_began
    totals[3] += max(backend_ns, 0) / 1e9
    totals[4] += _queries[0]
    totals[5] += _queries[1]
    now = time.monotonic()
    if METER_DIR and now - _last_write >= WRITE_EVERY_SECONDS:
        _last_write = now
        _write(Path(METER_DIR))


def _write(directory: Path) -> None:
    payload = {
        name: {
            "runs": int(runs),
            "wall_s": wall,
            "cpu_s": cpu,
            "db_cpu_s": database,
            "queries": int(queries),
            "query_wait_s": waiting,
        }
        for name, (runs, wall, cpu, database, queries, waiting) in _totals.items()
    }
    target = directory / f"{os.getpid()}.json"
    temporary = directory / f".{os.getpid()}.json.tmp"
    temporary.write_text(json.dumps(payload))
    os.replace(temporary, target)


__all__ = ["app"]
