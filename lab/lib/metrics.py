"""The process-level Prometheus metrics every layer may record into (request latency, task durations, audit
appends, raster outcomes); the scrape-time gauges read from the database and broker live in lab/observability.

With PROMETHEUS_MULTIPROC_DIR set (needed whenever a service forks: gunicorn workers, Celery's prefork pool)
prometheus_client keeps these values in files there, and a scrape adds up every process of that service.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.multiprocess import MultiProcessCollector

from lab.lib.metrics_archive import archive_read_lock

# Web requests and audit appends take milliseconds; tasks (rasterizing, CUPS, Stripe) take up to minutes.
_FAST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_TASK_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

HTTP_REQUEST_SECONDS = Histogram(
    "printlab_http_request_duration_seconds",
    "Time from the first middleware to the response, by route name, method and status class.",
    ["route", "method", "status_class"],
    buckets=_FAST_BUCKETS,
)
TASK_SECONDS = Histogram(
    "printlab_celery_task_duration_seconds",
    "Run time of a Celery task in a worker, by task name, queue and final state.",
    ["task", "queue", "state"],
    buckets=_TASK_BUCKETS,
)
RASTER_JOBS = Counter(
    "printlab_raster_jobs",
    "Rasterize tasks finished, by outcome (ready = a raster was written).",
    ["outcome"],
)
AUDIT_APPEND_SECONDS = Histogram(
    "printlab_audit_append_duration_seconds",
    "Time to append one record to the audit chain (head lock, hash, mac, insert).",
    buckets=_FAST_BUCKETS,
)


def multiprocess_directory() -> str:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")


class _ArchivedMultiProcessCollector(MultiProcessCollector):
    """prometheus_client's collector, reading the directory under the lock a merge of an exited process's
    files into the archives takes alone (lab.lib.metrics_archive)."""

    def collect(self) -> Any:
        with archive_read_lock(self._path):
            return list(super().collect())  # type: ignore[no-untyped-call]


def process_registry() -> CollectorRegistry:
    """This service's recorded metrics: every process's files in multiprocess mode, else this process's."""
    if not multiprocess_directory():
        return REGISTRY
    registry = CollectorRegistry(auto_describe=False)
    _ArchivedMultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry
