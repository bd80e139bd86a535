"""The worker's task_prerun/task_postrun handlers: one duration per task run, raster outcomes counted, and the
task and job ids set for log lines only while the task runs."""

from __future__ import annotations

from types import SimpleNamespace

from prometheus_client import REGISTRY

from lab.lib import log_context
from workers.observability import task_finished, task_started

RASTER = "production.print_job_rasterize"


def test_a_raster_task_run_records_its_duration_outcome_and_log_ids():
    task = SimpleNamespace(name=RASTER, request=SimpleNamespace(delivery_info={"routing_key": "raster"}))
    labels = {"task": RASTER, "queue": "raster", "state": "SUCCESS"}
    runs_before = REGISTRY.get_sample_value("printlab_celery_task_duration_seconds_count", labels) or 0
    ready_before = REGISTRY.get_sample_value("printlab_raster_jobs_total", {"outcome": "ready"}) or 0

    task_started(task_id="task-1", kwargs={"job_id": 42})
    during = (log_context.task_id.get(), log_context.job_id.get())
    task_finished(task_id="task-1", task=task, retval="ready", state="SUCCESS")

    assert during == ("task-1", "42")
    assert (log_context.task_id.get(), log_context.job_id.get()) == ("", "")
    assert REGISTRY.get_sample_value("printlab_celery_task_duration_seconds_count", labels) == runs_before + 1
    assert REGISTRY.get_sample_value("printlab_raster_jobs_total", {"outcome": "ready"}) == ready_before + 1
