"""Thin tasks for the privacy controls: the retention sweep that beat runs on a schedule.

The sweep locks and re-checks each photo before purging it, so an overlapping or redelivered run is harmless.
"""

from __future__ import annotations

from workers.app import app


# The default queue (task_default_queue): a task-level `queue=` attribute is deprecated in Celery 5.
@app.task(name="privacy.retention_purge", time_limit=900, soft_time_limit=840, max_retries=0)
def retention_purge() -> dict[str, int]:
    from lab.customer_data.retention import retention_sweep

    return retention_sweep()
