"""Worker-side observability: task durations and raster outcomes for Prometheus, task/job ids for log lines,
and the worker's own metrics port.

Workers are separate processes (and Celery's prefork pool forks again), so the web's /metrics cannot see
what they record. Each worker host serves its own metrics with prometheus_client's HTTP server when
WORKER_METRICS_PORT is set; the pool's children record into PROMETHEUS_MULTIPROC_DIR, which the server (in
the worker's main process) adds up at each scrape. Nothing goes through the database or the broker, so a
scrape costs the lab nothing and still works while the database is down.
"""

from __future__ import annotations

import contextvars
import logging
import os
import time
from pathlib import Path
from typing import Any

from celery.signals import task_postrun, task_prerun, worker_init, worker_process_shutdown
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from lab.lib import log_context
from lab.lib.metrics import RASTER_JOBS, TASK_SECONDS, multiprocess_directory, process_registry

logger = logging.getLogger(__name__)
RASTER_TASK = "production.print_job_rasterize"
_running: dict[str, tuple[float, contextvars.Token[str], contextvars.Token[str]]] = {}


@task_prerun.connect
def task_started(*, task_id: str, kwargs: dict[str, Any] | None = None, **_: Any) -> None:
    job_id = (kwargs or {}).get("job_id")
    _running[task_id] = (
        time.perf_counter(),
        log_context.task_id.set(task_id),
        log_context.job_id.set("" if job_id is None else str(job_id)),
    )


@task_postrun.connect
def task_finished(*, task_id: str, task: Any, retval: Any = None, state: str | None = None, **_: Any) -> None:
    started = _running.pop(task_id, None)
    if started is None:
        return
    began, task_token, job_token = started
    delivery = getattr(task.request, "delivery_info", None) or {}
    queue = delivery.get("routing_key") or "unknown"
    TASK_SECONDS.labels(task=task.name, queue=queue, state=state or "unknown").observe(
        time.perf_counter() - began
    )
    if task.name == RASTER_TASK and isinstance(retval, str):
        RASTER_JOBS.labels(outcome=retval).inc()
    log_context.job_id.reset(job_token)
    log_context.task_id.reset(task_token)


@worker_init.connect
def metrics_port_start(**_: Any) -> None:
    port = settings.WORKER_METRICS_PORT
    if not port:
        return
    directory = multiprocess_directory()
    if not directory:
        raise ImproperlyConfigured(
            "WORKER_METRICS_PORT needs PROMETHEUS_MULTIPROC_DIR (an empty directory of this worker's own): "
            "tasks run in the pool's child processes, and only files there reach the metrics port."
        )
    # Values of a previous run would add up with this one's.
    for stale in Path(directory).glob("*.db"):
        stale.unlink()
    from prometheus_client import start_http_server

    start_http_server(port, addr=settings.WORKER_METRICS_ADDRESS, registry=process_registry())
    logger.info("worker metrics on %s:%s", settings.WORKER_METRICS_ADDRESS, port)


@worker_process_shutdown.connect
def metrics_process_gone(**_: Any) -> None:
    if directory := multiprocess_directory():
        # Its counters and histograms folded into the archives, as gunicorn.conf.py's child_exit does for a
        # web worker: a pool child recycled left files every scrape read again until the worker stopped.
        from lab.lib.metrics_archive import archive_dead_process

        archive_dead_process(os.getpid(), directory)
