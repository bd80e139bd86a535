"""The worker side of the Celery app: the app itself is configured in `lab.celery`; here its tasks are
registered and the worker's observability hooks installed. `celery -A workers worker` finds this `app`."""

from __future__ import annotations

from lab.celery import app

app.autodiscover_tasks(["workers"], related_name="tasks")

# Task durations, the task/job ids in log lines and the worker's metrics port (WORKER_METRICS_PORT).
import workers.observability  # noqa: E402, F401

__all__ = ["app"]
