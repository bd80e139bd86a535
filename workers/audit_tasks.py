"""Audit tasks besides checkpoints: the daily review queue (sample of views plus every flagged attempt).

Registered by an import in workers/tasks.py; scheduled once a day by beat, after midnight in the lab's zone.
"""

from __future__ import annotations

from workers.app import app


@app.task(name="audit.review_sample_daily", time_limit=600, soft_time_limit=540, max_retries=0)
def review_sample_daily() -> None:
    from lab.gate.review import review_sample_daily as queue_day

    # Safe to run again for the same day: the sample only tops up and flags are unique per record.
    queue_day()
