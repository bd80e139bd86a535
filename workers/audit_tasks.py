"""Audit tasks besides checkpoints: the daily review queue (sample of views plus every flagged attempt).

Registered by an import in workers/tasks.py; scheduled once a day by beat, after midnight in the lab's zone.
"""

from __future__ import annotations

from workers.app import app


@app.task(
    name="audit.review_sample_daily",
    queue="default",
    time_limit=600,
    soft_time_limit=540,
    # Idempotent: a day's sample only tops up, flags are unique per record, a day is recorded as queued once.
    acks_late=True,
    # A lost or failed run is made up by the next night's: it queues every day of the last week not queued.
    max_retries=0,
)
def review_sample_daily() -> None:
    from lab.gate.review import review_sample_daily as queue_days

    queue_days()
