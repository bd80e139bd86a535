"""Enqueue Celery tasks by name from services without importing `workers` (layers point one way).

Call it inside `transaction.on_commit` so a task never runs against a row that was rolled back.
"""

from __future__ import annotations

from typing import Any


def enqueue(
    task_name: str, *, queue: str | None = None, countdown: float | None = None, **kwargs: Any
) -> None:
    from workers.app import app

    options: dict[str, Any] = {}
    if queue:
        options["queue"] = queue
    if countdown:
        options["countdown"] = countdown
    app.send_task(task_name, kwargs=kwargs, **options)
